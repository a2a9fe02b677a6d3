"""A short phantom session recorded under an order, analysed (truth detections, as in
tests/analysis), ready for export: the session directory the appliance leaves behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_service.analysis.result import write_json_atomic
from edge_service.analysis.session import SessionAnalyzer
from edge_service.integration.order import Order
from edge_service.integration.session import attach_order
from edge_service.recording import RecordingWriter, SessionMeta
from tests.analysis.phantom_runs import phantom_frames, truth_detection

ORDER = Order(
    accession_number="ACC-4711",
    patient_id="PID-0815",
    patient_name="Müller^Jürgen",
    requested_procedure="Dynamic US deep gluteal space",
    referring_physician="House^Gregory",
    source="worklist",
)


def record_session(out: Path, *, side: str = "left", order: Order | None = ORDER,
                   uid_root: str = "2.25", seed: int = 3) -> dict[str, Any]:  # fmt: skip
    _config, truth, frames = phantom_frames(seed, "fair", 4.0, side=side)
    meta = SessionMeta(side=side, protocol="fair", probe={"kind": "phantom"}, fps_hz=4.0,
                       source={"kind": "phantom", "seed": seed})  # fmt: skip
    attach_order(meta, order, uid_root)
    an = SessionAnalyzer(side, None, session={"session_id": meta.session_id, "protocol": "fair",
                                              "started_t": meta.started_t})  # fmt: skip
    with RecordingWriter(out, meta) as w:
        for pf in frames:
            w.add_frame(pf.frame)
            an.add_frame(pf.frame, truth_detection(pf.masks, truth), pf.truth["angles_deg"])
    result = an.finish()
    write_json_atomic(out / "result.json", result)
    return result
