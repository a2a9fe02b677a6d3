"""The training export (models/train/export.py): the shipped weights re-exported give the
shipped fp32 graph's logits, and both files carry the model contract's metadata.

Needs torch (the `train` extra), which CI installs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (train extra only)")

import onnx
import onnxruntime as ort

from models.train.export import export_all
from tests.harness.paths import MODELS


def test_reexport_of_the_shipped_weights_matches_the_shipped_model(tmp_path: Path) -> None:
    x = np.load(MODELS / "fixtures" / "parity.npz")["x"]
    out = export_all(MODELS / "dgs_seg.pt", tmp_path, x)
    xin = x[:1].astype(np.float32)[:, None]
    ours = ort.InferenceSession(str(out["fp32"])).run(None, {"image": xin})[0]
    shipped = ort.InferenceSession(str(MODELS / "dgs_seg.onnx")).run(None, {"image": xin})[0]
    np.testing.assert_allclose(ours, shipped, atol=1e-5)
    for f in (out["fp32"], out["int8"]):
        meta = {p.key: p.value for p in onnx.load(str(f)).metadata_props}
        assert meta["dgs.model"] == "dgs-seg/1"
        assert meta["dgs.input_hw"] == "[128, 192]"
        assert "not clinically validated" in meta["dgs.training"]
