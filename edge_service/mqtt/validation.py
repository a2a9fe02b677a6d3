"""Validate MQTT payloads against the shipped JSON Schemas (edge_service/schemas)."""

from __future__ import annotations

import functools
import json
import logging
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from edge_service.errors import InputError

log = logging.getLogger(__name__)
BASE = "https://schemas.dgs-edge.local/"
# payload "schema" field -> schema file
FILES = {
    "dgs.mqtt-status/1": "mqtt-status-1.json",
    "dgs.mqtt-event/1": "mqtt-event-1.json",
    "dgs.mqtt-result/1": "mqtt-result-1.json",
    "dgs.mqtt-fhir/1": "mqtt-fhir-1.json",
    "dgs.mqtt-live-angles/1": "mqtt-live-angles-1.json",
    "dgs.mqtt-live-measurements/1": "mqtt-live-measurements-1.json",
    "dgs.mqtt-procedure/1": "mqtt-procedure-1.json",
}
RESULT_SCHEMA = "session-result-1.json"  # owned by the analysis area
PROCEDURE_SCHEMA = "procedure-result-1.json"  # owned by edge_service/procedure


def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("edge_service").joinpath("schemas", name).read_text()
    return json.loads(text)  # type: ignore[no-any-return]


@functools.cache
def _registry() -> Registry:
    reg: Registry = Registry()
    names = [*FILES.values(), RESULT_SCHEMA, PROCEDURE_SCHEMA]
    for name in names:
        try:
            schema = load_schema(name)
        except FileNotFoundError:
            log.warning("schema %s is not installed; results are checked as plain objects", name)
            schema = {"type": "object"}
        res = Resource.from_contents(schema, default_specification=DRAFT202012)
        # Registered by file name under our base, so "$ref": "session-result-1.json" works
        # whatever $id the owning area gives its schema.
        reg = reg.with_resource(BASE + name, res)
        if isinstance(schema.get("$id"), str) and schema["$id"] != BASE + name:
            reg = reg.with_resource(schema["$id"], res)
    return reg


@functools.cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(FILES[schema_name])
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=_registry(), format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return,call-arg]


def validate(doc: Any) -> str:
    """Validate one decoded payload; returns its schema name or raises InputError."""
    if not isinstance(doc, dict):
        raise InputError("payload is not a JSON object")
    name = doc.get("schema")
    if name not in FILES:
        raise InputError(f"unknown payload schema {name!r}")
    errors = sorted(_validator(name).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise InputError(f"{name} payload invalid at {where}: {e.message}")
    return str(name)
