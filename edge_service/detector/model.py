"""Loading and validating the segmentation model (the I/O contract in models/MODEL_CARD.md).

Any ONNX file with one float input (1, 1, H, W) and one output (1, C>=3, H, W) whose
channels 1 and 2 are nerve and calcification logits can replace the shipped model.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from edge_service.errors import ModelError

log = logging.getLogger(__name__)

MODEL_FILES = {"fp32": "dgs_seg.onnx", "int8": "dgs_seg.int8.onnx"}
REQUIRED_CLASSES = ("background", "nerve", "calcification")


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
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
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
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{self.path}: expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}"
            )
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
            out = self.run(np.zeros((1, 1, self.in_h, self.in_w), np.float32))
        except Exception as exc:
            raise ModelError(f"{self.path}: model failed on a test input ({exc})") from exc
        if out.ndim != 4 or out.shape[1] < 3 or out.shape[2:] != (self.in_h, self.in_w):
            raise ModelError(
                f"{self.path}: output must be (1, C>=3, {self.in_h}, {self.in_w}), got {out.shape}"
            )
        self.model_name = str(meta.get("dgs.model", self.path.stem))
        log.info(
            "model %s loaded: input %dx%d, %d threads", self.path, self.in_h, self.in_w, threads
        )

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: x})[0]
        return np.asarray(out, dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """(C, H, W) logits -> probabilities over C."""
    z = logits - logits.max(axis=0, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)
