"""HL7 FHIR R4 transaction Bundle for one session result, meant to file as-is.

Resources: the detection model (Device, with a real version), the site (Organization, the
performer), the patient and the order when the session was scanned under one (Patient,
`basedOn` a ServiceRequest by its accession-number identifier), the cine (ImagingStudy), one
Observation per measured value and the DiagnosticReport with its conclusion.

Codes: LOINC / SNOMED CT / DCM where a standard concept exists (edge_service/integration/
codes.py); the local code (`urn:dgs-edge:observation`) is always sent too, as an extra coding,
so consumers keyed on it keep working. Identifiers derive from site/device/session, so the
bundle is stable: Device, Organization and Patient are conditional creates (`ifNoneExist`);
ImagingStudy, Observations and the DiagnosticReport are conditional updates
(`PUT Type?identifier=...`), so a corrected result (version n+1, `status: amended`) updates
what was filed instead of adding a second report."""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Mapping
from typing import Any

from edge_service.integration.codes import LATERALITY, LOINC_URL, MEASUREMENTS, REPORT_LOINC, SITE
from edge_service.mqtt.payloads import NAMESPACE

UCUM = "http://unitsofmeasure.org"
SYSTEM = "urn:dgs-edge"
CODES = f"{SYSTEM}:observation"
SCT_URL = "http://snomed.info/sct"
DCM_URL = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
US_SOP = "1.2.840.10008.5.1.4.1.1.3.1"
# result path -> (local code, display, UCUM unit); kept for consumers that import it.
QUANTITIES = [(p, c.local, c.display, c.unit) for p, c in MEASUREMENTS.items()]
FLAGS = [
    ("calcification.present", "calc-present", "Calcification present"),
    ("gliding.restricted", "gliding-restricted", "Nerve gliding restricted"),
]
ANGLES = [("peak_flexion_deg", "hip-flexion"), ("peak_adduction_deg", "hip-adduction"),
          ("peak_internal_rotation_deg", "hip-internal-rotation")]  # fmt: skip
_STD_URL = {"SCT": SCT_URL, "DCM": DCM_URL}


def _get(doc: Mapping[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        # dgs.session-result/1.1: an undetermined finding is never sent as a value.
        if cur.get("state") == "undetermined":
            return None
        cur = cur[part]
    return cur


def _num(v: Any) -> float | None:
    """A JSON number as float; None for anything else (bools, text, ints too big for float)."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def _full_url(key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, key)}"


def _entry(resource: dict[str, Any], key: str, *, update: bool = False) -> dict[str, Any]:
    ident = resource["identifier"][0]
    query = f"identifier={ident['system']}|{ident['value']}"
    rtype = resource["resourceType"]
    request = ({"method": "PUT", "url": f"{rtype}?{query}"} if update
               else {"method": "POST", "url": rtype, "ifNoneExist": query})  # fmt: skip
    return {"fullUrl": _full_url(key), "resource": resource, "request": request}


def _code(code: str, display: str, std: tuple[str, str, str] | None = None) -> dict[str, Any]:
    coding = []
    if std is not None and std[0] in _STD_URL:
        coding.append({"system": _STD_URL[std[0]], "code": std[1], "display": std[2]})
    coding.append({"system": CODES, "code": code, "display": display})
    return {"coding": coding, "text": display}


def _iso(t: Any) -> str | None:
    if not isinstance(t, int | float) or isinstance(t, bool):
        return None
    return _dt.datetime.fromtimestamp(float(t), tz=_dt.UTC).isoformat(timespec="seconds")


def _human_name(pn: str) -> list[dict[str, Any]]:
    if not pn:
        return []
    parts = pn.split("=")[0].split("^")
    name: dict[str, Any] = {"text": " ".join(p for p in (parts[1:2] + parts[:1]) if p)}
    if parts[0]:
        name["family"] = parts[0]
    given = [p for p in parts[1:3] if p]
    if given:
        name["given"] = given
    return [name]


def _body_site(side: str) -> dict[str, Any]:
    lat = LATERALITY.get(side)
    coding = [{"system": CODES, "code": SITE[1], "display": SITE[2]}]
    text = SITE[2] if lat is None else f"{lat[1]} {SITE[2][0].lower()}{SITE[2][1:]}"
    if lat is not None:
        coding.append({"system": CODES, "code": f"{SITE[1]}-{side}", "display": text})
    return {"coding": coding, "text": text}


def _model_version(result: Mapping[str, Any]) -> tuple[str, str]:
    software = result.get("software") if isinstance(result.get("software"), Mapping) else {}
    assert isinstance(software, Mapping)
    model = software.get("model") if isinstance(software.get("model"), Mapping) else {}
    assert isinstance(model, Mapping)
    name = str(model.get("name") or "dgs-detector")
    version = model.get("version") or software.get("model_version")
    sha = model.get("sha256")
    if not version and sha:
        version = f"sha256:{str(sha)[:12]}"
    if not version:
        # No model identity in the result: the software that produced it is the version.
        version = f"{software.get('name', 'dgs-edge')} {software.get('version', '')}".strip()
    return name, str(version)


def _device_and_site(
    dev_key: str, name: str, version: str, site: str
) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, str]]:
    """The Device (model/software by identifier) and Organization (site) entries every bundle
    starts with, and references to both; shared by the exam's and the procedure's bundle."""
    device_res = {
        "resourceType": "Device",
        "identifier": [{"system": f"{SYSTEM}:model", "value": dev_key}],
        "deviceName": [{"name": name, "type": "model-name"}],
        "version": [{"value": version}],
    }
    org = {
        "resourceType": "Organization",
        "identifier": [{"system": f"{SYSTEM}:site", "value": site}],
        "name": site,
    }
    entries = [_entry(device_res, f"device/{dev_key}"), _entry(org, f"site/{site}")]
    return entries, {"reference": entries[0]["fullUrl"]}, {"reference": entries[1]["fullUrl"]}


def bundle(site: str, device: str, session_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    base = f"{site}/{device}/{session_id}"
    version = int(result.get("version", 1) or 1)
    status = "final" if version <= 1 else "amended"
    side = str(result.get("side", ""))
    effective = _iso(result.get("started_t"))
    issued = _iso(result.get("analysed_t"))
    model_name, model_version = _model_version(result)
    dev_key = f"{model_name}@{model_version}"
    entries, dev_ref, org_ref = _device_and_site(dev_key, model_name, model_version, site)

    order = result.get("order") if isinstance(result.get("order"), Mapping) else None
    subject: dict[str, Any] | None = None
    based_on: list[dict[str, Any]] = []
    if order and order.get("patient_id"):
        pat = {
            "resourceType": "Patient",
            "identifier": [{"system": f"{SYSTEM}:{site}:patient-id", "value": str(order["patient_id"])}],
        }  # fmt: skip
        hn = _human_name(str(order.get("patient_name", "")))
        if hn:
            pat["name"] = hn
        entries.append(_entry(pat, f"patient/{site}/{order['patient_id']}"))
        subject = {"reference": entries[-1]["fullUrl"]}
    if order and order.get("accession_number"):
        based_on = [{
            "type": "ServiceRequest",
            "identifier": {
                "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                "system": f"{SYSTEM}:{site}:accession",
                "value": str(order["accession_number"]),
            },
        }]  # fmt: skip

    study_refs: list[dict[str, Any]] = []
    dicom = result.get("dicom") if isinstance(result.get("dicom"), Mapping) else None
    if dicom and dicom.get("study_instance_uid") and subject is not None:
        cine = dicom.get("cine") or {}
        st: dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "identifier": [
                {"system": "urn:dicom:uid", "value": f"urn:oid:{dicom['study_instance_uid']}"}
            ],
            "status": "available",
            "subject": subject,
            "modality": [{"system": DCM_URL, "code": "US"}],
            "numberOfSeries": 1,
            "numberOfInstances": 1,
            "series": [
                {
                    "uid": str(cine.get("series_instance_uid", "")),
                    "modality": {"system": DCM_URL, "code": "US"},
                    "bodySite": {
                        "system": SCT_URL,
                        "code": "24136001",
                        "display": "Hip joint structure",
                    },
                    "laterality": (
                        {
                            "system": SCT_URL,
                            "code": LATERALITY[side][0],
                            "display": LATERALITY[side][1],
                        }
                        if side in LATERALITY
                        else None
                    ),
                    "instance": [
                        {
                            "uid": str(cine.get("sop_instance_uid", "")),
                            "sopClass": {
                                "system": "urn:ietf:rfc:3986",
                                "code": f"urn:oid:{US_SOP}",
                            },
                        }
                    ],
                }
            ],
        }
        if st["series"][0]["laterality"] is None:
            del st["series"][0]["laterality"]
        if based_on:
            st["basedOn"] = based_on
        if effective:
            st["started"] = effective
        entries.append(_entry(st, f"{base}/study", update=True))
        study_refs = [{"reference": entries[-1]["fullUrl"]}]

    common: dict[str, Any] = {
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "imaging"}]}]
    }
    if subject is not None:
        common["subject"] = subject
    if based_on:
        common["basedOn"] = based_on
    if effective:
        common["effectiveDateTime"] = effective
    common["performer"] = [org_ref]
    obs_entries: list[dict[str, Any]] = []

    def obs(code: dict[str, Any], key: str, value: dict[str, Any]) -> None:
        res = {
            "resourceType": "Observation",
            "identifier": [{"system": f"{SYSTEM}:observation-id", "value": f"{base}/{key}"}],
            "status": status,
            **common,
            "code": code,
            "bodySite": _body_site(side),
            "device": dev_ref,
            **value,
        }
        obs_entries.append(_entry(res, f"{base}/{key}", update=True))

    for path, c in MEASUREMENTS.items():
        v = _num(_get(result, path))
        if v is not None:
            q = {"value": v, "unit": c.unit, "system": UCUM, "code": c.unit}
            obs(_code(c.local, c.display, c.std), c.local, {"valueQuantity": q})
    for path, code, display in FLAGS:
        v = _get(result, path)
        if isinstance(v, bool):
            obs(_code(code, display), code, {"valueBoolean": v})
    mans = result.get("maneuvers")
    for i, m in enumerate(mans if isinstance(mans, list) else []):
        if not isinstance(m, Mapping):
            continue
        comps = [
            {"code": _code(code, code.replace("-", " ")),
             "valueQuantity": {"value": _num(m[k]), "unit": "deg", "system": UCUM, "code": "deg"}}
            for k, code in ANGLES
            if _num(m.get(k)) is not None
        ]  # fmt: skip
        if comps:
            name = str(m.get("name", "manoeuvre"))
            key = f"manoeuvre-{i}-{name}"
            obs(_code(key, f"Peak hip angles during {name}"), key, {"component": comps})
    findings = [str(f) for f in result.get("findings") or []]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": f"{SYSTEM}:report", "value": base}],
        "status": status,
        **common,
        "category": [{"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [{"system": LOINC_URL, "code": REPORT_LOINC[0], "display": REPORT_LOINC[1]},
                            {"system": CODES, "code": "dgs-dynamic-us",
                             "display": "Dynamic ultrasound of the deep gluteal space"}],
                 "text": "Dynamic ultrasound of the deep gluteal space"},
        "result": [{"reference": e["fullUrl"]} for e in obs_entries],
    }  # fmt: skip
    report.pop("effectiveDateTime", None)
    if effective:
        report["effectiveDateTime"] = effective
    if issued:
        report["issued"] = issued
    if study_refs:
        report["imagingStudy"] = study_refs
    if findings:
        report["conclusion"] = " ".join(findings)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [*entries, *obs_entries, _entry(report, f"{base}/report", update=True)],
    }
