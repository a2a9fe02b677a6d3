"""View / out-of-distribution gate: is this frame a short-axis view of the deep gluteal space
the model was made for? Frames that are not get no measurements.

Two layers (docs/model.md, "View gate"):

1. Cheap explicit checks on the pixels, each with its own reason: `too_small` (no B-mode
   image can be that small), `blank` (uniform ROI), `no_contact` (the deep two thirds of the
   ROI are black: the probe lost contact), `colour` (chroma inside the B-mode region: colour
   or power Doppler, colour maps; the source reports it in `frame.meta["chroma_fraction"]`),
   `frozen` (byte-identical to the previous frame of the same source: a frozen scanner).
2. A learned score, by `DetectorSettings.view_method`:
   - `classifier` (default; edge_service/detector/view_classifier.py): an auxiliary view
     classifier (a small CNN, models/view_cls.onnx) trained with outlier exposure on
     synthetic other-anatomy negatives; `view_score` is the conformal p-value of its logit
     against held-out phantom frames. Independent of the segmentation model.
   - `features` (the previous gate, Lee et al. 2018): the Mahalanobis distance of the network's pooled
   encoder features (the model's `features` output, models/view_features.py) to the
   in-distribution Gaussian fitted on simulated training-like frames, turned into a
   conformal p-value against distances of held-out in-distribution frames
   (`view_score` in [0, 1]: the fraction of in-distribution frames that look at least as
   unusual; ~uniform on good frames, -> 0 for foreign images). Below the calibrated `alpha`
   the reason is `ood`. The calibration lives next to the model
   (`<model>.view.json`, written by `python -m models.calibrate_view`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.errors import ModelError

if TYPE_CHECKING:
    from edge_service.detector.view_classifier import ViewClassifier

log = logging.getLogger(__name__)

CALIBRATION_FORMAT = "dgs.view-calibration/1"
# Machine-readable reasons a frame gets no measurements (docs/model.md).
REASONS = ("too_small", "blank", "no_contact", "colour", "frozen", "ood")


def calibration_path(model_path: str | os.PathLike[str]) -> Path:
    """models/dgs_seg.onnx -> models/dgs_seg.view.json (int8: dgs_seg.int8.view.json)."""
    p = Path(model_path)
    return p.with_name(p.stem + ".view.json")


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encode_array(a: np.ndarray) -> str:
    """float32 little-endian, base64 (keeps the calibration file small and exact)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def decode_array(text: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)
    if a.size != int(np.prod(shape)):
        raise ValueError(f"array of {a.size} values, expected shape {shape}")
    return a.reshape(shape)


@dataclass(frozen=True)
class ViewCalibration:
    """The in-distribution Gaussian and the null distribution of its distances."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,) per-feature standard deviation (features are standardised)
    precision: np.ndarray  # (F, F) inverse of the (shrunk) covariance of standardised features
    null_distances: np.ndarray  # sorted Mahalanobis distances of held-out good frames
    alpha: float  # view_ok when view_score >= alpha
    tail_scale: float  # decay of the score beyond the largest null distance
    model_sha256: str
    raw: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ViewCalibration:
        p = Path(path)
        try:
            d = json.loads(p.read_text())
            if d.get("format") != CALIBRATION_FORMAT:
                raise ValueError(f"format {d.get('format')!r}, expected {CALIBRATION_FORMAT}")
            n = int(d["n_features"])
            null = np.sort(np.asarray(d["null_distances"], dtype=np.float64))
            cal = cls(
                mean=decode_array(d["mean"], (n,)),
                scale=decode_array(d["scale"], (n,)),
                precision=decode_array(d["precision"], (n, n)),
                null_distances=null,
                alpha=float(d["alpha"]),
                tail_scale=float(d["tail_scale"]),
                model_sha256=str(d["model_sha256"]),
                raw=d,
            )
        except FileNotFoundError:
            raise ModelError(
                f"view-gate calibration {p} not found (run `python -m models.calibrate_view`)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"view-gate calibration {p} is unreadable: {exc}") from exc
        if null.size < 10 or not 0.0 < cal.alpha < 1.0 or cal.tail_scale <= 0:
            raise ModelError(f"view-gate calibration {p}: implausible null set / alpha / tail")
        return cal

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def distance(self, features: np.ndarray) -> float:
        d = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        q = float(d @ self.precision @ d)
        return math.sqrt(max(q, 0.0)) if math.isfinite(q) else math.inf

    def score(self, distance: float) -> float:
        """Conformal p-value: (1 + #null >= d) / (n + 1); beyond the largest null distance
        it keeps falling (exponentially, in units of tail_scale) so that far-out frames still
        rank below near-misses."""
        if not math.isfinite(distance):
            return 0.0
        null = self.null_distances
        n = null.size
        ge = n - int(np.searchsorted(null, distance, side="left"))
        p = (1 + ge) / (n + 1)
        if ge == 0:
            p *= math.exp(-(distance - float(null[-1])) / self.tail_scale)
        return p


@dataclass(frozen=True)
class ViewResult:
    ok: bool
    score: float  # [0, 1], higher = more like the frames the model was made for
    reason: str | None  # one of REASONS when not ok
    distance: float | None = None  # Mahalanobis distance (`features` method)
    logit: float | None = None  # view classifier logit (`classifier` method)


@dataclass(frozen=True)
class ViewChecks:
    """Thresholds of the cheap explicit checks (DetectorSettings.view_*)."""

    min_size_px: int = 32
    blank_std: float = 3.0
    contact_echo_level: int = 25
    contact_min_fraction: float = 0.05
    colour_max_fraction: float = 0.002


def cheap_reason(
    pixels_roi: np.ndarray, chroma_fraction: float | None, c: ViewChecks
) -> str | None:
    """The first explicit check that fails on this ROI, or None."""
    h, w = pixels_roi.shape
    if h < c.min_size_px or w < c.min_size_px:
        return "too_small"
    # Every other pixel: the statistics are the same and it halves the cost per frame.
    sub = pixels_roi[::2, ::2]
    if float(sub.std()) < c.blank_std:
        return "blank"
    deep = sub[sub.shape[0] // 3 :]
    if float((deep > c.contact_echo_level).mean()) < c.contact_min_fraction:
        return "no_contact"
    if chroma_fraction is not None and chroma_fraction > c.colour_max_fraction:
        return "colour"
    return None


class ViewGate:
    """Per-source state (the previous frame, for `frozen`) + the calibrated learned score:
    exactly one of `calibration` (method `features`) or `classifier` (method `classifier`)."""

    def __init__(
        self,
        calibration: ViewCalibration | None,
        checks: ViewChecks,
        alpha: float | None = None,
        classifier: ViewClassifier | None = None,
    ) -> None:
        if (calibration is None) == (classifier is None):
            raise ValueError("ViewGate needs exactly one of calibration / classifier")
        self.cal = calibration
        self.classifier = classifier
        self.checks = checks
        if classifier is not None:
            calibrated = classifier.alpha
        else:
            assert calibration is not None
            calibrated = calibration.alpha
        self.alpha = calibrated if alpha is None else alpha
        self._prev: tuple[int, bytes] | None = None

    @property
    def method(self) -> str:
        return "classifier" if self.classifier is not None else "features"

    def reset(self) -> None:
        self._prev = None

    def pre_check(self, frame: Frame) -> str | None:
        """Explicit checks that need no model output (updates the frozen-frame state)."""
        roi = frame.region
        px = frame.pixels[roi.y0 : roi.y1, roi.x0 : roi.x1]
        chroma = frame.meta.get("chroma_fraction")
        reason = cheap_reason(
            px, float(chroma) if isinstance(chroma, int | float) else None, self.checks
        )
        digest = hashlib.blake2b(px.tobytes(), digest_size=16).digest()
        prev = self._prev
        self._prev = (frame.index, digest)
        if reason is None and prev is not None and prev[0] == frame.index - 1 and prev[1] == digest:
            # A live probe never gives two byte-identical frames (speckle noise alone differs);
            # a frozen scanner or a stuck capture card does.
            reason = "frozen"
        return reason

    def judge(
        self,
        frame: Frame,
        features: np.ndarray | None,
        reason: str | None,
        x: np.ndarray | None = None,
    ) -> ViewResult:
        """Combine the explicit reason (from pre_check) with the learned score. x: the
        prepared model input (1, 1, H, W), needed by the classifier method."""
        if self.classifier is not None:
            if x is None:
                return ViewResult(False, 0.0, reason or "ood")
            logit = self.classifier.logit(x)
            score = self.classifier.score(logit)
            if reason is None and score < self.alpha:
                reason = "ood"
            return ViewResult(reason is None, score, reason, None, logit)
        assert self.cal is not None
        if features is None:
            return ViewResult(False, 0.0, reason or "ood", None)
        dist = self.cal.distance(features)
        score = self.cal.score(dist)
        if reason is None and score < self.alpha:
            reason = "ood"
        return ViewResult(reason is None, score, reason, dist)
