"""A correction arrives as version 2 everywhere: MQTT (new msg_id, supersedes), PACS (a new
SR naming its predecessor) and FHIR (amended, same conditional-update targets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from pydicom import dcmread

from edge_service.dicomnet.queue import ForwardQueue
from edge_service.dicomnet.settings import DicomSettings
from edge_service.errors import InputError
from edge_service.integration.corrections import mqtt_result, supersede
from edge_service.integration.export import export_session
from edge_service.mqtt import MqttSettings, Publisher
from edge_service.mqtt.fhir import bundle
from edge_service.mqtt.validation import validate
from tests.harness.hospital import ORDER, record_session
from tests.harness.orthanc import Orthanc

pytestmark = pytest.mark.sim


def test_relabel_is_version_2_everywhere(orthanc: Orthanc, mosquitto: Any,
                                         collector_factory: Any, tmp_path: Path) -> None:  # fmt: skip
    rec = tmp_path / "rec"
    record_session(rec)
    s = DicomSettings(destinations=[orthanc.dicom_url])
    q = ForwardQueue(tmp_path / "fwd.sqlite", s)
    v1 = export_session(rec, s, q)
    col = collector_factory("127.0.0.1", mosquitto.port)
    pub = Publisher(MqttSettings(url=mosquitto.url, fhir=True, reconnect_max_s=1.0),
                    tmp_path / "outbox.sqlite")  # fmt: skip
    pub.start()
    try:
        with pytest.raises(InputError):  # the full order never goes to MQTT
            pub.result(v1["session_id"], v1)
        m1 = pub.result(v1["session_id"], mqtt_result(v1, "accession"))
        relabelled = dict(v1)
        relabelled["nerve"] = dict(
            v1["nerve"], ap_diameter_mm=round(v1["nerve"]["ap_diameter_mm"] + 1.5, 4)
        )
        v2 = supersede(rec, relabelled, site="site-a", device="dgs-01", settings=s, queue=q)
        m2 = pub.result(v2["session_id"], mqtt_result(v2, "accession"))
        assert pub.wait_drained(10)
    finally:
        pub.stop(timeout_s=2)
    assert m1 != m2 and v2["version"] == 2 and v2["supersedes"] == m1
    docs = col.wait_docs("/result", 2)
    got = {d["msg_id"]: d["result"] for d in docs}
    assert got[m2]["version"] == 2 and got[m2]["supersedes"] == m1
    assert got[m2]["order"] == {"accession_number": ORDER.accession_number}
    for d in docs:  # what went over the wire validates against the published contract
        validate(d)
    assert q.drain(60)
    # PACS: two SRs in the one study, v2 names v1 as its predecessor.
    srs = [i for i in orthanc.find("Instance", AccessionNumber=ORDER.accession_number)
           if i["MainDicomTags"]["SOPInstanceUID"] in (v1["dicom"]["sr"]["sop_instance_uid"],
                                                       v2["dicom"]["sr"]["sop_instance_uid"])]  # fmt: skip
    assert len(srs) == 2
    sr2 = dcmread(rec / "sr-v2.dcm")
    pred = sr2.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pred.ReferencedSOPInstanceUID == v1["dicom"]["sr"]["sop_instance_uid"]
    assert json.loads((rec / "result-v1.json").read_text())["dicom"] == v1["dicom"]
    # Cine is not sent twice: 1 cine + 2 SR + 2 PDF.
    assert q.status()[orthanc.dicom_url]["sent"] == 5
    # FHIR: amended, updating what version 1 filed.
    b1, b2 = (bundle("site-a", "dgs-01", v1["session_id"], v) for v in (v1, v2))
    Bundle.model_validate(b2)
    assert [e["request"] for e in b1["entry"]] == [e["request"] for e in b2["entry"]]
    rep = [
        e["resource"] for e in b2["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    assert rep[0]["status"] == "amended"
    fhir_ids = {d["msg_id"] for d in col.wait_docs("/fhir", 2)}
    assert len(fhir_ids) == 2
    q.close()
