"""The offline pass over a recorded injection session: every frame through the same
`ProcedureAnalyzer` as the live session; writes result.json, key frames and report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_service.needle.types import NeedleLocator
from edge_service.procedure.analyzer import Measure, ProcedureAnalyzer
from edge_service.procedure.settings import ProcedureSettings


def analyze_procedure(
    recording: Path,
    detector: Any,
    locator: NeedleLocator,
    settings: ProcedureSettings | None = None,
    *,
    measure: Measure | None = None,
    write: bool = True,
) -> tuple[dict[str, Any], ProcedureAnalyzer, list[Any]]:
    """Returns (result, analyzer, per-frame states)."""
    from edge_service.analysis.result import write_json_atomic
    from edge_service.procedure.report import write_key_frames, write_report
    from edge_service.recording import open_recording

    rec = open_recording(recording)
    meta = rec.meta
    an = ProcedureAnalyzer(
        detector,
        locator,
        settings,
        measure=measure,
        every_frame=True,  # no probe to keep up with: the nerve detector sees every frame
        session={"session_id": meta.session_id, "side": meta.side, "started_t": meta.started_t},
    )
    states = []
    for frame in rec.frames():
        st, _, _ = an.add_frame(frame)
        states.append(st)
    result = an.finish({"analysis": "offline (every recorded frame)"})
    if write:
        pngs = write_key_frames(recording, an.key_frames)
        write_json_atomic(recording / "result.json", result)
        write_report(recording / "report.html", result, pngs)
    return result, an, states
