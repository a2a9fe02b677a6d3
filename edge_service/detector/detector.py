"""`Detector`: segment the sciatic nerve and calcifications in a frame and measure them in mm."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.detector import measure
from edge_service.detector.model import OnnxSegmenter, models_dir, shipped_model, softmax
from edge_service.detector.preprocess import content_roi, input_scale, prepare_input
from edge_service.detector.settings import DetectorSettings
from edge_service.detector.view import (
    ViewCalibration,
    ViewChecks,
    ViewGate,
    ViewResult,
    calibration_path,
    file_sha256,
)
from edge_service.detector.view_classifier import CLASSIFIER_FILE, ViewClassifier
from edge_service.errors import InputError, ModelError

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
    """One frame's detections. When view_ok is False the frame is not a view the model was
    made for (view_reason says why) and nerve/calcification carry no finding and no number.
    measure_reason: why the measurements in mm are None although something was found
    ("no_spacing": the source has no pixel calibration), else None."""

    index: int
    t: float
    nerve: NerveResult
    calcification: CalcificationResult
    latency_ms: float
    model: str
    view_ok: bool = True
    view_score: float | None = None
    view_reason: str | None = None
    measure_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no masks)."""
        return {
            "index": self.index,
            "t": self.t,
            "view_ok": self.view_ok,
            "view_score": _r(self.view_score, 6),
            "view_reason": self.view_reason,
            "measure_reason": self.measure_reason,
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
        self.gate: ViewGate | None = None
        if settings.view_gate:
            self.gate = self._load_gate(segmenter, settings)

    @staticmethod
    def _load_gate(seg: OnnxSegmenter, s: DetectorSettings) -> ViewGate:
        checks = ViewChecks(
            min_size_px=s.view_min_size_px,
            blank_std=s.view_blank_std,
            contact_echo_level=s.view_contact_echo,
            contact_min_fraction=s.view_contact_fraction,
            colour_max_fraction=s.view_colour_fraction,
        )
        if s.view_method == "classifier":
            path = s.view_classifier_path or models_dir() / CLASSIFIER_FILE
            clf = ViewClassifier(path, threads=s.threads)
            if (clf.in_h, clf.in_w) != (seg.in_h, seg.in_w):
                raise ModelError(
                    f"{path}: view classifier input {clf.in_h}x{clf.in_w} differs from the "
                    f"segmentation model's {seg.in_h}x{seg.in_w}"
                )
            return ViewGate(None, checks, s.view_min_score, classifier=clf)
        fix = "run `python -m models.calibrate_view` for this model, or set view_gate: false"
        if not seg.has_features:
            raise ModelError(f"{seg.path}: no 'features' output for the view gate ({fix})")
        cal = ViewCalibration.load(calibration_path(seg.path))
        if cal.model_sha256 != file_sha256(seg.path):
            raise ModelError(
                f"{calibration_path(seg.path)} was calibrated for another model file ({fix})"
            )
        if cal.n_features != seg.n_features:
            raise ModelError(f"{calibration_path(seg.path)}: feature count mismatch ({fix})")
        return ViewGate(cal, checks, s.view_min_score)

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

    def reset(self) -> None:
        """Forget the previous frame (call between sources: the frozen check compares
        consecutive frames of one source)."""
        if self.gate is not None:
            self.gate.reset()

    def view(self, frame: Frame) -> tuple[ViewResult, np.ndarray]:
        """The view gate's verdict and the class probabilities (one model run)."""
        reason = self.gate.pre_check(frame) if self.gate is not None else None
        x = prepare_input(frame.pixels, frame.region, self.seg.in_h, self.seg.in_w)
        logits, feats = self.seg.run_all(x)
        prob = softmax(logits[0])
        if self.gate is None:
            return ViewResult(reason is None, 1.0 if reason is None else 0.0, reason), prob
        return self.gate.judge(frame, feats, reason, x), prob

    def detect(self, frame: Frame, *, require_spacing: bool = True) -> Detection:
        """Gate, segment and measure one frame.

        Frames without pixel spacing are refused (InputError) unless require_spacing is
        False: then structures are still found but every mm measurement is None and
        measure_reason is "no_spacing" (never a guessed scale). Frames that fail the view
        gate get found/present False and no measurement."""
        t_start = time.perf_counter()
        if frame.spacing_mm is None and require_spacing:
            raise InputError(
                f"frame {frame.index} has no pixel spacing: refusing to measure in mm "
                "(calibrate the source or use a DICOM with a Sequence of Ultrasound Regions)"
            )
        if frame.roi is None:
            # No B-mode region from the source: use the bounding box of the image content.
            roi = content_roi(frame.pixels)
            if roi is not None:
                frame = dataclasses.replace(frame, roi=roi)
        vr, prob = self.view(frame)
        if not vr.ok:
            latency = (time.perf_counter() - t_start) * 1000.0
            return Detection(
                frame.index,
                frame.t,
                NerveResult(),
                CalcificationResult(),
                latency,
                self.seg.model_name,
                view_ok=False,
                view_score=vr.score,
                view_reason=vr.reason,
            )
        det = self._segment(frame, prob)
        det.view_score = vr.score
        det.latency_ms = (time.perf_counter() - t_start) * 1000.0
        return det

    def _segment(self, frame: Frame, prob: np.ndarray) -> Detection:
        no_mm = frame.spacing_mm is None
        # Without a calibration the pixel grid is used only to find and outline structures;
        # every mm value is dropped below and the size filters are not applied.
        dx, dy = (1.0, 1.0) if frame.spacing_mm is None else (float(v) for v in frame.spacing_mm)
        s = self.settings
        roi = frame.region
        labels = prob.argmax(axis=0)
        scale = input_scale(roi.height, roi.width, self.seg.in_h, self.seg.in_w)
        shape = frame.pixels.shape
        px_area = dx * dy

        nerve = NerveResult()
        n_ref: measure.Refined | None = None
        comp = measure.largest_component(labels == 1, prob[1])
        if comp is not None:
            thr = s.nerve_threshold
            if s.nerve_relative_threshold is not None:
                thr = min(thr, s.nerve_relative_threshold * float(prob[1][comp].max()))
            n_ref = measure.refine(prob[1], comp, roi, scale, thr)
        if n_ref is not None and (no_mm or n_ref.mask.sum() * px_area >= s.nerve_min_area_mm2):
            major, minor, ang, cy, cx = measure.ellipse_fit(n_ref.mask, dx, dy)
            cy, cx = cy + n_ref.y0, cx + n_ref.x0
            h, w = n_ref.mask.shape
            crop = frame.pixels[n_ref.y0 : n_ref.y0 + h, n_ref.x0 : n_ref.x0 + w]
            full = n_ref.full(shape)
            csa = float(n_ref.mask.sum()) * px_area
            if s.nerve_size_from == "rim" and not no_mm and minor > 0 and major > 0:
                ap_r = measure.rim_extent(frame.pixels, cy, cx, ang + 90.0, minor / 2, dx, dy)
                w_r = measure.rim_extent(frame.pixels, cy, cx, ang, major / 2, dx, dy)
                csa *= (ap_r.length_mm / minor) * (w_r.length_mm / major)
                minor, major = ap_r.length_mm, w_r.length_mm
            nerve = NerveResult(
                found=True,
                ap_mm=minor,
                width_mm=major,
                csa_mm2=csa,
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
        if (
            c_ref is not None
            and s.calcification_max_extent_mm is not None
            and not no_mm
            and measure.bright_extent_mm(frame.pixels, c_ref.full(shape), dx, dy)
            > s.calcification_max_extent_mm
        ):
            c_ref = None  # part of a long bright curve: bone cortex, not a calcification
        if c_ref is not None and (
            no_mm or c_ref.mask.sum() * px_area >= s.calcification_min_area_mm2
        ):
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
        det = Detection(frame.index, frame.t, nerve, calc, 0.0, self.seg.model_name)
        if no_mm:
            _drop_mm(nerve, calc)
            if nerve.found or calc.present:
                det.measure_reason = "no_spacing"
        return det


def _drop_mm(nerve: NerveResult, calc: CalcificationResult) -> None:
    """Null every value that needs a pixel spacing (confidence and pixel centres stay)."""
    nerve.ap_mm = nerve.width_mm = nerve.csa_mm2 = None
    nerve.fascicular_index = None  # smoothed at 0.6 mm: needs the scale
    nerve.echogenicity = None  # ring 2-6 mm outside the nerve: needs the scale
    nerve.flattening = None  # anisotropic pixels would distort it
    nerve.angle_deg = None
    calc.long_axis_mm = calc.thickness_mm = calc.nerve_distance_mm = None
    calc.shadow = None
    calc.shadow_ratio = None  # 1-10 mm bands: needs the scale
