"""Payload envelopes of the MQTT API (JSON Schemas in edge_service/schemas/mqtt-*.json)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from edge_service.errors import InputError

SCHEMA_STATUS = "dgs.mqtt-status/1"
SCHEMA_EVENT = "dgs.mqtt-event/1"
SCHEMA_RESULT = "dgs.mqtt-result/1"
SCHEMA_FHIR = "dgs.mqtt-fhir/1"
SCHEMA_LIVE_ANGLES = "dgs.mqtt-live-angles/1"
SCHEMA_LIVE_MEASUREMENTS = "dgs.mqtt-live-measurements/1"
SCHEMA_PROCEDURE = "dgs.mqtt-procedure/1"
EVENT_KINDS = ("started", "manoeuvre", "ended", "parked", "alarm")
# Stable namespace so a re-published result keeps its message id (idempotent for consumers).
NAMESPACE = uuid.UUID("6b1f3c1e-4d0a-5c51-9a4e-2f3d0d6a7e11")
# Keys that would carry patient identity; payloads are pseudonymous by contract.
_PII_KEYS = {
    "patient", "patient_name", "patient_id", "mrn", "birth_date", "birthdate", "dob",
    "address", "phone", "email", "ssn", "accession_number", "patientname", "patientid",
}  # fmt: skip


def check_no_pii(obj: Any, where: str = "payload") -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if str(k).lower() in _PII_KEYS:
                raise InputError(f"{where} carries a patient-identifying field {k!r}; refused")
            check_no_pii(v, where)
    elif isinstance(obj, list | tuple):
        for v in obj:
            check_no_pii(v, where)


def dumps(doc: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise InputError(f"payload is not JSON-serialisable: {exc}") from exc


def result_msg_id(
    site: str, device: str, session_id: str, leaf: str = "result", version: int = 1
) -> str:
    """Stable per session and result version: re-sending a version is idempotent downstream,
    a correction (version n+1) is a new message that de-duplicating consumers keep."""
    key = f"{site}/{device}/{session_id}/{leaf}"
    return str(uuid.uuid5(NAMESPACE, key if version <= 1 else f"{key}/v{version}"))


# The one identifier an MQTT result may carry: the order's accession number, inside the
# top-level `order` block, put there by the integration layer only when
# `[dicom] mqtt_identifiers = "accession"` (the default). Everything else stays refused.
MQTT_ORDER_KEYS = frozenset({"accession_number"})


def check_result_pii(doc: Mapping[str, Any], where: str = "result") -> None:
    order = doc.get("order")
    if order is not None and (not isinstance(order, Mapping) or set(order) - MQTT_ORDER_KEYS):
        extra = sorted(set(order) - MQTT_ORDER_KEYS) if isinstance(order, Mapping) else []
        raise InputError(f"{where}: the order block may only carry the accession number "
                         f"in MQTT; refused {extra}")  # fmt: skip
    check_no_pii({k: v for k, v in doc.items() if k != "order"}, where)


def envelope(
    schema: str, msg_id: str, seq: int, site: str, device: str, session_id: str
) -> dict[str, Any]:
    return {
        "schema": schema,
        "msg_id": msg_id,
        "seq": seq,
        "site": site,
        "device": device,
        "session_id": session_id,
        "ts": time.time(),
    }
