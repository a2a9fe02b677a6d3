"""The result documents' JSON Schemas (edge_service/schemas), loaded once and checked with
one clear line: shared by dgs.session-result and dgs.procedure-result."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from edge_service.errors import InputError


@functools.cache
def load(file: str) -> dict[str, Any]:
    text = resources.files("edge_service").joinpath("schemas", file).read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def check(doc: Any, file: str, schema_id: str) -> None:
    """Raise InputError naming the first violation (in path order) of the schema in `file`."""
    import jsonschema  # only where documents are checked: keeps the appliance's start-up lean

    schema = load(file)
    cls = jsonschema.validators.validator_for(schema)
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise InputError(f"not a valid {schema_id} document at {where}: {e.message}")
