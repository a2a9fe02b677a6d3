"""The procedure result `dgs.procedure-result/1` (JSON Schema:
edge_service/schemas/procedure-result-1.json), built from a finished `ProcedureTracker`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from edge_service import __version__, docschema
from edge_service.procedure.observation import r
from edge_service.procedure.tracker import ProcedureTracker

SCHEMA_ID = "dgs.procedure-result/1"
SCHEMA_FILE = "procedure-result-1.json"


def build_result(
    tr: ProcedureTracker,
    session: dict[str, Any],
    *,
    locator: str | None,
    model: str | None = None,
    data_quality: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """session: session_id, side, started_t (and optionally ended_t)."""
    s = tr.s
    injections = [i.to_dict() for i in tr.inj.injections]
    alarms = [a.to_dict() for a in tr.alarms.history]
    counts = Counter(a["kind"] for a in alarms)
    q = dict(tr.q)
    frames = max(int(q["frames"]), 1)
    q["needle_unseen_s"] = r(q["needle_unseen_s"], 3)
    q["needle_found_fraction"] = r(q["frames_needle_found"] / frames, 4)
    q["nerve_found_fraction"] = r(q["frames_nerve_found"] / frames, 4)
    notes: list[str] = []
    if q["frames"] == 0:
        notes.append("no frame was analysed")
    if q["frames_needle_found"] == 0:
        notes.append("no needle was seen in this session")
    if q["frames_frozen"]:
        notes.append(f"{q['frames_frozen']} frozen frame(s): guidance was suspended on them")
    if q["track_resets"]:
        notes.append(
            f"{q['track_resets']} jump(s) of the tip to another reflector: 'on target' re-armed only after the needle moved"
        )
    if q["frames_nerve_found"] == 0:
        notes.append("the nerve was never seen: no tip-to-nerve distance could be measured")
    q["notes"] = notes
    q.update(data_quality or {})
    total = sum(i.volume_ml for i in tr.inj.injections)
    started = float(session.get("started_t") or tr.t0 or 0.0)
    ended = float(session.get("ended_t") or tr.t_last or started)
    mn = tr.min_nerve
    doc: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "session_id": str(session["session_id"]),
        "side": session.get("side"),
        "protocol": "injection",
        "started_t": started,
        "ended_t": ended,
        "duration_s": r(ended - started, 3),
        "software": {
            "name": "dgs-edge",
            "version": __version__,
            "locator": locator,
            "model": model,
        },
        "settings": {
            "caution_mm": s.caution_mm,
            "stop_mm": s.stop_mm,
            "lost_after_s": s.lost_after_s,
            "on_target_mm": s.on_target_mm,
            "aliquot_ml": s.aliquot_ml,
        },
        "needle": {
            "min_nerve_distance_mm": None if mn is None else r(mn[0]),
            "min_nerve_distance_t": None if mn is None else mn[1],
            "min_nerve_distance_frame": None if mn is None else mn[2],
            "min_path_nerve_distance_mm": r(tr.min_path),
            "entered_nerve": tr.entered_nerve,
            "on_target_s": r(tr.on_target_s, 3),
            "first_on_target_t": tr.first_on_target_t,
        },
        "passes": {
            "advances": tr.motion.advances,
            "withdrawals": tr.motion.withdrawals,
            "redirects": tr.motion.redirects,
            "events": [e.to_dict() for e in tr.motion.events],
        },
        "injections": injections,
        "total_volume_ml_est": r(total, 3),
        "alarms": alarms,
        "alarm_counts": dict(sorted(counts.items())),
        "findings": {
            "intraneural_risk": bool(tr.entered_nerve or counts.get("nerve_stop")),
            "spread_reached_epineurium": any(i["reached_epineurium"] for i in injections),
            "injections_on_target": sum(1 for i in injections if i["on_target"]),
            "volume_note": "volumes are estimates from the spread's cross-section (sphere model)",
        },
        "data_quality": q,
        "followup": None,
    }
    return doc


def load_schema() -> dict[str, Any]:
    return docschema.load(SCHEMA_FILE)


def validate(doc: Any) -> None:
    """Raise InputError naming the first violation of dgs.procedure-result/1."""
    docschema.check(doc, SCHEMA_FILE, SCHEMA_ID)
