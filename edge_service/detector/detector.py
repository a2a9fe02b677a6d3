"""`Detector`: segment the sciatic nerve and calcifications in a frame and measure them in mm."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.detector import measure
from edge_service.detector.model import OnnxSegmenter, shipped_model, softmax
from edge_service.detector.preprocess import input_scale, prepare_input
from edge_service.detector.settings import DetectorSettings
from edge_service.errors import InputError

log = logging.getLogger(__name__)


def _r(v: float | None, nd: int = 3) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), nd)


@dataclass
class NerveResult:
    """The sciatic nerve in one frame. When found is False every measurement is None."""

    found: bool = False
    ap_mm: float | None = None  # minor axis of the fitted ellipse (the flattened oval's AP)
    width_mm: float | None = None  # major axis
    csa_mm2: float | None = None  # segmented area
    flattening: float | None = None  # width / AP
    fascicular_index: float | None = None
    echogenicity: float | None = None  # nerve / superficial muscle mean echo
    confidence: float = 0.0
    center_px: tuple[float, float] | None = None  # (x, y) in frame pixels
    angle_deg: float | None = None
    mask: np.ndarray | None = field(default=None, repr=False)
    contour: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "ap_mm": _r(self.ap_mm),
            "width_mm": _r(self.width_mm),
            "csa_mm2": _r(self.csa_mm2),
            "flattening": _r(self.flattening),
            "fascicular_index": _r(self.fascicular_index, 4),
            "echogenicity": _r(self.echogenicity, 4),
            "confidence": _r(self.confidence, 4),
            "center_px": None if self.center_px is None else [_r(v, 2) for v in self.center_px],
            "angle_deg": _r(self.angle_deg, 2),
        }


@dataclass
class CalcificationResult:
    present: bool = False
    long_axis_mm: float | None = None
    thickness_mm: float | None = None
    shadow: bool | None = None
    shadow_ratio: float | None = None  # echo below / above
    nerve_distance_mm: float | None = None  # outline to outline; None without a nerve
    confidence: float = 0.0
    center_px: tuple[float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "long_axis_mm": _r(self.long_axis_mm),
            "thickness_mm": _r(self.thickness_mm),
            "shadow": self.shadow,
            "shadow_ratio": _r(self.shadow_ratio, 4),
            "nerve_distance_mm": _r(self.nerve_distance_mm),
            "confidence": _r(self.confidence, 4),
            "center_px": None if self.center_px is None else [_r(v, 2) for v in self.center_px],
        }


@dataclass
class Detection:
    index: int
    t: float
    nerve: NerveResult
    calcification: CalcificationResult
    latency_ms: float
    model: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no masks)."""
        return {
            "index": self.index,
            "t": self.t,
            "nerve": self.nerve.to_dict(),
            "calcification": self.calcification.to_dict(),
            "latency_ms": round(self.latency_ms, 3),
            "model": self.model,
        }


class Detector:
    """ONNX segmentation + measurement. Build with `Detector.load()`."""

    def __init__(self, segmenter: OnnxSegmenter, settings: DetectorSettings) -> None:
        self.seg = segmenter
        self.settings = settings

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        settings: DetectorSettings | None = None,
    ) -> Detector:
        """Open the model (None = the shipped one for settings.precision) and warm it up."""
        s = settings or DetectorSettings()
        if threads is not None:
            s = s.model_copy(update={"threads": threads})
        model_path = path or s.model_path or shipped_model(s.precision)
        return cls(OnnxSegmenter(model_path, threads=s.threads), s)

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.seg.in_h, self.seg.in_w

    def probabilities(self, frame: Frame) -> np.ndarray:
        """(C, H_in, W_in) class probabilities over the frame's ROI (no mm needed)."""
        x = prepare_input(frame.pixels, frame.region, self.seg.in_h, self.seg.in_w)
        return softmax(self.seg.run(x)[0])

    def detect(self, frame: Frame) -> Detection:
        """Segment and measure one frame. Refuses frames without pixel spacing."""
        t_start = time.perf_counter()
        if frame.spacing_mm is None:
            raise InputError(
                f"frame {frame.index} has no pixel spacing: refusing to measure in mm "
                "(calibrate the source or use a DICOM with a Sequence of Ultrasound Regions)"
            )
        dx, dy = (float(v) for v in frame.spacing_mm)
        s = self.settings
        roi = frame.region
        prob = self.probabilities(frame)
        labels = prob.argmax(axis=0)
        scale = input_scale(roi.height, roi.width, self.seg.in_h, self.seg.in_w)
        shape = frame.pixels.shape
        px_area = dx * dy

        nerve = NerveResult()
        n_ref: measure.Refined | None = None
        comp = measure.largest_component(labels == 1, prob[1])
        if comp is not None:
            n_ref = measure.refine(prob[1], comp, roi, scale, s.nerve_threshold)
        if n_ref is not None and n_ref.mask.sum() * px_area >= s.nerve_min_area_mm2:
            major, minor, ang, cy, cx = measure.ellipse_fit(n_ref.mask, dx, dy)
            cy, cx = cy + n_ref.y0, cx + n_ref.x0
            h, w = n_ref.mask.shape
            crop = frame.pixels[n_ref.y0 : n_ref.y0 + h, n_ref.x0 : n_ref.x0 + w]
            full = n_ref.full(shape)
            nerve = NerveResult(
                found=True,
                ap_mm=minor,
                width_mm=major,
                csa_mm2=float(n_ref.mask.sum()) * px_area,
                flattening=major / minor if minor > 0 else None,
                fascicular_index=measure.fascicular_index(crop, n_ref.mask, dx),
                echogenicity=measure.echogenicity(
                    frame.pixels, full, cy, cx, major / 2 / dx, minor / 2 / dy, 2.0 / dy
                ),
                confidence=float(n_ref.prob[n_ref.mask].mean()),
                center_px=(cx, cy),
                angle_deg=ang,
                mask=full,
                contour=measure.contour(n_ref.mask, n_ref.y0, n_ref.x0),
            )
        else:
            n_ref = None
            nerve.confidence = float(prob[1].max())

        calc = CalcificationResult(confidence=float(prob[2].max()))
        ccomp = measure.largest_component(labels == 2, prob[2])
        c_ref = None
        if ccomp is not None:
            c_ref = measure.refine(prob[2], ccomp, roi, scale, s.calcification_threshold)
        if c_ref is not None and c_ref.mask.sum() * px_area >= s.calcification_min_area_mm2:
            major, minor, _, cy, cx = measure.ellipse_fit(c_ref.mask, dx, dy)
            full = c_ref.full(shape)
            ratio = measure.shadow_ratio(frame.pixels, full, dy)
            calc = CalcificationResult(
                present=True,
                long_axis_mm=major,
                thickness_mm=minor,
                shadow=bool(ratio < s.shadow_ratio) if math.isfinite(ratio) else None,
                shadow_ratio=ratio,
                nerve_distance_mm=(
                    measure.edge_distance_mm(n_ref, c_ref, dx, dy) if n_ref is not None else None
                ),
                confidence=float(c_ref.prob[c_ref.mask].mean()),
                center_px=(cx + c_ref.x0, cy + c_ref.y0),
                mask=full,
            )
        latency = (time.perf_counter() - t_start) * 1000.0
        return Detection(frame.index, frame.t, nerve, calc, latency, self.seg.model_name)
