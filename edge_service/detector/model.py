"""Loading and validating the segmentation model (the I/O contract in models/MODEL_CARD.md).

Any ONNX file with one float input (1, 1, H, W) and one output (1, C>=3, H, W) whose
channels 1 and 2 are nerve and calcification logits can replace the shipped model. A second
output named `features` (1, F) (pooled encoder features, added by models/view_features.py)
feeds the view / out-of-distribution gate.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from edge_service.errors import ModelError
from edge_service.ortsession import cpu_session

log = logging.getLogger(__name__)

MODEL_FILES = {"fp32": "dgs_seg.onnx", "int8": "dgs_seg.int8.onnx"}
REQUIRED_CLASSES = ("background", "nerve", "calcification")
FEATURE_OUTPUT = "features"


def models_dir() -> Path:
    """DGS_MODEL_DIR if set, else the repository's models/ next to the package."""
    env = os.environ.get("DGS_MODEL_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "models"


def shipped_model(precision: str = "fp32") -> Path:
    if precision not in MODEL_FILES:
        raise ModelError(f"unknown precision {precision!r}; expected fp32 or int8")
    return models_dir() / MODEL_FILES[precision]


class OnnxSegmenter:
    """An onnxruntime session checked against the contract and warmed up."""

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        self.session = cpu_session(self.path, threads)
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        out_names = [o.name for o in outputs]
        extra = out_names[1:]
        if len(inputs) != 1 or not outputs or extra not in ([], [FEATURE_OUTPUT]):
            raise ModelError(
                f"{self.path}: expected 1 input and 1 output (plus an optional "
                f"{FEATURE_OUTPUT!r}), got {len(inputs)} inputs and outputs {out_names}"
            )
        self.has_features = extra == [FEATURE_OUTPUT]
        ishape = inputs[0].shape
        if inputs[0].type != "tensor(float)" or len(ishape) != 4 or ishape[1] != 1:
            raise ModelError(
                f"{self.path}: input must be float (1, 1, H, W), got {inputs[0].type} {ishape}"
            )
        if not all(isinstance(v, int) for v in ishape[2:]):
            raise ModelError(f"{self.path}: input H and W must be fixed, got {ishape}")
        self.in_h, self.in_w = int(ishape[2]), int(ishape[3])
        self.input_name = inputs[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.classes: tuple[str, ...] = REQUIRED_CLASSES
        if "dgs.classes" in meta:
            try:
                self.classes = tuple(json.loads(meta["dgs.classes"]))
            except (ValueError, TypeError) as exc:
                raise ModelError(f"{self.path}: bad dgs.classes metadata") from exc
            if self.classes[:3] != REQUIRED_CLASSES:
                raise ModelError(
                    f"{self.path}: classes must start with {REQUIRED_CLASSES}, got {self.classes}"
                )
        # Warm-up: allocates buffers and proves the output shape before the first real frame.
        try:
            out, feats = self.run_all(np.zeros((1, 1, self.in_h, self.in_w), np.float32))
        except Exception as exc:
            raise ModelError(f"{self.path}: model failed on a test input ({exc})") from exc
        if out.ndim != 4 or out.shape[1] < 3 or out.shape[2:] != (self.in_h, self.in_w):
            raise ModelError(
                f"{self.path}: output must be (1, C>=3, {self.in_h}, {self.in_w}), got {out.shape}"
            )
        self.n_features = 0 if feats is None else int(feats.shape[-1])
        self.model_name = str(meta.get("dgs.model", self.path.stem))
        log.info(
            "model %s loaded: input %dx%d, %d threads", self.path, self.in_h, self.in_w, threads
        )

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.run_all(x)[0]

    def run_all(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits (1, C, H, W), features (F,) or None when the model has no such output)."""
        outs = self.session.run(None, {self.input_name: x})
        logits = np.asarray(outs[0], dtype=np.float32)
        if len(outs) < 2:
            return logits, None
        return logits, np.asarray(outs[1], dtype=np.float64).reshape(-1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """(C, H, W) logits -> probabilities over C."""
    z = logits - logits.max(axis=0, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)
