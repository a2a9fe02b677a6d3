"""Learned needle locator: models/needle.onnx (onnxruntime only) + numpy post-processing.

The model sees the frame and two frame differences (edge_service.needle.preprocess) and
outputs a shaft map and a tip heat map. The tip is the heat map's sub-pixel peak; the shaft
angle is a line fit of the shaft map near the tip; when the shaft is too faint for a fit
(out of plane, steep) the tip is reported with cue "motion" and the angle comes from the
tip's recent track when it has moved enough, else it is None.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections import deque
from pathlib import Path

import numpy as np

from edge_service.acquisition.frame import Frame, Roi
from edge_service.detector.model import models_dir
from edge_service.detector.preprocess import content_roi
from edge_service.errors import ModelError
from edge_service.needle.hold import (
    HOLD_MIN_TRAVEL_MM,
    HOLD_RADIUS_MM,
    HOLD_SHAFT_SUPPORT,
    HOLD_TIP_THRESHOLD,
    follow,
    local_peak,
    patch,
    shaft_support,
)
from edge_service.needle.postprocess import (
    SHAFT_THRESHOLD,
    direction_from_angle,
    fit_shaft,
    peak_subpixel,
    sigmoid,
)
from edge_service.needle.preprocess import LAGS, History, roi_scale, to_frame, to_input
from edge_service.needle.track import DEFAULT_PX_MM, TipConfirm
from edge_service.needle.types import NeedleResult
from edge_service.ortsession import cpu_session

log = logging.getLogger(__name__)

MODEL_FILE = "needle.onnx"
TIP_THRESHOLD = 0.3  # heat-map peak for "found" when the model file carries no calibration
SHAFT_MIN_MM = 4.0  # a fitted visible shaft at least this long -> cue "shaft"
TRACK_S = 1.0  # tip track window for the angle of a shaft-less (motion-cue) tip
TRACK_MIN_MM = 2.0
EDGE_MM = 4.0  # a shaft whose far end is this close to the image/fan edge enters from the skin


def _moved(p: tuple[float, float] | None, dr: float, dc: float) -> tuple[float, float] | None:
    return None if p is None else (p[0] + dr, p[1] + dc)


def shipped_needle_model() -> Path:
    return models_dir() / MODEL_FILE


class LearnedLocator:
    """Stateful (frame history): `reset()` per session, `locate()` per frame in order."""

    name = "learned"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        threads: int = 1,
        tip_threshold: float | None = None,
    ) -> None:

        self.path = Path(path) if path is not None else shipped_needle_model()
        if not self.path.is_file():
            raise ModelError(f"needle model not found: {self.path}")
        self.session = cpu_session(self.path, threads)
        inp = self.session.get_inputs()
        if len(inp) != 1 or len(inp[0].shape) != 4 or inp[0].shape[1] != 1 + len(LAGS):
            raise ModelError(
                f"{self.path}: expected one input (1, {1 + len(LAGS)}, H, W), "
                f"got {[i.shape for i in inp]}"
            )
        self.in_h, self.in_w = int(inp[0].shape[2]), int(inp[0].shape[3])
        self.input_name = inp[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        lags = json.loads(meta.get("dgs.lags", json.dumps(list(LAGS))))
        if list(lags) != list(LAGS):
            raise ModelError(f"{self.path}: trained with lags {lags}, this code feeds {LAGS}")
        # The threshold calibrated for this model file (models/train/needle_calibrate.py)
        # unless the caller sets one.
        if tip_threshold is None:
            try:
                tip_threshold = float(meta.get("dgs.tip_threshold", TIP_THRESHOLD))
            except ValueError as exc:
                raise ModelError(f"{self.path}: bad dgs.tip_threshold metadata") from exc
        self.tip_threshold = tip_threshold
        self.history = History(self.in_h, self.in_w)
        self._track: deque[tuple[float, float, float]] = deque()
        self.confirm = TipConfirm()
        self.last_raw = NeedleResult()
        self._kept: NeedleResult | None = None  # the last reported (confirmed) needle
        self._patch: np.ndarray | None = None  # the image around it (hold.follow)
        # where the confirmed track was first reported and how far it got from there: only
        # a needle that was seen travelling is held (a still reflector that got confirmed
        # by its jitter is not)
        self._origin: tuple[float, float] | None = None
        self._travel_mm = 0.0
        self._auto_roi: tuple[tuple[int, ...], Roi | None] | None = None
        self.last_latency_ms = 0.0
        # Warm-up: allocates buffers and proves the output shape before the first frame.
        try:
            out = self._run(np.zeros((1, 1 + len(LAGS), self.in_h, self.in_w), np.float32))
        except Exception as exc:
            raise ModelError(f"{self.path}: model failed on a test input ({exc})") from exc
        if out.shape != (2, self.in_h, self.in_w):
            raise ModelError(f"{self.path}: output must be (1, 2, H, W), got {out.shape}")
        log.info("needle model %s loaded (%dx%d)", self.path, self.in_h, self.in_w)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: x})[0], np.float32)[0]

    def reset(self) -> None:
        self.history.reset()
        self._track.clear()
        self.confirm.reset()
        self.last_raw = NeedleResult()
        self._kept = None
        self._patch = None
        self._origin = None
        self._travel_mm = 0.0
        self._auto_roi = None

    def maps(self, frame: Frame) -> np.ndarray:
        """(2, H, W) probabilities (shaft, tip) for this frame (advances the history)."""
        return sigmoid(self._run(self.history.push(frame)))

    def locate(self, frame: Frame) -> NeedleResult:
        t0 = time.perf_counter()
        try:
            return self._locate(frame)
        finally:
            self.last_latency_ms = (time.perf_counter() - t0) * 1000.0

    def _locate(self, frame: Frame) -> NeedleResult:
        if frame.roi is None:
            # No B-mode region from the source: the image content's box, as the nerve
            # detector does (the model was trained on the fan's ROI), found once per session
            # (a box that wobbled by a pixel would rescale every plane: false motion).
            if self._auto_roi is None or self._auto_roi[0] != frame.pixels.shape:
                self._auto_roi = (frame.pixels.shape, content_roi(frame.pixels))
            if self._auto_roi[1] is not None:
                frame = dataclasses.replace(frame, roi=self._auto_roi[1])
        px_mm = float(frame.spacing_mm[1]) if frame.spacing_mm is not None else None
        prob = self.maps(frame)
        raw = self._detect(prob, frame)
        tip = raw.tip_px if raw.found else None
        if self._travel_mm >= HOLD_MIN_TRAVEL_MM and (
            tip is None or not self.confirm.near_confirmed(tip, px_mm)
        ):
            # Hysteresis (edge_service.needle.hold): the confirmed needle stays while there
            # is tip or shaft evidence at its place; a detection elsewhere does not replace
            # it while it is held.
            held = self._hold(prob, frame, px_mm)
            if held is not None:
                raw, tip = held, held.tip_px
        reaches = tip is not None and raw.cue != "held" and self._reaches_edge(frame, raw)
        ok = self.confirm.update(frame.t, tip, reaches, px_mm)
        self.last_raw = raw
        if not ok:
            if self.confirm.confirmed is None:
                self._kept = None
                self._patch = None
                self._origin = None
                self._travel_mm = 0.0
            return NeedleResult(confidence=raw.confidence)
        if raw.cue == "held":
            raw = dataclasses.replace(raw, cue=self._kept.cue if self._kept else "shaft")
        elif self._kept is not None and raw.confidence < self.tip_threshold:
            # a kept needle's confidence is the stronger of its two kinds of evidence
            support = self._support(frame, raw, px_mm)
            raw = dataclasses.replace(raw, confidence=max(raw.confidence, support))
        if raw.tip_px is not None:
            if self._origin is None:
                self._origin = raw.tip_px
            self._travel_mm = max(
                self._travel_mm,
                math.dist(raw.tip_px, self._origin) * (px_mm or DEFAULT_PX_MM),
            )
        if raw.tip_px is not None and (self._kept is None or raw.tip_px != self._kept.tip_px):
            self._patch = patch(frame.pixels, raw.tip_px, px_mm or DEFAULT_PX_MM)
        self._kept = raw
        return raw

    def _direction(self, res: NeedleResult) -> tuple[float, float] | None:
        """Unit (row, col) along the shaft towards the tip of a reported needle."""
        if res.tip_px is None:
            return None
        if res.cue == "shaft" and res.shaft_start_px is not None:
            dr = res.tip_px[0] - res.shaft_start_px[0]
            dc = res.tip_px[1] - res.shaft_start_px[1]
            n = math.hypot(dr, dc)
            if n >= 5.0:
                return dr / n, dc / n
        if res.angle_deg is not None:
            return direction_from_angle(res.angle_deg)
        return None

    def _support(self, frame: Frame, res: NeedleResult, px_mm: float | None) -> float:
        d = self._direction(res)
        if d is None or res.tip_px is None:
            return 0.0
        return shaft_support(frame.pixels, res.tip_px, d, px_mm or DEFAULT_PX_MM)

    def _hold(self, prob: np.ndarray, frame: Frame, px_mm: float | None) -> NeedleResult | None:
        """The confirmed needle at its place when there is evidence of it (hold.py)."""
        kept = self._kept
        conf = self.confirm.confirmed
        if conf is None:
            return None
        roi = frame.region
        scale = roi_scale(roi, self.in_h, self.in_w)
        mm = px_mm or DEFAULT_PX_MM
        center = to_input(conf[1], conf[2], roi, scale)
        r, c = local_peak(prob[1], center, HOLD_RADIUS_MM / (mm * scale[0]))
        peak = float(prob[1][r, c]) if r >= 0 else 0.0
        support = self._support(frame, kept, px_mm) if kept is not None else 0.0
        if kept is not None and support >= HOLD_SHAFT_SUPPORT:
            # The shaft is still exactly where it was: the tip rests where it was in the
            # tissue (a weak tip peak beside it is the bolus or speckle: following it would
            # walk away); the image patch around it says how the tissue moved.
            held = dataclasses.replace(kept, confidence=max(support, peak), cue="held")
            shift = None
            if self._patch is not None and kept.tip_px is not None:
                shift = follow(frame.pixels, self._patch, kept.tip_px, mm)
            if shift is not None and (shift[0] or shift[1]):
                dr, dc = shift
                held = dataclasses.replace(
                    held,
                    tip_px=_moved(kept.tip_px, dr, dc),
                    shaft_start_px=_moved(kept.shaft_start_px, dr, dc),
                    trajectory_end_px=None,
                )
            return held
        if peak < HOLD_TIP_THRESHOLD:
            return None
        res = self._detect(prob, frame, HOLD_TIP_THRESHOLD, at=(r, c))
        if res.found and res.cue != "shaft" and kept is not None:
            # no shaft fit at the weak peak: the shaft is still the kept one
            res = dataclasses.replace(
                res,
                angle_deg=kept.angle_deg,
                shaft_start_px=kept.shaft_start_px,
                shaft_visible_fraction=kept.shaft_visible_fraction,
                cue=kept.cue,
            )
        return res if res.found else None

    def raw(self, frame: Frame, threshold: float | None = None) -> NeedleResult:
        """This frame's detection before the confirmation over time (advances the history)."""
        return self._detect(self.maps(frame), frame, threshold)

    def _detect(
        self,
        prob: np.ndarray,
        frame: Frame,
        threshold: float | None = None,
        at: tuple[int, int] | None = None,
    ) -> NeedleResult:
        """The needle from this frame's maps: the tip at the heat map's peak (or at the
        input pixel `at`, refined the same way)."""
        r, c, peak = peak_subpixel(prob[1], at)
        if peak < (self.tip_threshold if threshold is None else threshold):
            self._track.clear()
            return NeedleResult(confidence=peak)
        roi = frame.region
        scale = roi_scale(roi, self.in_h, self.in_w)
        tip = to_frame(r, c, roi, scale)
        px_mm = float(frame.spacing_mm[1]) if frame.spacing_mm is not None else None
        fit = fit_shaft(prob[0], (r, c), roi, scale)
        self._track.append((frame.t, tip[0], tip[1]))
        while self._track and frame.t - self._track[0][0] > TRACK_S:
            self._track.popleft()
        min_shaft_px = SHAFT_MIN_MM / px_mm if px_mm else 20.0
        angle = None
        start = None
        visible = None
        cue = "motion"
        if fit is not None and fit.length_px >= min_shaft_px:
            angle, start, cue = fit.angle_deg, fit.start_px, "shaft"
            visible = self._visible_fraction(prob[0], tip, fit.direction, roi, scale)
        else:
            angle = self._track_angle(px_mm)
            visible = 0.0
        return NeedleResult(
            found=True,
            tip_px=tip,
            angle_deg=angle,
            shaft_start_px=start,
            shaft_visible_fraction=visible,
            confidence=peak,
            cue=cue,
        )

    @staticmethod
    def _reaches_edge(frame: Frame, res: NeedleResult) -> bool:
        """Whether the fitted shaft runs out of the image (to the skin side): within
        EDGE_MM beyond its far end the line leaves the frame or the fan (black)."""
        if res.shaft_start_px is None or res.tip_px is None:
            return False
        sr, sc = res.shaft_start_px
        dr, dc = sr - res.tip_px[0], sc - res.tip_px[1]
        n = math.hypot(dr, dc)
        if n < 1e-6:
            return False
        dr, dc = dr / n, dc / n
        px_mm = float(frame.spacing_mm[1]) if frame.spacing_mm is not None else 0.2
        h, w = frame.pixels.shape
        for k in range(int(EDGE_MM / px_mm) + 1):
            r, c = round(sr + dr * k), round(sc + dc * k)
            if not (0 <= r < h and 0 <= c < w):
                return True
            if frame.pixels[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2].max() == 0:
                return True
        return False

    def _track_angle(self, px_mm: float | None) -> float | None:
        """Direction of the tip's recent travel (deeper = forward) as a signed angle."""
        if len(self._track) < 3:
            return None
        pts = np.array([(r, c) for _, r, c in self._track], np.float64)
        span = pts[-1] - pts[0]
        if math.hypot(*span) * (px_mm or 0.2) < TRACK_MIN_MM:
            return None
        # Principal direction of the track (robust to one noisy estimate), along the travel.
        cen = pts - pts.mean(axis=0)
        _, _, vt = np.linalg.svd(cen, full_matrices=False)
        dr, dc = float(vt[0, 0]), float(vt[0, 1])
        if dr * span[0] + dc * span[1] < 0:
            dr, dc = -dr, -dc
        if dr < 0:  # withdrawing: the needle points the other way
            dr, dc = -dr, -dc
        return math.copysign(math.degrees(math.atan2(abs(dr), abs(dc))), dc if dc else 1.0)

    @staticmethod
    def _visible_fraction(
        shaft: np.ndarray,
        tip: tuple[float, float],
        direction: tuple[float, float],
        roi: Roi,
        scale: tuple[float, float],
    ) -> float:
        """Share of the in-image line from the tip back to the ROI edge that the shaft map
        shows (the in-plane shaft expected on that line)."""
        dr, dc = direction
        pts = []
        s = 0.0
        while True:
            rr, cc = tip[0] - dr * s, tip[1] - dc * s
            if not (roi.y0 <= rr < roi.y1 and roi.x0 <= cc < roi.x1):
                break
            pts.append((rr, cc))
            s += 2.0
        if not pts:
            return 0.0
        arr = np.asarray(pts)
        ir = np.clip((arr[:, 0] - roi.y0 + 0.5) / scale[0] - 0.5, 0, shaft.shape[0] - 1)
        ic = np.clip((arr[:, 1] - roi.x0 + 0.5) / scale[1] - 0.5, 0, shaft.shape[1] - 1)
        r0 = np.floor(ir).astype(int)
        c0 = np.floor(ic).astype(int)
        r1 = np.minimum(r0 + 1, shaft.shape[0] - 1)
        c1 = np.minimum(c0 + 1, shaft.shape[1] - 1)
        fr, fc = ir - r0, ic - c0
        vals = (
            shaft[r0, c0] * (1 - fr) * (1 - fc)
            + shaft[r0, c1] * (1 - fr) * fc
            + shaft[r1, c0] * fr * (1 - fc)
            + shaft[r1, c1] * fr * fc
        )
        return float((vals > SHAFT_THRESHOLD).mean())
