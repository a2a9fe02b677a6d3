"""The live injection-guidance session (protocol "injection", issue 16).

Same threads and recording as an exam session (live/session.py: every frame recorded, the
detection worker takes the newest frame), but each analysed frame goes through the
`ProcedureAnalyzer` (detector + needle locator + geometry + spread + procedure logic)
instead of the exam's gliding analysis, and there is no clip: the hip does not move during
an injection. Alarms are emitted as their own live events ("alarm") before the frame's
overlay, so the page and MQTT hear of them first. At stop the procedure result
(dgs.procedure-result/1) is written as result.json, with key frames and report.html.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edge_service.acquisition.frame import Frame
from edge_service.errors import InputError
from edge_service.live.session import LiveSession, _mask_poly, _r
from edge_service.needle.types import NeedleLocator
from edge_service.procedure.analyzer import Measure, ProcedureAnalyzer, needle_overlay
from edge_service.procedure.observation import FrameState
from edge_service.procedure.settings import ProcedureSettings

log = logging.getLogger(__name__)


class ProcedureSession(LiveSession):
    def __init__(
        self,
        *args: Any,
        locator: NeedleLocator,
        procedure: ProcedureSettings | None = None,
        measure: Measure | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        # the overlay's outlines of the last detection (the analyzer reuses a detection over
        # several frames: no contour is traced twice)
        self._outlines: tuple[Any, Any, Any] = (None, None, None)
        # CPU time of the detection worker per analysed frame (thread time: what the
        # pipeline costs, apart from how long the machine's load made it wait)
        self.cpu_ms: deque[float] = deque(maxlen=2000)
        self.proc = ProcedureAnalyzer(
            self.detector,
            locator,
            procedure,
            measure=measure,
            on_state=self._send_alarms,
            session={
                "session_id": self.meta.session_id,
                "side": self.meta.side,
                "started_t": self.meta.started_t,
            },
        )

    def _analyse_frame(self, frame: Frame) -> None:
        c0 = time.thread_time()
        t0 = time.perf_counter()
        st, det, needle = self.proc.add_frame(frame)  # alarms went out from _send_alarms
        det_ms = (time.perf_counter() - t0) * 1e3
        self.counters.detect_ms.append(det_ms)
        nerve, calc = det.nerve, det.calcification
        if self._outlines[0] is not det:
            self._outlines = (
                det,
                _mask_poly(nerve.mask) if nerve.found else None,
                _mask_poly(calc.mask) if calc.present else None,
            )
        h, w = frame.pixels.shape
        payload = {
            "id": self.id,
            "protocol": "injection",
            "frame": frame.index,
            "t": frame.t,
            "w": w,
            "h": h,
            "nerve": {
                "found": bool(nerve.found),
                "contour": self._outlines[1],
                "ap_mm": _r(nerve.ap_mm),
                "width_mm": _r(nerve.width_mm),
                "csa_mm2": _r(nerve.csa_mm2, 1),
                "confidence": _r(nerve.confidence, 3),
            },
            "calcification": {
                "present": bool(calc.present),
                "contour": self._outlines[2],
                "long_axis_mm": _r(calc.long_axis_mm),
            },
            "angles": None,
            "gliding": {"displacement_mm": None, "internal_rotation_deg": None, "quality": None},
            "steps": [],
            "procedure": {"needle": needle_overlay(needle), "state": st.to_dict()},
            "detect_ms": round(det_ms, 1),
            "counters": self.counters.to_dict(),
        }
        self.counters.lag_ms.append((time.time() - frame.t) * 1e3)
        self.on_event("overlay", payload)
        self.cpu_ms.append((time.thread_time() - c0) * 1e3)

    def _finish_detection(self) -> None:
        super()._finish_detection()
        self.proc.close()  # the background nerve detector, if any (also on a failed session)

    def _send_alarms(self, st: FrameState, frame: Frame) -> None:
        """Called by the analyzer the moment a frame's alarms are decided: before its key
        frames and overlay are built, so the page and MQTT hear of an alarm first."""
        for a, state in [(a, "raised") for a in st.raised] + [(a, "cleared") for a in st.cleared]:
            self.on_event(
                "alarm",
                {
                    "id": self.id,
                    "state": state,
                    "frame_t": frame.t,
                    "frame_index": frame.index,
                    **a.to_dict(),
                },
            )

    def _analyse(self) -> None:
        from edge_service.analysis.result import write_json_atomic
        from edge_service.procedure.report import write_key_frames, write_report

        if self.proc.tracker.q["frames"] == 0:
            raise InputError("no frame could be analysed")
        live = self.counters.to_dict()
        result = self.proc.finish(
            {
                "frames_recorded": live["frames_recorded"],
                "frames_analysed": live["frames_analysed"],
                "dropped_for_detection": live["dropped_for_detection"],
                "dropped_by_source": live["dropped_by_source"],
                "analysis": "live (every analysed frame; frames dropped for detection are counted)",
            }
        )
        result["ended_t"] = self.stopped_t or result["ended_t"]
        result["duration_s"] = round(result["ended_t"] - result["started_t"], 3)
        pngs = write_key_frames(self.out_dir, self.proc.key_frames)
        write_json_atomic(self.out_dir / "result.json", result)
        write_report(self.out_dir / "report.html", result, pngs)
        self.result = result


def default_locator_factory() -> Callable[[], NeedleLocator] | None:
    """The needle locator edge_service.needle ships: the learned one when its model file is
    present, else the classical peer (ridge filter + line fit), as a factory (one stateful
    locator per session); None when neither can be built."""
    try:
        from edge_service.needle.guide import make_locator
        from edge_service.needle.learned import shipped_needle_model
    except ImportError as exc:
        log.warning("no needle locator available: %s", exc)
        return None
    kind = "learned" if shipped_needle_model().exists() else "classical"
    log.info("injection guidance uses the %s needle locator", kind)
    return lambda: make_locator(kind)
