"""The workstation's Correct (a published session relabelled to the other side): version 2
over MQTT (new msg_id, supersedes), a new SR to a real Orthanc, the FHIR report amended on a
real FHIR server. The route is a thin layer over integration.corrections.correct_session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_service.dicomnet.settings import DicomSettings
from edge_service.integration.delivery import HospitalDelivery
from edge_service.integration.fhirsettings import FhirSettings
from edge_service.integration.workstation import install
from edge_service.mqtt import MqttSettings, Publisher
from tests.harness.fhirserver import have_fhir_server, start_fhir_server
from tests.harness.orthanc import Orthanc
from tests.workstation.conftest import detector, make_workstation  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.sim,
    pytest.mark.skipif(not have_fhir_server(), reason="scripts/setup installs tools/fhir"),
]


def test_correct_a_published_session(make_workstation: Any, orthanc: Orthanc,  # noqa: F811
                                     mosquitto: Any, collector_factory: Any,
                                     tmp_path: Path) -> None:  # fmt: skip
    fhir = start_fhir_server()
    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/#")
    pub = Publisher(MqttSettings(url=mosquitto.url, site="ward-9", device="ws-1",
                                 reconnect_max_s=1.0), tmp_path / "outbox.sqlite")  # fmt: skip
    pub.start()
    d = HospitalDelivery(DicomSettings(destinations=[orthanc.dicom_url]),
                         FhirSettings(url=fhir.url), tmp_path / "state", site="ward-9",
                         device="ws-1")  # fmt: skip
    d.start()
    try:
        w = make_workstation(publisher=pub)
        install(w.service, None, delivery=d)
        r = w.client.post("/api/v1/sessions", json={"side": "left", "protocol": "fair",
                          "accession_number": "ACC-9", "patient_id": "PID-9"})  # fmt: skip
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        w.wait_frames(sid, 6)
        w.client.post(f"/api/v1/sessions/{sid}/stop")
        w.wait_state(sid, ("done",), 120)
        r = w.client.post(f"/api/v1/sessions/{sid}/correct", json={"side": "right"})
        assert r.status_code == 409 and "relabel it instead" in r.text  # not published yet
        assert w.client.post(f"/api/v1/sessions/{sid}/publish").status_code == 200
        same = w.client.post(f"/api/v1/sessions/{sid}/correct",
                             json={"side": "left", "reanalyse": False})  # fmt: skip
        assert same.status_code == 422 and "nothing to correct" in same.text
        r = w.client.post(f"/api/v1/sessions/{sid}/correct", json={"side": "right"})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["version"] == 2 and got["side"] == "right"
        assert w.client.post(f"/api/v1/sessions/{sid}/correct", json={"nope": 1}).status_code == 422
        assert pub.wait_drained(15) and d.drain(60)
        docs = [x for x in col.wait_docs("/result", 2, timeout_s=30)]
        by_v = {int(x["result"].get("version") or 1): x for x in docs}
        assert (
            by_v[2]["msg_id"] == got["msg_id"]
            and by_v[2]["result"]["supersedes"] == by_v[1]["msg_id"]
        )
        assert by_v[2]["result"]["side"] == "right" and by_v[1]["result"]["side"] == "left"
        detail = w.client.get(f"/api/v1/sessions/{sid}").json()
        assert detail["result"]["version"] == 2
        sr2 = by_v[2]["result"]["dicom"]["sr"]["sop_instance_uid"]
        assert len(orthanc.find("Instance", SOPInstanceUID=sr2)) == 1
        assert len(orthanc.find("Instance", AccessionNumber="ACC-9")) == 5  # cine, 2 SR, 2 PDF
        (rep,) = fhir.resources("DiagnosticReport")
        assert rep["status"] == "amended"
        assert "/correct" in w.client.get("/static/app.js").text  # the page's Correct button
    finally:
        d.close()
        pub.stop(timeout_s=2)
        fhir.stop()
