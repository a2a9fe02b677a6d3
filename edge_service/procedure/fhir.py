"""HL7 FHIR (R4/R4B) transaction Bundle for one injection procedure: the Procedure, an
Observation per headline number (minimum tip-nerve distance, estimated total volume,
injection count), the locator/software as Device and the site as Organization; the patient
and the order only when the result carries them (over MQTT only the accession number may:
then the subject is a display-only reference, as FHIR allows).

Codes: local (`urn:dgs-edge:procedure`, `urn:dgs-edge:observation`); no standard code is
claimed that was not checked. Identifiers derive from site/device/session, and the
Procedure and Observations are conditional updates, so re-sending (or a corrected version)
updates what was filed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_service.mqtt.fhir import (
    CODES,
    SYSTEM,
    UCUM,
    V2_0203,
    _body_site,
    _device_and_site,
    _entry,
    _full_url,
    _iso,
    _num,
)
from edge_service.procedure.report import summary_lines

PROC_CODES = f"{SYSTEM}:procedure"


def procedure_bundle(
    site: str, device: str, session_id: str, r: Mapping[str, Any]
) -> dict[str, Any]:
    base = f"{site}/{device}/{session_id}"
    version = int(r.get("version", 1) or 1)
    sw = r.get("software") or {}
    dev_key = f"{sw.get('locator') or 'needle-locator'}@{sw.get('name', 'dgs-edge')} {sw.get('version', '')}".strip()
    entries, dev_ref, org_ref = _device_and_site(
        dev_key,
        str(sw.get("locator") or "needle-locator"),
        f"{sw.get('name', 'dgs-edge')} {sw.get('version', '')}".strip(),
        site,
    )
    order = r.get("order") if isinstance(r.get("order"), Mapping) else None
    subject: dict[str, Any] = {
        "type": "Patient",
        "display": f"patient of session {session_id} (identity not sent)",
    }
    based_on: list[dict[str, Any]] = []
    if order and order.get("patient_id"):
        pat = {
            "resourceType": "Patient",
            "identifier": [
                {"system": f"{SYSTEM}:{site}:patient-id", "value": str(order["patient_id"])}
            ],
        }
        entries.append(_entry(pat, f"patient/{site}/{order['patient_id']}"))
        subject = {"reference": entries[-1]["fullUrl"]}
    if order and order.get("accession_number"):
        based_on = [
            {
                "type": "ServiceRequest",
                "identifier": {
                    "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                    "system": f"{SYSTEM}:{site}:accession",
                    "value": str(order["accession_number"]),
                },
            }
        ]
    status = "completed"
    proc_key = f"{base}/procedure"
    proc_url = _full_url(proc_key)
    obs_entries: list[dict[str, Any]] = []

    def obs(code: str, display: str, value: dict[str, Any]) -> None:
        o = {
            "resourceType": "Observation",
            "identifier": [{"system": f"{SYSTEM}:observation", "value": f"{base}/{code}"}],
            "status": "final" if version <= 1 else "amended",
            "code": {
                "coding": [{"system": CODES, "code": code, "display": display}],
                "text": display,
            },
            "subject": subject,
            "partOf": [{"reference": proc_url}],
            "device": dev_ref,
            **value,
        }
        if _iso(r.get("started_t")):
            o["effectiveDateTime"] = _iso(r.get("started_t"))
        obs_entries.append(_entry(o, f"{base}/obs/{code}", update=True))

    needle = r.get("needle") or {}
    d = _num(needle.get("min_nerve_distance_mm"))
    if d is not None:
        obs("min-tip-nerve-distance", "Minimum needle tip to nerve distance",
            {"valueQuantity": {"value": round(d, 2), "unit": "mm", "system": UCUM, "code": "mm"}})  # fmt: skip
    v = _num(r.get("total_volume_ml_est"))
    if v is not None:
        obs("injected-volume-est", "Injected volume (estimate from the echo spread)",
            {"valueQuantity": {"value": round(v, 3), "unit": "mL", "system": UCUM, "code": "mL"}})  # fmt: skip
    obs("injection-count", "Injections detected", {"valueInteger": len(r.get("injections") or [])})
    findings = r.get("findings") or {}
    proc: dict[str, Any] = {
        "resourceType": "Procedure",
        "identifier": [{"system": f"{SYSTEM}:procedure", "value": base}],
        "status": status,
        "code": {
            "coding": [
                {
                    "system": PROC_CODES,
                    "code": "us-guided-ligament-injection",
                    "display": "Ultrasound-guided injection of the sacrospinous ligament",
                }
            ],
            "text": "Ultrasound-guided injection of the sacrospinous ligament (in-plane needle)",
        },
        "subject": subject,
        "bodySite": [_body_site(str(r.get("side", "")))],
        "performer": [{"actor": org_ref}],
        "usedReference": [dev_ref],
        "note": [{"text": s} for s in summary_lines(dict(r))],
    }
    start, end = _iso(r.get("started_t")), _iso(r.get("ended_t"))
    if start:
        proc["performedPeriod"] = {"start": start, **({"end": end} if end else {})}
    if based_on:
        proc["basedOn"] = based_on
    comps = []
    if findings.get("intraneural_risk"):
        comps.append({"text": "Needle tip at or inside the nerve outline (stop alarm raised)"})
    if findings.get("spread_reached_epineurium"):
        comps.append({"text": "Injectate spread reached the epineurium"})
    if comps:
        proc["complication"] = comps
    proc_entry = {
        "fullUrl": proc_url,
        "resource": proc,
        "request": {"method": "PUT", "url": f"Procedure?identifier={SYSTEM}:procedure|{base}"},
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [*entries, proc_entry, *obs_entries],
    }
