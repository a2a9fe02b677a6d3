"""The session registry's records, and which sessions may be compared with which.

Comparisons are only ever made between sessions of one patient: contralateral = the same
order (accession number), the other side; follow-up = the same side under an earlier order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_service.errors import DgsError
from edge_service.live.session import LiveSession

log = logging.getLogger(__name__)


class NotFound(DgsError):
    """No session with this id."""


class Conflict(DgsError):
    """The request does not fit the session's state (e.g. a second start while acquiring)."""


@dataclass
class Order:
    accession_number: str
    patient_id: str

    def to_dict(self) -> dict[str, str]:
        return {"accession_number": self.accession_number, "patient_id": self.patient_id}


@dataclass
class SessionEntry:
    """A session as the registry knows it (live or loaded from disk)."""

    id: str
    side: str
    protocol: str
    order: Order
    started_t: float
    path: Path
    state: str
    live: LiveSession | None = None
    error: str | None = None
    ended_reason: str | None = None
    published: bool = False
    result_ready_t: float | None = None
    stopped_t: float | None = None
    _result: dict[str, Any] | None = field(default=None, repr=False)

    def result(self) -> dict[str, Any] | None:
        if self._result is None and self.state == "done":
            p = self.path / "result.json"
            if p.exists():
                self._result = json.loads(p.read_text(encoding="utf-8"))
        return self._result

    def summary(self) -> dict[str, Any]:
        r = self.result() or {}
        nerve = r.get("nerve") or {}
        gl = r.get("gliding") or {}
        calc = r.get("calcification") or {}
        return {
            "id": self.id,
            "state": self.state,
            "side": self.side,
            "protocol": self.protocol,
            "accession_number": self.order.accession_number,
            "patient_id": self.order.patient_id,
            "started_t": self.started_t,
            "published": self.published,
            "error": self.error,
            "ended_reason": self.ended_reason,
            "ap_diameter_mm": nerve.get("ap_diameter_mm"),
            "csa_mm2": nerve.get("csa_mm2"),
            "calcification": calc.get("present"),
            "restricted": gl.get("restricted"),
        }


def comparisons_for(e: SessionEntry, sessions: list[SessionEntry]) -> list[dict[str, Any]]:
    """Contralateral (same order, other side) and follow-up (same patient and side,
    an earlier order) comparisons of a done session. Never across patients."""
    from edge_service.analysis.compare import compare

    others = [
        o
        for o in sessions
        if o.id != e.id and o.state == "done" and o.order.patient_id == e.order.patient_id
    ]
    res = e.result()
    if res is None:
        return []
    out: list[dict[str, Any]] = []
    same_order = [o for o in others if o.order.accession_number == e.order.accession_number]
    contra = [o for o in same_order if o.side != e.side]
    if contra:
        o = max(contra, key=lambda x: x.started_t)  # the latest recording of that side
        ro = o.result()
        if ro is not None:
            try:
                doc = compare(res, ro, "contralateral")
                doc["sessions"] = {e.side: e.id, o.side: o.id}
                out.append(doc)
            except DgsError as exc:
                log.warning("contralateral comparison failed: %s", exc)
    earlier = [
        o
        for o in others
        if o.side == e.side
        and o.order.accession_number != e.order.accession_number
        and o.started_t < e.started_t
    ]
    if earlier:
        o = max(earlier, key=lambda x: x.started_t)  # the previous visit
        ro = o.result()
        if ro is not None:
            try:
                doc = compare(ro, res, "followup")
                doc["baseline_accession_number"] = o.order.accession_number
                out.append(doc)
            except DgsError as exc:
                log.warning("follow-up comparison failed: %s", exc)
    return out
