"""The headless service (`dgs-edge run`, `dgs-edge correct`, real CLI subprocesses) with a
real Orthanc, a real FHIR server and Mosquitto: a session left analysed but unpublished is
recovered and a new one recorded; both reach PACS (cine, SR, PDF) and FHIR, and the MQTT
result carries the DICOM references. Then `dgs-edge correct --side` turns one into version
2 everywhere: MQTT (new msg_id, supersedes), PACS (a new SR naming its predecessor) and
FHIR (the same report, amended)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from tests.harness.fhirserver import have_fhir_server, start_fhir_server
from tests.harness.hospital import ORDER, record_session
from tests.harness.orthanc import Orthanc

pytestmark = [
    pytest.mark.sim,
    pytest.mark.skipif(not have_fhir_server(), reason="scripts/setup installs tools/fhir"),
]
DGS_EDGE = [sys.executable, "-m", "edge_service.cli.edge"]


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([*DGS_EDGE, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip


def _sops(orthanc: Orthanc, study_uid: str) -> set[str]:
    found = orthanc.find("Instance", StudyInstanceUID=study_uid)
    return {i["MainDicomTags"]["SOPInstanceUID"] for i in found}


def _by_session(docs: list[dict[str, Any]], sid: str) -> dict[int, dict[str, Any]]:
    return {
        int(d["result"].get("version") or 1): d for d in docs if d["result"]["session_id"] == sid
    }


def test_run_recover_and_correct_reach_pacs_and_fhir(
    orthanc: Orthanc, mosquitto: Any, collector_factory: Any, tmp_path: Path
) -> None:
    fhir = start_fhir_server()
    try:
        _run_recover_and_correct(orthanc, mosquitto, collector_factory, tmp_path, fhir)
    finally:
        fhir.stop()


def _run_recover_and_correct(orthanc: Orthanc, mosquitto: Any, collector_factory: Any,
                             tmp_path: Path, fhir: Any) -> None:  # fmt: skip
    rec_dir = tmp_path / "rec"
    # A session a crash left analysed but unpublished (recorded under an order).
    left_over = rec_dir / "20260101-000000-leftover"
    left_over.parent.mkdir(parents=True)
    record_session(left_over)
    cfg = tmp_path / "dgs.toml"
    cfg.write_text(
        f"""
[session]
side = "left"
recordings_dir = "{rec_dir}"
state_dir = "{tmp_path / "state"}"
max_duration_s = 5
use_clip = false
[source]
kind = "phantom"
fps_hz = 4
[mqtt]
url = "{mosquitto.url}"
site = "ward-3"
device = "box-1"
[dicom]
destinations = ["{orthanc.dicom_url}"]
[fhir]
url = "{fhir.url}"
timeout_s = 20
"""
    )
    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/ward-3/box-1/#")
    assert _cli("run", "--config", str(cfg), "--validate-config").returncode == 0
    proc = _cli("run", "--config", str(cfg), "--sessions", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "recovered earlier sessions: 1 finished and queued" in proc.stdout
    sessions = sorted(p for p in rec_dir.iterdir() if (p / "session.json").exists())
    assert len(sessions) == 2
    results = {p: json.loads((p / "result.json").read_text()) for p in sessions}
    docs = col.wait_docs("/result", 2, timeout_s=30)
    for path, res in results.items():
        d = res["dicom"]
        # PACS holds cine, SR and PDF of both (the recovered one and the new one).
        want = {
            d["cine"]["sop_instance_uid"],
            d["sr"]["sop_instance_uid"],
            d["pdf"]["sop_instance_uid"],
        }
        assert _sops(orthanc, d["study_instance_uid"]) == want, path.name
        # The published result carries what was exported.
        (pub,) = _by_session(docs, res["session_id"]).values()
        assert pub["result"]["dicom"] == d
    old = results[left_over]
    assert old["order"]["accession_number"] == ORDER.accession_number
    (pub_old,) = _by_session(docs, old["session_id"]).values()
    assert pub_old["result"]["order"] == {"accession_number": ORDER.accession_number}
    acc = orthanc.find("Study", AccessionNumber=ORDER.accession_number)
    assert len(acc) == 1 and acc[0]["PatientMainDicomTags"]["PatientID"] == ORDER.patient_id
    # FHIR: one report per session, final; the recovered one files under its patient.
    reps = fhir.resources("DiagnosticReport")
    assert len(reps) == 2 and {r["status"] for r in reps} == {"final"}
    (pat,) = fhir.resources("Patient")
    assert pat["identifier"][0]["value"] == ORDER.patient_id

    # The new session was scanned as left; it was the right side: version 2 everywhere.
    new = next(p for p in sessions if p != left_over)
    sid = results[new]["session_id"]
    same = _cli("correct", sid, "--config", str(cfg), "--side", "left")  # already left
    assert same.returncode != 0 and "already left" in same.stderr
    assert "Traceback" not in same.stderr and len(same.stderr.strip().splitlines()) == 1
    proc = _cli("correct", sid, "--config", str(cfg), "--side", "right")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "version 2 (side right)" in proc.stdout
    v2 = json.loads((new / "result.json").read_text())
    assert v2["version"] == 2 and v2["side"] == "right"
    assert json.loads((new / "result-v1.json").read_text())["side"] == "left"
    pubs = _by_session(col.wait_docs("/result", 3, timeout_s=30), sid)
    assert set(pubs) == {1, 2}
    assert pubs[2]["msg_id"] != pubs[1]["msg_id"]
    assert pubs[2]["result"]["supersedes"] == pubs[1]["msg_id"]
    assert pubs[2]["result"]["dicom"]["sr"] == v2["dicom"]["sr"]
    sops = _sops(orthanc, v2["dicom"]["study_instance_uid"])
    assert v2["dicom"]["sr"]["sop_instance_uid"] in sops and len(sops) == 5  # + SR v2, PDF v2
    sr2 = dcmread(new / "sr-v2.dcm")
    pred = sr2.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pred.ReferencedSOPInstanceUID == results[new]["dicom"]["sr"]["sop_instance_uid"]
    reps = fhir.resources("DiagnosticReport", f"identifier=urn:dgs-edge:report|ward-3/box-1/{sid}")
    assert len(reps) == 1 and reps[0]["status"] == "amended"
    assert len(fhir.resources("DiagnosticReport")) == 2  # updated, not added
    obs = [fhir.get("/" + r["reference"]) for r in reps[0]["result"]]
    assert obs and all(o["bodySite"]["text"].startswith("Right ") for o in obs)
