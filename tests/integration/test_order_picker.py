"""The workstation's order picker against a real worklist (Orthanc), and the chosen order in
the recorded cine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from edge_service.dicomnet.queue import ForwardQueue
from edge_service.dicomnet.settings import DicomSettings, WorklistSettings
from edge_service.dicomnet.worklist import WorklistPoller
from edge_service.integration.workstation import install
from tests.harness.orthanc import Orthanc
from tests.harness.worklist import write_wl
from tests.workstation.conftest import detector, make_workstation  # noqa: F401  (fixtures)

pytestmark = pytest.mark.sim


def test_manual_entry_without_worklist(make_workstation: Any) -> None:  # noqa: F811
    w = make_workstation()
    r = w.client.get("/api/v1/orders")
    assert r.status_code == 200 and r.json() == {"source": "manual", "orders": [], "worklist": None}


def test_pick_a_worklist_order_and_record_it(make_workstation: Any, orthanc: Orthanc,  # noqa: F811
                                             tmp_path: Path) -> None:  # fmt: skip
    write_wl(orthanc.worklists, "a", accession="ACC-77", patient_id="PID-77",
             patient_name="Nuñez^Inés", procedure="US deep gluteal space, dynamic")  # fmt: skip
    w = make_workstation()
    dicom = DicomSettings(uid_root="1.2.826.0.1.3680043.10.999", destinations=[orthanc.stow_url])
    queue = ForwardQueue(tmp_path / "fwd.sqlite", dicom)
    install(w.service, WorklistPoller(WorklistSettings(url=orthanc.dicom_url)),
            uid_root=dicom.uid_root, dicom=dicom, queue=queue)  # fmt: skip
    got = w.client.get("/api/v1/orders", params={"refresh": "true"}).json()
    assert got["source"] == "worklist" and got["worklist"]["last_error"] is None
    (o,) = got["orders"]
    assert o["patient_name"] == "Nuñez^Inés" and o["accession_number"] == "ACC-77"
    r = w.client.post("/api/v1/sessions", json={"side": "right", "protocol": "fair",
                      "accession_number": o["accession_number"], "patient_id": o["patient_id"]})  # fmt: skip
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    w.wait_frames(sid, 3)
    w.client.post(f"/api/v1/sessions/{sid}/stop")
    w.wait_state(sid, ("done",), 120)
    e = w.service.get(sid)
    w.wait_for(lambda: (e.path / "cine.dcm").exists(), 60)  # written after the result
    cine = dcmread(e.path / "cine.dcm", stop_before_pixels=True)
    assert cine.AccessionNumber == "ACC-77" and str(cine.PatientName) == "Nuñez^Inés"
    assert cine.StudyDescription == "US deep gluteal space, dynamic"
    assert cine.StudyInstanceUID == o["study_instance_uid"]  # the RIS's study
    assert cine.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.999.")
    # Publishing releases it to the hospital: SR + PDF written, all three queued to PACS.
    assert w.client.post(f"/api/v1/sessions/{sid}/publish").status_code == 200
    assert queue.drain(60)
    st = w.client.get("/api/v1/destinations").json()["destinations"][orthanc.stow_url]
    assert st["sent"] == 3 and st["parked"] == 0
    assert len(orthanc.find("Instance", AccessionNumber="ACC-77")) == 3
    metrics = w.client.get("/metrics").text
    assert f'dgs_dicom_forward_sent{{destination="{orthanc.stow_url}"}} 3' in metrics
    queue.close()
