"""Refuse to compare sessions of two different patients (contralateral or follow-up).

The patient of a session is its order's patient id (result `order` block or session.json
`extra.order`), else the session's pseudonym in session.json. Unknown on either side (e.g. a
bare result.json without an order) cannot be checked and is allowed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_service.errors import InputError


def patient_of(path: str | Path, result: Mapping[str, Any]) -> str | None:
    order = result.get("order")
    if isinstance(order, Mapping) and order.get("patient_id"):
        return str(order["patient_id"])
    p = Path(path)
    session = (p if p.is_dir() else p.parent) / "session.json"
    try:
        doc = json.loads(session.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    extra = doc.get("extra") if isinstance(doc, dict) else None
    extra_order = extra.get("order") if isinstance(extra, dict) else None
    if isinstance(extra_order, Mapping) and extra_order.get("patient_id"):
        return str(extra_order["patient_id"])
    pid = doc.get("patient_id") if isinstance(doc, dict) else None
    return str(pid) if pid else None


def check_same_patient(a: tuple[str | Path, Mapping[str, Any]],
                       b: tuple[str | Path, Mapping[str, Any]], force: bool) -> None:  # fmt: skip
    pa, pb = patient_of(*a), patient_of(*b)
    if pa is not None and pb is not None and pa != pb and not force:
        # The ids themselves are not repeated here: terminals and logs are not for PHI.
        raise InputError("A and B belong to different patients; comparing them is refused "
                         "(--force to compare anyway)")  # fmt: skip
