"""SR + Encapsulated PDF + cine to a real Orthanc over C-STORE and STOW-RS, durably queued."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from edge_service.analysis.result import validate
from edge_service.dicomnet.queue import ForwardQueue
from edge_service.dicomnet.settings import DicomSettings
from edge_service.integration.export import export_session
from edge_service.mqtt.broker import free_port
from tests.harness.hospital import ORDER, record_session
from tests.harness.orthanc import Orthanc

pytestmark = pytest.mark.sim


def dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    rec = tmp_path / "rec"
    record_session(rec, uid_root="1.2.826.0.1.3680043.10.999")
    return rec


def test_export_writes_valid_sr_and_pdf_and_result_blocks(session_dir: Path) -> None:
    result = export_session(session_dir, DicomSettings(uid_root="1.2.826.0.1.3680043.10.999"))
    validate(result)
    assert result["order"]["accession_number"] == ORDER.accession_number
    d = result["dicom"]
    cine = dcmread(session_dir / "cine.dcm", stop_before_pixels=True)
    assert d["study_instance_uid"] == cine.StudyInstanceUID
    assert cine.AccessionNumber == ORDER.accession_number and cine.PatientID == ORDER.patient_id
    assert str(cine.PatientName) == ORDER.patient_name
    assert "PatientIdentityRemoved" not in cine
    for uid in (d["study_instance_uid"], d["sr"]["sop_instance_uid"], d["pdf"]["sop_instance_uid"],
                cine.SOPInstanceUID):  # fmt: skip
        assert uid.startswith("1.2.826.0.1.3680043.10.999."), uid
    for name in ("cine.dcm", "sr-v1.dcm", "report-v1.dcm"):
        assert dciodvfy_errors(session_dir / name) == [], name
    sr = dcmread(session_dir / "sr-v1.dcm")
    assert sr.StudyInstanceUID == cine.StudyInstanceUID and sr.AccessionNumber == "ACC-4711"
    # The measurement report references the cine and measured frames of it.
    text = str(sr)
    assert cine.SOPInstanceUID in text and "Referenced Frame Number" in text
    # Every UID this product made (incl. the SR's tracking UID) is under the configured root.
    made = {str(v) for v in _uids(sr)} - {cine.SOPInstanceUID, cine.SOPClassUID}
    made -= {u for u in made if u.startswith("1.2.840.10008.")}  # DICOM's own (classes, TS)
    assert made and all(u.startswith("1.2.826.0.1.3680043.10.999.") for u in made), made
    # An independent SR reader (dcmtk) renders the tree.
    dump = subprocess.run(["dsrdump", str(session_dir / "sr-v1.dcm")], capture_output=True,
                          text=True)  # fmt: skip
    assert dump.returncode == 0 and "Imaging Measurement Report" in dump.stdout
    assert '(7771000,SCT,"Left")' in dump.stdout
    # Idempotent: a re-run keeps the UIDs (nothing filed twice as new).
    again = export_session(session_dir, DicomSettings(uid_root="1.2.826.0.1.3680043.10.999"))
    assert again["dicom"] == d


def _uids(ds: Any) -> list[str]:
    out: list[str] = []
    for el in ds.iterall():
        if el.VR == "UI" and el.value:
            out += [str(v) for v in (el.value if el.VM > 1 else [el.value])]
    return out


def _sr_values(sr_json: dict) -> dict[str, float]:  # type: ignore[type-arg]
    out: dict[str, float] = {}

    def walk(items: list) -> None:  # type: ignore[type-arg]
        for it in items:
            if it.get("ValueType") == "NUM":
                name = it["ConceptNameCodeSequence"][0]["CodeMeaning"]
                meth = [c for c in it.get("ContentSequence", [])
                        if c["ConceptNameCodeSequence"][0]["CodeMeaning"] == "Measurement Method"]  # fmt: skip
                if meth:  # local codes over 16 characters travel as Long Code Value
                    c = meth[0]["ConceptCodeSequence"][0]
                    name = c.get("CodeValue") or c["LongCodeValue"]
                key = name
                out[key] = float(it["MeasuredValueSequence"][0]["NumericValue"])
            walk(it.get("ContentSequence", []))

    walk(sr_json.get("ContentSequence", []))
    return out


@pytest.mark.parametrize("via", ["cstore", "stow"])
def test_forward_to_orthanc_and_read_back(orthanc: Orthanc, session_dir: Path, tmp_path: Path,
                                          via: str) -> None:  # fmt: skip
    dest = orthanc.dicom_url if via == "cstore" else orthanc.stow_url
    s = DicomSettings(destinations=[dest])
    q = ForwardQueue(tmp_path / "fwd.sqlite", s)
    result = export_session(session_dir, s, q)
    assert q.drain(60), q.items()
    st = q.status()[dest]
    assert st["sent"] == 3 and st["pending"] == 0 and st["parked"] == 0
    insts = orthanc.find("Instance", AccessionNumber=ORDER.accession_number)
    by_sop = {i["MainDicomTags"]["SOPInstanceUID"]: i for i in insts}
    d = result["dicom"]
    assert set(by_sop) == {d["cine"]["sop_instance_uid"], d["sr"]["sop_instance_uid"],
                           d["pdf"]["sop_instance_uid"]}  # fmt: skip
    studies = orthanc.find("Study", AccessionNumber=ORDER.accession_number)
    assert len(studies) == 1
    assert studies[0]["PatientMainDicomTags"]["PatientID"] == ORDER.patient_id
    assert studies[0]["PatientMainDicomTags"]["PatientName"] == ORDER.patient_name
    sr_json = orthanc.get(f"/instances/{by_sop[d['sr']['sop_instance_uid']]['ID']}/simplified-tags")
    vals = _sr_values(sr_json)
    assert vals["nerve-ap-diameter"] == pytest.approx(result["nerve"]["ap_diameter_mm"], rel=1e-6)
    assert vals["nerve-csa"] == pytest.approx(result["nerve"]["csa_mm2"], rel=1e-6)
    pdf = orthanc.get(f"/instances/{by_sop[d['pdf']['sop_instance_uid']]['ID']}/pdf")
    assert pdf[:5] == b"%PDF-"
    # Sending again enqueues nothing new: no second copy.
    assert q.enqueue(result["session_id"], "sr", d["sr"]["sop_instance_uid"],
                     session_dir / "sr-v1.dcm") == 0  # fmt: skip
    q.close()


def test_pacs_down_is_retried_then_delivered(tmp_path: Path, session_dir: Path,
                                             orthanc: Orthanc) -> None:  # fmt: skip
    orthanc.stop()
    s = DicomSettings(destinations=[orthanc.dicom_url], retry_min_s=0.2, retry_max_s=0.5,
                      timeout_s=3)  # fmt: skip
    q = ForwardQueue(tmp_path / "fwd.sqlite", s)
    export_session(session_dir, s, q)
    q.process_due()
    st = q.status()[orthanc.dicom_url]
    assert st["pending"] == 3 and st["last_error"]
    q.close()
    # A restart of the appliance (new queue object on the same file) with the PACS back.
    orthanc.start()
    q2 = ForwardQueue(tmp_path / "fwd.sqlite", s)
    assert q2.drain(30)
    assert q2.status()[orthanc.dicom_url]["sent"] == 3
    q2.close()


def test_permanent_refusals_are_parked_with_reason(tmp_path: Path, session_dir: Path,
                                                   orthanc: Orthanc) -> None:  # fmt: skip
    wrong_aet = orthanc.dicom_url.replace("ORTHANC@", "NOPE@")
    bad_web = f"dicomweb+http://127.0.0.1:{orthanc.http_port}/no-such-root"
    s = DicomSettings(destinations=[wrong_aet, bad_web], timeout_s=5)
    q = ForwardQueue(tmp_path / "fwd.sqlite", s)
    export_session(session_dir, s, q)
    assert q.drain(30)
    st = q.status()
    assert st[wrong_aet]["parked"] == 3 and "rejected" in st[wrong_aet]["last_error"]
    assert st[bad_web]["parked"] == 3 and "HTTP 404" in st[bad_web]["last_error"]
    assert orthanc.get("/instances") == []
    q.close()
    json.dumps(st)  # status is JSON for health/metrics


def test_unreachable_port_is_transient(tmp_path: Path, session_dir: Path) -> None:
    dest = f"dicom://X@127.0.0.1:{free_port()}"
    s = DicomSettings(destinations=[dest], timeout_s=2, retry_min_s=60)
    q = ForwardQueue(tmp_path / "fwd.sqlite", s)
    export_session(session_dir, s, q)
    q.process_due()
    st = q.status()[dest]
    assert st["pending"] == 3 and st["parked"] == 0
    q.close()
