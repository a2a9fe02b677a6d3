"""The view classifier: the learned part of the view gate (method `classifier`, the default).

A small CNN (`models/view_cls.onnx`, trained by `python -m models.view_train`) on the same
model input the segmentation network gets (the B-mode region at 128 x 192) gives one logit:
"short-axis view of the deep gluteal space" vs anything else. It was trained with outlier
exposure (Hendrycks et al. 2019): phantom frames under strong domain randomisation as
positives, synthetic other anatomy (models/view_negatives.py) as negatives. `view_score` is
the conformal p-value of a frame's logit against the logits of held-out phantom frames
stored in `models/view_cls.calibration.json` (the fraction of good frames that score at
least as low): ~uniform on good frames, -> 0 for other images. It does not depend on the
segmentation model's features, so a retrained segmentation model keeps its gate.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from edge_service.errors import ModelError
from edge_service.ortsession import cpu_session

log = logging.getLogger(__name__)

CLASSIFIER_FORMAT = "dgs.view-classifier/1"
CLASSIFIER_FILE = "view_cls.onnx"


def classifier_calibration_path(model_path: str | os.PathLike[str]) -> Path:
    """models/view_cls.onnx -> models/view_cls.calibration.json."""
    p = Path(model_path)
    return p.with_name(p.stem + ".calibration.json")


class ViewClassifier:
    """The ONNX view classifier with its calibration, checked and warmed up at load."""

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:

        from edge_service.detector.view import file_sha256

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"view classifier not found: {self.path}")
        cal_path = classifier_calibration_path(self.path)
        try:
            d = json.loads(cal_path.read_text())
            if d.get("format") != CLASSIFIER_FORMAT:
                raise ValueError(f"format {d.get('format')!r}, expected {CLASSIFIER_FORMAT}")
            self.null = np.sort(np.asarray(d["null_logits"], dtype=np.float64))
            self.alpha = float(d["alpha"])
            sha = str(d["model_sha256"])
            self.in_h, self.in_w = (int(v) for v in d["input_hw"])
        except FileNotFoundError:
            raise ModelError(
                f"view classifier calibration {cal_path} not found "
                "(run `python -m models.view_train`)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"view classifier calibration {cal_path} is unreadable: {exc}"
            ) from exc
        if self.null.size < 10 or not np.all(np.isfinite(self.null)) or not 0 < self.alpha < 1:
            raise ModelError(f"view classifier calibration {cal_path}: implausible null set/alpha")
        if sha != file_sha256(self.path):
            raise ModelError(
                f"{cal_path} was calibrated for another classifier file "
                "(run `python -m models.view_train`)"
            )
        self.session = cpu_session(self.path, threads)
        inp = self.session.get_inputs()
        if len(inp) != 1 or list(inp[0].shape) != [1, 1, self.in_h, self.in_w]:
            raise ModelError(
                f"{self.path}: expected one input (1, 1, {self.in_h}, {self.in_w}), "
                f"got {[i.shape for i in inp]}"
            )
        self.input_name = inp[0].name
        # Warm-up: allocates buffers and proves the output shape before the first frame.
        try:
            self.logit(np.zeros((1, 1, self.in_h, self.in_w), np.float32))
        except Exception as exc:
            raise ModelError(
                f"{self.path}: view classifier failed on a test input ({exc})"
            ) from exc
        log.info("view classifier %s loaded (alpha %g)", self.path, self.alpha)

    def logit(self, x: np.ndarray) -> float:
        """x: (1, 1, in_h, in_w) float32 in [0, 1] (the detector's prepared input)."""
        out = np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float64)
        if out.size != 1:
            raise ModelError(f"{self.path}: expected one logit, got shape {out.shape}")
        return float(out.ravel()[0])

    def score(self, logit: float) -> float:
        """Conformal p-value (1 + #null <= logit) / (n + 1); below the lowest null logit it
        keeps falling (exponentially, in units of the null's spread) so that far-out frames
        still rank below near-misses."""
        if not math.isfinite(logit):
            return 0.0
        n = self.null.size
        le = int(np.searchsorted(self.null, logit, side="right"))
        p = (1 + le) / (n + 1)
        if le == 0:
            spread = max(float(self.null.std()), 1e-6)
            p *= math.exp(-(float(self.null[0]) - logit) / spread)
        return p
