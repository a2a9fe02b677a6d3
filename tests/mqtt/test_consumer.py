"""Consumer rules on real publisher payloads: validation, de-duplication, gap detection."""

from __future__ import annotations

import json

from edge_service.mqtt import payloads as pl
from edge_service.mqtt.consumer import Consumer
from edge_service.mqtt.fhir import bundle
from tests.mqtt.sample_result import sample_result

T = "dgs/v1/site-a/dgs-01/sessions/s-1/events"


def event(seq: int, msg_id: str | None = None) -> bytes:
    doc = pl.envelope(pl.SCHEMA_EVENT, msg_id or f"00000000-0000-4000-8000-{seq:012d}", seq,
                      "site-a", "dgs-01", "s-1")  # fmt: skip
    doc.update(event="manoeuvre", data={"name": "fair"})
    return pl.dumps(doc)


def test_duplicates_are_flagged_and_gaps_reported():
    c = Consumer()
    assert c.handle(T, event(1)).valid
    assert c.handle(T, event(1)).duplicate
    r = c.handle(T, event(4))
    assert r.gap == (2, 3)
    assert c.handle(T, event(2)).gap is None  # late arrival fills in, no new gap
    assert c.counts == {"received": 4, "valid": 4, "invalid": 0, "duplicates": 1, "gaps": 1,
                        "missing": 2}  # fmt: skip


def test_invalid_payloads_are_reported_not_raised():
    c = Consumer()
    assert "not JSON" in (c.handle(T, b"\xff\x00").error or "")
    doc = json.loads(event(1))
    doc["event"] = "exploded"
    assert "invalid at event" in (c.handle(T, json.dumps(doc).encode()).error or "")
    assert "differ from topic" in (c.handle(T.replace("dgs-01", "dgs-02"), event(2)).error or "")
    assert c.handle(T, b"").valid  # cleared retained message
    assert c.counts["invalid"] == 3


def test_fhir_bundle_is_valid_and_stable():
    result = sample_result("s-1")
    b1 = bundle("site-a", "dgs-01", "s-1", result)
    b2 = bundle("site-a", "dgs-01", "s-1", result)
    assert b1 == b2  # stable identifiers and fullUrls: re-sending creates nothing twice
    kinds = [e["resource"]["resourceType"] for e in b1["entry"]]
    assert kinds[0] == "Device" and kinds[-1] == "DiagnosticReport"
    # Codings: the standard code (where one exists) first, the local code always (last).
    obs = {e["resource"]["code"]["coding"][-1]["code"]: e["resource"] for e in b1["entry"]
           if e["resource"]["resourceType"] == "Observation"}  # fmt: skip
    assert obs["nerve-csa"]["valueQuantity"] == {"value": 61.0, "unit": "mm2",
                                                 "system": "http://unitsofmeasure.org", "code": "mm2"}  # fmt: skip
    assert obs["calc-present"]["valueBoolean"] is True
    assert obs["manoeuvre-0-fair"]["component"][0]["valueQuantity"]["code"] == "deg"
    report = b1["entry"][-1]
    # Conditional update: a corrected result (version n+1) updates the filed report.
    assert report["request"] == {"method": "PUT", "url": "DiagnosticReport?identifier="
                                 "urn:dgs-edge:report|site-a/dgs-01/s-1"}  # fmt: skip
    assert len(report["resource"]["result"]) == len(obs)
    env = pl.envelope(pl.SCHEMA_FHIR, pl.result_msg_id("site-a", "dgs-01", "s-1", "fhir"), 3,
                      "site-a", "dgs-01", "s-1")  # fmt: skip
    env["bundle"] = b1
    rec = Consumer().handle("dgs/v1/site-a/dgs-01/sessions/s-1/fhir", pl.dumps(env))
    assert rec.valid, rec.error
