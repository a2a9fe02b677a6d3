"""Worklist C-FIND against a real Orthanc serving .wl files."""

from __future__ import annotations

import pytest

from edge_service.dicomnet.settings import WorklistSettings
from edge_service.dicomnet.worklist import WorklistError, WorklistPoller, query_worklist
from edge_service.mqtt.broker import free_port
from tests.harness.orthanc import Orthanc
from tests.harness.worklist import write_wl

pytestmark = pytest.mark.sim


def test_orders_with_non_ascii_names_and_malformed_entries(orthanc: Orthanc) -> None:
    wl = orthanc.worklists
    write_wl(wl, "a", accession="ACC1001", patient_id="PID-7", patient_name="Müller^Jürgen",
             referring="Ōta^Hanako", time="101500")  # fmt: skip
    write_wl(wl, "b", accession="ACC1000", patient_id="PID-8", patient_name="Dupont^Zoé",
             charset="ISO_IR 100", time="080000")  # fmt: skip
    write_wl(wl, "c", accession=None, patient_id="PID-9")  # no accession number
    (wl / "garbage.wl").write_bytes(b"not a dicom file at all")
    ans = query_worklist(WorklistSettings(url=orthanc.dicom_url))
    assert [o.accession_number for o in ans.orders] == ["ACC1000", "ACC1001"]  # by time
    first, second = ans.orders
    assert second.patient_name == "Müller^Jürgen"
    assert second.referring_physician == "Ōta^Hanako"
    assert first.patient_name == "Dupont^Zoé"
    assert second.requested_procedure == "Dynamic US deep gluteal space"
    assert second.scheduled_datetime == "2026-11-29T10:15:00"
    assert second.study_instance_uid and second.source == "worklist"
    assert ans.skipped == ["entry without accession number"]


def test_modality_filter(orthanc: Orthanc) -> None:
    write_wl(orthanc.worklists, "ct", accession="CT1", patient_id="P1", modality="CT")
    write_wl(orthanc.worklists, "us", accession="US1", patient_id="P1")
    ans = query_worklist(WorklistSettings(url=orthanc.dicom_url))
    assert [o.accession_number for o in ans.orders] == ["US1"]


def test_unreachable_and_wrong_aet_are_one_clear_error(orthanc: Orthanc) -> None:
    with pytest.raises(WorklistError, match="association rejected or unreachable"):
        query_worklist(WorklistSettings(url=f"dicom://X@127.0.0.1:{free_port()}", timeout_s=2))
    bad_aet = orthanc.dicom_url.replace("ORTHANC@", "NOTORTHANC@")
    with pytest.raises(WorklistError):
        query_worklist(WorklistSettings(url=bad_aet, timeout_s=5))


def test_poller_keeps_last_good_answer(orthanc: Orthanc) -> None:
    write_wl(orthanc.worklists, "a", accession="A1", patient_id="P1")
    p = WorklistPoller(WorklistSettings(url=orthanc.dicom_url, timeout_s=3))
    assert [o.accession_number for o in p.poll_once()] == ["A1"]
    orthanc.stop()
    assert [o.accession_number for o in p.poll_once()] == ["A1"]
    st = p.status()
    assert st["last_error"] and st["orders"] == 1
