"""`dgs-edge demo --worklist dicom://... --pacs dicom://... --pacs dicomweb+http://...`
against a real Orthanc: the first worklist order scanned on both sides, and Orthanc holds the
cine, SR and PDF of each side under that accession number and patient; each side's MQTT
result (published after the export) carries the order and the DICOM references, and the
FHIR server holds both reports under the patient."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness.fhirserver import have_fhir_server, start_fhir_server
from tests.harness.orthanc import Orthanc
from tests.harness.worklist import write_wl

pytestmark = [pytest.mark.sim, pytest.mark.slow]


@pytest.mark.skipif(not have_fhir_server(), reason="scripts/setup installs tools/fhir")
def test_demo_worklist_to_pacs(orthanc: Orthanc, mosquitto: Any, collector_factory: Any,
                               tmp_path: Path) -> None:  # fmt: skip
    fhir = start_fhir_server()
    try:
        _demo(orthanc, mosquitto, collector_factory, tmp_path, fhir)
    finally:
        fhir.stop()


def _demo(orthanc: Orthanc, mosquitto: Any, collector_factory: Any, tmp_path: Path,
          fhir: Any) -> None:  # fmt: skip
    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/#")
    write_wl(orthanc.worklists, "later", accession="ACC-2", patient_id="PID-2", time="150000")
    write_wl(orthanc.worklists, "first", accession="ACC-1", patient_id="PID-1",
             patient_name="Øster^Åsa", time="083000")  # fmt: skip
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_service.cli.edge", "demo", "--out", str(out), "--fps", "4",
         "--seed", "3", "--worklist", orthanc.dicom_url, "--pacs", orthanc.dicom_url,
         "--broker", mosquitto.url, "--state-dir", str(tmp_path / "state"), "--fhir", fhir.url],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "order ACC-1" in proc.stdout
    studies = orthanc.find("Study", AccessionNumber="ACC-1")
    assert len(studies) == 1, studies  # both sides in the order's one study
    assert studies[0]["PatientMainDicomTags"]["PatientID"] == "PID-1"
    assert studies[0]["PatientMainDicomTags"]["PatientName"] == "Øster^Åsa"
    insts = orthanc.find("Instance", AccessionNumber="ACC-1")
    classes = sorted(i["MainDicomTags"].get("SOPClassUID", "") for i in insts)
    sop = {"1.2.840.10008.5.1.4.1.1.3.1": "cine", "1.2.840.10008.5.1.4.1.1.88.33": "sr",
           "1.2.840.10008.5.1.4.1.1.104.1": "pdf"}  # fmt: skip
    if not all(classes):  # older Orthanc: SOPClassUID is not a main tag; ask per instance
        classes = sorted(orthanc.get(f"/instances/{i['ID']}/metadata/SopClassUid").decode()
                         for i in insts)  # fmt: skip
    kinds = sorted(sop[c] for c in classes)
    assert kinds == ["cine", "cine", "pdf", "pdf", "sr", "sr"]
    assert not orthanc.find("Study", AccessionNumber="ACC-2")
    # The published results carry the order and what was sent to the PACS.
    pubs = {d["result"]["side"]: d["result"] for d in col.wait_docs("/result", 2, timeout_s=30)}
    for side in ("left", "right"):
        res = json.loads((out / side / "result.json").read_text())
        assert pubs[side]["order"] == {"accession_number": "ACC-1"}
        assert pubs[side]["dicom"] == res["dicom"]
        assert res["order"]["patient_id"] == "PID-1"  # the full order stays on the box
    (pat,) = fhir.resources("Patient")
    assert pat["identifier"][0]["value"] == "PID-1"
    reps = fhir.resources("DiagnosticReport")
    assert len(reps) == 2 and {r["subject"]["reference"] for r in reps} == {f"Patient/{pat['id']}"}
    assert {r["basedOn"][0]["identifier"]["value"] for r in reps} == {"ACC-1"}


@pytest.mark.parametrize(
    ("flags", "rc", "expect"),
    [
        (["--worklist", "dicom://nohost"], 2, "needs an AE title"),
        (["--pacs", "ftp://x"], 2, "expected dicom://AET@HOST:PORT"),
        (["--worklist", "dicom://X@127.0.0.1:9"], 1, "association rejected or unreachable"),
    ],
)
def test_demo_bad_destinations_are_one_clear_line(tmp_path: Path, flags: list[str], rc: int,
                                                 expect: str) -> None:  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "edge_service.cli.edge", "demo", "--out",
                           str(tmp_path / "d"), *flags], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == rc
    text = (proc.stdout + proc.stderr).strip()
    assert expect in text and len(text.splitlines()) == 1, text
    assert not (tmp_path / "d").exists()
