"""`ProcedureAnalyzer`: one frame in -> detector + needle locator + geometry + spread +
procedure logic -> `FrameState` and the live overlay; `finish()` -> the procedure result.

The same object serves the live session (edge_service/live/procedure.py) and the offline
pass over a recording (`analyze_procedure`), so what the page showed and what the result
says come from one code path.
"""

from __future__ import annotations

import logging
import math
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.errors import ModelError
from edge_service.needle.types import NeedleLocator, NeedleResult
from edge_service.procedure.observation import FrameState, Observation
from edge_service.procedure.result import build_result
from edge_service.procedure.settings import ProcedureSettings
from edge_service.procedure.spread import SpreadMeter
from edge_service.procedure.tracker import ProcedureTracker

log = logging.getLogger(__name__)

Measure = Callable[[NeedleResult, Any, Frame], NeedleResult]
MAX_KEY_FRAMES = 12


def default_measure() -> Measure:
    """The needle geometry of edge_service.needle.geometry (tip/path to nerve and
    calcification from the same frame's masks, with the same spacing rules as every
    measurement), adapted to (needle, detection, frame)."""
    import importlib

    try:
        geometry = importlib.import_module("edge_service.needle.geometry")
        fn = geometry.measure
    except (ImportError, AttributeError) as exc:
        raise ModelError(
            f"the needle geometry (edge_service.needle.geometry) is missing: {exc}"
        ) from exc

    # The live session reuses one detection (the same mask arrays) over several frames:
    # the outlines and their search trees are built once per mask, not per frame.
    cache = geometry.OutlineCache()

    def measure(n: NeedleResult, det: Any, frame: Frame) -> NeedleResult:
        nerve, calc = det.nerve, det.calcification
        out: NeedleResult = fn(
            n,
            frame.spacing_mm,
            frame.pixels.shape,
            nerve.mask if nerve.found else None,
            calc.mask if calc.present else None,
            frame.region,
            cache=cache,
        )
        return out

    return measure


class BackgroundDetector:
    """The nerve detector on its own thread (`[procedure] nerve_background`): the newest
    submitted frame is detected while the alarm path goes on with the last finished
    detection, so no analysed frame waits for a detector run. One frame in flight at a
    time; a submission while busy is refused (the caller keeps its refresh due)."""

    def __init__(self, detector: Any) -> None:
        self.d = detector
        self._cv = threading.Condition()
        self._frame: Frame | None = None
        self._busy = False
        self._stop = False
        self._done: Any = None
        self.failed = 0
        self._th = threading.Thread(target=self._run, name="nerve-detect", daemon=True)
        self._th.start()

    def submit(self, frame: Frame) -> bool:
        with self._cv:
            if self._busy or self._frame is not None or self._stop:
                return False
            self._frame = frame
            self._cv.notify()
            return True

    def take(self) -> Any:
        """The detection finished since the last call, or None."""
        with self._cv:
            done, self._done = self._done, None
            return done

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._frame is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                frame, self._frame = self._frame, None
                self._busy = True
            assert frame is not None
            try:
                det = self.d.detect(frame)
            except Exception:  # one frame the detector cannot handle: the last outlines stand
                log.exception("nerve detection failed on frame %d", frame.index)
                det = None
                self.failed += 1
            with self._cv:
                if det is not None:
                    self._done = det
                self._busy = False

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._th.join(5.0)


@dataclass
class KeyFrame:
    label: str
    index: int
    t: float
    pixels: np.ndarray
    needle: NeedleResult
    nerve_contour: np.ndarray | None
    calc_contour: np.ndarray | None
    state: dict[str, Any]


def _contour(mask: Any) -> np.ndarray | None:
    from edge_service.analysis.session import _contour as c

    return c(None if mask is None else np.asarray(mask) > 0)


class ProcedureAnalyzer:
    def __init__(
        self,
        detector: Any,
        locator: NeedleLocator,
        settings: ProcedureSettings | None = None,
        *,
        measure: Measure | None = None,
        session: dict[str, Any] | None = None,
        every_frame: bool = False,
        on_state: Callable[[FrameState, Frame], None] | None = None,
    ) -> None:
        """every_frame: run the nerve detector on every frame (the offline pass); else the
        live rate of `nerve_refresh_s` / `nerve_refresh_change` applies. on_state(state,
        frame) is called as soon as the frame's alarms are decided (before key frames are
        kept): the live session sends its alarms from there."""
        self.detector = detector
        self.locator = locator
        self.s = settings or ProcedureSettings()
        self.measure = measure or default_measure()
        self.session = dict(session or {})
        self.tracker = ProcedureTracker(self.s)
        self.spread = SpreadMeter(self.s)
        self.key_frames: list[KeyFrame] = []
        self._prev_sig: int | None = None
        self.last_state: FrameState | None = None
        self.frames_failed = 0
        self.frames_view_rejected = 0
        self._last_tip_px: tuple[float, float] | None = None
        self.on_state = on_state
        self.refresh_s = 0.0 if every_frame else self.s.nerve_refresh_s
        self._det: Any = None
        self._det_t = -math.inf
        self._det_small: np.ndarray | None = None
        self.nerve_detections = 0
        self.nerve_reused = 0
        self._bg = (
            BackgroundDetector(detector)
            if self.s.nerve_background and not every_frame and self.refresh_s > 0
            else None
        )
        locator.reset()
        reset = getattr(detector, "reset", None)
        if reset is not None:
            reset()

    def _detection(self, frame: Frame) -> Any:
        """The nerve/calcification detection for this frame: a fresh one when the last is
        older than `refresh_s`, the image changed by `nerve_refresh_change` grey levels on
        average (probe moved, bolus), or the tip rests (boluses are given then and push the
        tissue); else the last one (the nerve moves with the probe, not with the needle)."""
        small = np.asarray(frame.pixels[::8, ::8], dtype=np.int16)
        fresh = (
            self._det is None
            or self.refresh_s <= 0
            or frame.t - self._det_t >= self.refresh_s - 1e-6  # float epoch times
            or frame.t < self._det_t  # a clock step: never trust an old detection
            or self.tracker.holding
            or self._det_small is None
            or self._det_small.shape != small.shape
            or float(np.abs(small - self._det_small).mean()) >= self.s.nerve_refresh_change
        )
        if self._bg is not None and self._det is not None:
            done = self._bg.take()
            if done is not None:
                self._det = done
            # a due refresh is handed to the detector thread; this frame goes on with the
            # last finished detection (its age clock restarts only when one was accepted)
            if fresh and self._bg.submit(frame):
                self._det_t, self._det_small = frame.t, small
                self.nerve_detections += 1
            self.nerve_reused += 1
            return self._det
        if not fresh:
            self.nerve_reused += 1
            return self._det
        det = self.detector.detect(frame)
        self._det, self._det_t, self._det_small = det, frame.t, small
        self.nerve_detections += 1
        return det

    def add_frame(self, frame: Frame) -> tuple[FrameState, Any, NeedleResult]:
        det = self._detection(frame)
        try:
            needle = self.locator.locate(frame)
            if not getattr(det, "view_ok", True):
                # not a view the models were made for: no needle reported (the locator
                # still saw the frame, so its motion history stays continuous)
                self.frames_view_rejected += 1
                needle = NeedleResult()
            elif needle.found:
                needle = self.measure(needle, det, frame)
        except Exception:  # one frame the locator cannot handle: no needle, counted
            log.exception("needle locator failed on frame %d", frame.index)
            self.frames_failed += 1
            needle = NeedleResult()
        sig = zlib.crc32(np.ascontiguousarray(frame.pixels[::7, ::7]).tobytes())
        frozen = sig == self._prev_sig
        self._prev_sig = sig
        nerve, calc = det.nerve, det.calcification
        calc_off = None
        if needle.tip_mm is not None and calc.present and calc.center_px and frame.spacing_mm:
            dx, dy = frame.spacing_mm
            cx, cy = calc.center_px
            calc_off = (needle.tip_mm[0] - cy * dy, needle.tip_mm[1] - cx * dx)
        tip_px = needle.tip_px if needle.found else None
        if tip_px is None and self.tracker.holding:
            tip_px = self._last_tip_px  # the resting tip the locator no longer reports
        if needle.found:
            self._last_tip_px = needle.tip_px
        area, near = self.spread.update(
            frame.pixels,
            frame.spacing_mm,
            tip_px,
            self.tracker.holding and not frozen,
            nerve.mask if nerve.found else None,
        )
        obs = Observation(
            t=frame.t,
            index=frame.index,
            needle=needle,
            nerve_found=bool(nerve.found),
            calc_present=bool(calc.present),
            frozen=frozen,
            calc_offset_mm=calc_off,
            spread_mm2=area,
            spread_nerve_mm=near,
        )
        st = self.tracker.update(obs)
        self.last_state = st
        if self.on_state is not None:
            self.on_state(st, frame)
        self._keep_key_frames(frame, det, needle, st)
        return st, det, needle

    def _keep_key_frames(
        self, frame: Frame, det: Any, needle: NeedleResult, st: FrameState
    ) -> None:
        labels = [f"alarm: {a.kind}" for a in st.raised if a.level == "stop"]
        tr = self.tracker
        if st.on_target and tr.first_on_target_t == st.t:
            labels.append("first on target")
        cur = tr.inj.current
        if cur is not None and cur.frame == st.index:
            labels.append(f"injection {cur.index}")
        if tr.min_nerve is not None and tr.min_nerve[2] == st.index:
            # the closest approach so far replaces the previous one
            self.key_frames = [k for k in self.key_frames if k.label != "closest to the nerve"]
            labels.append("closest to the nerve")
        for label in labels:
            if len(self.key_frames) >= MAX_KEY_FRAMES and label != "closest to the nerve":
                return
            self.key_frames.append(
                KeyFrame(
                    label,
                    frame.index,
                    frame.t,
                    frame.pixels.copy(),
                    needle,
                    _contour(det.nerve.mask) if det.nerve.found else None,
                    _contour(det.calcification.mask) if det.calcification.present else None,
                    st.to_dict(),
                )
            )

    def close(self) -> None:
        """Stop the background detector thread (if any); idempotent."""
        if self._bg is not None:
            self._bg.close()

    def finish(self, data_quality: dict[str, Any] | None = None) -> dict[str, Any]:
        self.close()
        self.tracker.finish()
        dq = {
            "frames_nerve_detected": self.nerve_detections,
            "frames_nerve_reused": self.nerve_reused,
            "frames_locator_failed": self.frames_failed,
            "frames_view_rejected": self.frames_view_rejected,
        }
        dq.update(data_quality or {})
        model = getattr(getattr(self.detector, "seg", None), "path", None)
        doc = build_result(
            self.tracker,
            self.session,
            locator=getattr(self.locator, "name", type(self.locator).__name__),
            model=None if model is None else str(getattr(model, "name", model)),
            data_quality=dq,
        )
        doc["key_frames"] = [
            {"label": k.label, "frame": k.index, "t": k.t, "file": f"keyframe-{i}.png"}
            for i, k in enumerate(self.key_frames)
        ]
        return doc


def needle_overlay(n: NeedleResult) -> dict[str, Any]:
    d = n.to_dict()
    return {
        k: d[k]
        for k in (
            "found",
            "tip_px",
            "shaft_start_px",
            "trajectory_end_px",
            "angle_deg",
            "cue",
            "confidence",
        )
    }


def finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)
