"""One way to open an ONNX model on the CPU for every network of the appliance (segmentation,
view classifier, needle locator): same threading, quiet logging, one typed error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_service.errors import ModelError


def cpu_session(path: Path, threads: int = 1) -> Any:
    """An onnxruntime InferenceSession on the CPU provider, `threads` intra-op threads and one
    inter-op thread (the appliance runs several networks side by side on a few cores);
    ModelError with one line when the file is not a loadable ONNX model."""
    import onnxruntime as ort  # imported where a model is opened: keeps the CLI start-up lean

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from exc
