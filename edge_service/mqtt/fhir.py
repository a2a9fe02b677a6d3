"""HL7 FHIR R4 transaction Bundle for one session result (DiagnosticReport + Observations +
the detection model as a Device). Identifiers are derived from site/device/session so a FHIR
server can use conditional create (`ifNoneExist`) and a re-sent bundle creates nothing twice.
No patient reference: the appliance only knows the pseudonymous session id."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from edge_service.mqtt.payloads import NAMESPACE

UCUM = "http://unitsofmeasure.org"
SYSTEM = "urn:dgs-edge"
CODES = f"{SYSTEM}:observation"
# (result path, code, display, UCUM unit)
QUANTITIES = [
    ("nerve.ap_diameter_mm", "nerve-ap-diameter", "Sciatic nerve AP diameter", "mm"),
    ("nerve.width_mm", "nerve-width", "Sciatic nerve width", "mm"),
    ("nerve.csa_mm2", "nerve-csa", "Sciatic nerve cross-sectional area", "mm2"),
    ("nerve.fascicular_index", "nerve-fascicular-index", "Fascicular pattern index", "1"),
    ("calcification.long_axis_mm", "calc-long-axis", "Calcification long axis", "mm"),
    ("calcification.thickness_mm", "calc-thickness", "Calcification thickness", "mm"),
    ("calcification.nerve_distance_mm", "calc-nerve-distance", "Nerve to calcification", "mm"),
    ("gliding.excursion_mm", "gliding-excursion", "Nerve gliding excursion", "mm"),
    ("gliding.per_10deg_ir_mm", "gliding-per-10deg-ir", "Gliding per 10° internal rotation", "mm"),
]
FLAGS = [
    ("calcification.present", "calc-present", "Calcification present"),
    ("gliding.restricted", "gliding-restricted", "Nerve gliding restricted"),
]
ANGLES = [("peak_flexion_deg", "hip-flexion"), ("peak_adduction_deg", "hip-adduction"),
          ("peak_internal_rotation_deg", "hip-internal-rotation")]  # fmt: skip


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


def _entry(resource: dict[str, Any], key: str) -> dict[str, Any]:
    ident = resource["identifier"][0]
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid5(NAMESPACE, key)}",
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
        },
    }


def _code(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": CODES, "code": code, "display": display}], "text": display}


def bundle(site: str, device: str, session_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    base = f"{site}/{device}/{session_id}"
    software = result.get("software")
    model = software.get("model") if isinstance(software, Mapping) else None
    if not isinstance(model, Mapping):
        model = {}
    model_name = str(model.get("name", "dgs-detector"))
    model_version = str(model.get("version", model.get("sha256", "unknown")))
    dev_key = f"{model_name}@{model_version}"
    device_res = {
        "resourceType": "Device",
        "identifier": [{"system": f"{SYSTEM}:model", "value": dev_key}],
        "deviceName": [{"name": model_name, "type": "model-name"}],
        "version": [{"value": model_version}],
    }
    dev_entry = _entry(device_res, f"device/{dev_key}")
    obs_entries: list[dict[str, Any]] = []

    def obs(
        code: str, display: str, value: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> None:
        res = {
            "resourceType": "Observation",
            "identifier": [{"system": f"{SYSTEM}:observation-id", "value": f"{base}/{code}"}],
            "status": "final",
            "code": _code(code, display),
            "device": {"reference": dev_entry["fullUrl"]},
            **value,
            **(extra or {}),
        }
        obs_entries.append(_entry(res, f"{base}/{code}"))

    for path, code, display, unit in QUANTITIES:
        v = _num(_get(result, path))
        if v is not None:
            q = {"value": v, "unit": unit, "system": UCUM, "code": unit}
            obs(code, display, {"valueQuantity": q})
    for path, code, display in FLAGS:
        v = _get(result, path)
        if isinstance(v, bool):
            obs(code, display, {"valueBoolean": v})
    mans = result.get("maneuvers")
    for i, m in enumerate(mans if isinstance(mans, list) else []):
        if not isinstance(m, Mapping):
            continue
        peaks = m
        comps = [
            {"code": _code(code, code.replace("-", " ")),
             "valueQuantity": {"value": _num(peaks[k]), "unit": "deg", "system": UCUM, "code": "deg"}}
            for k, code in ANGLES
            if _num(peaks.get(k)) is not None
        ]  # fmt: skip
        if comps:
            name = str(m.get("name", "manoeuvre"))
            obs(f"manoeuvre-{i}-{name}", f"Peak hip angles during {name}", {}, {"component": comps})
    report = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": f"{SYSTEM}:report", "value": base}],
        "status": "final",
        "code": _code("dgs-dynamic-us", "Dynamic ultrasound of the deep gluteal space"),
        "result": [{"reference": e["fullUrl"]} for e in obs_entries],
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [dev_entry, *obs_entries, _entry(report, f"{base}/report")],
    }
