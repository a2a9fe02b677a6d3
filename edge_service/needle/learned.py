"""Learned needle locator: models/needle.onnx (onnxruntime only) + numpy post-processing.

The model sees the frame and two frame differences (edge_service.needle.preprocess) and
outputs a shaft map and a tip heat map. The tip is the heat map's sub-pixel peak; the shaft
angle is a line fit of the shaft map near the tip; when the shaft is too faint for a fit
(out of plane, steep) the tip is reported with cue "motion" and the angle comes from the
tip's recent track when it has moved enough, else it is None.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import deque
from pathlib import Path

import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.detector.model import models_dir
from edge_service.detector.preprocess import sample_bilinear
from edge_service.errors import ModelError
from edge_service.needle.postprocess import (
    SHAFT_THRESHOLD,
    fit_shaft,
    peak_subpixel,
    sigmoid,
)
from edge_service.needle.preprocess import LAGS, History, roi_scale, to_frame
from edge_service.needle.types import NeedleResult

log = logging.getLogger(__name__)

MODEL_FILE = "needle.onnx"
TIP_THRESHOLD = 0.3  # heat-map peak for "found" (models/needle.train.json validates it)
SHAFT_MIN_MM = 4.0  # a fitted visible shaft at least this long -> cue "shaft"
TRACK_S = 1.0  # tip track window for the angle of a shaft-less (motion-cue) tip
TRACK_MIN_MM = 2.0


def shipped_needle_model() -> Path:
    return models_dir() / MODEL_FILE


class LearnedLocator:
    """Stateful (frame history): `reset()` per session, `locate()` per frame in order."""

    name = "learned"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        threads: int = 1,
        tip_threshold: float = TIP_THRESHOLD,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path is not None else shipped_needle_model()
        if not self.path.is_file():
            raise ModelError(f"needle model not found: {self.path}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), so, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise ModelError(f"{self.path}: not a loadable ONNX model ({exc})") from exc
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
        self.tip_threshold = tip_threshold
        self.history = History(self.in_h, self.in_w)
        self._track: deque[tuple[float, float, float]] = deque()
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
        prob = self.maps(frame)
        r, c, peak = peak_subpixel(prob[1])
        if peak < self.tip_threshold:
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

    def _track_angle(self, px_mm: float | None) -> float | None:
        """Direction of the tip's recent travel (deeper = forward) as a signed angle."""
        if len(self._track) < 3:
            return None
        _, r0, c0 = self._track[0]
        _, r1, c1 = self._track[-1]
        dr, dc = r1 - r0, c1 - c0
        if math.hypot(dr, dc) * (px_mm or 0.2) < TRACK_MIN_MM:
            return None
        if dr < 0:  # withdrawing: the needle points the other way
            dr, dc = -dr, -dc
        return math.copysign(math.degrees(math.atan2(abs(dr), abs(dc))), dc if dc else 1.0)

    @staticmethod
    def _visible_fraction(
        shaft: np.ndarray,
        tip: tuple[float, float],
        direction: tuple[float, float],
        roi: object,
        scale: tuple[float, float],
    ) -> float:
        """Share of the in-image line from the tip back to the ROI edge that the shaft map
        shows (the in-plane shaft expected on that line)."""
        from edge_service.acquisition.frame import Roi

        assert isinstance(roi, Roi)
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
        ir = (arr[:, 0] - roi.y0 + 0.5) / scale[0] - 0.5
        ic = (arr[:, 1] - roi.x0 + 0.5) / scale[1] - 0.5
        vals = np.array(
            [
                float(sample_bilinear(shaft, np.array([a]), np.array([b]))[0, 0])
                for a, b in zip(ir, ic, strict=True)
            ]
        )
        return float((vals > SHAFT_THRESHOLD).mean())
