"""The procedure result as MQTT payload, FHIR Procedure bundle (fhir.resources R4B) and
follow-up comparison."""

from __future__ import annotations

import copy
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from edge_service.mqtt import payloads as pl
from edge_service.mqtt.validation import validate as validate_payload
from edge_service.procedure.compare import compare_procedures
from edge_service.procedure.fhir import procedure_bundle
from edge_service.procedure.result import build_result, validate
from tests.procedure.test_tracker import intraneural, normal_procedure, run


def _doc(sid: str = "s-1") -> dict[str, Any]:
    tr, _ = run(normal_procedure())
    return build_result(
        tr, {"session_id": sid, "side": "left", "started_t": 1000.0}, locator="scripted"
    )


def test_mqtt_procedure_envelope_validates() -> None:
    doc = _doc()
    env = pl.envelope(
        pl.SCHEMA_PROCEDURE, "6b1f3c1e-4d0a-5c51-9a4e-2f3d0d6a7e11", 1, "site", "dev", "s-1"
    )
    env["procedure"] = doc
    assert validate_payload(env) == pl.SCHEMA_PROCEDURE
    env["procedure"] = {**doc, "injections": "x"}
    try:
        validate_payload(env)
    except Exception as exc:
        assert "procedure" in str(exc)
    else:
        raise AssertionError("an invalid procedure result passed")


def test_alarm_event_validates() -> None:
    env = pl.envelope(
        pl.SCHEMA_EVENT, "6b1f3c1e-4d0a-5c51-9a4e-2f3d0d6a7e11", 2, "site", "dev", "s-1"
    )
    env.update(event="alarm", data={"kind": "nerve_stop", "level": "stop", "state": "raised"})
    assert validate_payload(env) == pl.SCHEMA_EVENT


def test_fhir_procedure_bundle_is_valid_r4b() -> None:
    doc = _doc()
    b = procedure_bundle("site", "dev", "s-1", doc)
    Bundle.model_validate(b)
    proc = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Procedure")
    assert proc["status"] == "completed" and "performedPeriod" in proc
    assert "complication" not in proc
    codes = {
        e["resource"]["code"]["coding"][0]["code"]
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert codes == {"min-tip-nerve-distance", "injected-volume-est", "injection-count"}
    # with an order carrying the patient (hospital integration), the subject is the Patient
    d2 = dict(doc, order={"accession_number": "A1", "patient_id": "P1"})
    b2 = procedure_bundle("site", "dev", "s-1", d2)
    Bundle.model_validate(b2)
    assert any(e["resource"]["resourceType"] == "Patient" for e in b2["entry"])


def test_fhir_intraneural_has_a_complication() -> None:
    _, tr, _ = intraneural()
    doc = build_result(
        tr, {"session_id": "s-2", "side": "left", "started_t": 1000.0}, locator="scripted"
    )
    b = procedure_bundle("site", "dev", "s-2", doc)
    Bundle.model_validate(b)
    proc = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Procedure")
    assert "complication" in proc


def test_followup_compares_sites_relative_to_the_calcification() -> None:
    base = _doc("s-a")
    cur = copy.deepcopy(base)
    cur["session_id"] = "s-b"
    cur["injections"][1]["offset_from_calcification_mm"] = [10.0, 10.0]  # a new site
    fu = compare_procedures(base, cur)
    assert fu["baseline_injections"] == 2 and fu["injections"] == 2
    assert fu["new_sites"] == 1
    assert fu["sites"][0]["distance_to_previous_mm"] == 0.0
    cur["followup"] = fu
    validate(cur)
