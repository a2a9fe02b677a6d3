"""Export the trained U-Net: ONNX fp32 (opset 17), int8 (static QDQ), parity fixture.

`python -m models.train.export [CKPT]` re-exports without retraining.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from models.train.net import CLASSES, UNet

log = logging.getLogger(__name__)

MODEL_NAME = "dgs_seg"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 17


class _Calib(CalibrationDataReader):
    def __init__(self, x: np.ndarray) -> None:
        self._it = iter([{INPUT_NAME: xi[None, None].astype(np.float32)} for xi in x])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def load_model(ckpt: Path) -> tuple[UNet, tuple[int, int]]:
    d = torch.load(ckpt, map_location="cpu", weights_only=True)
    model = UNet(tuple(d["widths"]), len(CLASSES))
    model.load_state_dict(d["state"])
    model.eval()
    return model, (int(d["input"][0]), int(d["input"][1]))


def to_onnx(model: UNet, h: int, w: int, path: Path) -> onnx.ModelProto:
    """The fp32 graph with the I/O names and metadata of the model contract (not yet saved)."""
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, h, w),),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=OPSET,
        dynamo=False,
    )
    m = onnx.load(str(path))
    meta = {
        "dgs.model": "dgs-seg/1",
        "dgs.classes": json.dumps(list(CLASSES)),
        "dgs.input_hw": json.dumps([h, w]),
        "dgs.normalisation": "B-mode ROI crop, box-average + bilinear resize, pixels/255 float32",
        "dgs.training": "simulated phantom data only; not clinically validated",
    }
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    return m


def export_all(ckpt: Path, models_dir: Path, calib_x: np.ndarray) -> dict[str, Path]:
    model, (h, w) = load_model(ckpt)
    fp32 = models_dir / f"{MODEL_NAME}.onnx"
    int8 = models_dir / f"{MODEL_NAME}.int8.onnx"
    tmp = models_dir / "runs" / "tmp.onnx"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    m = to_onnx(model, h, w, tmp)
    onnx.checker.check_model(m)
    onnx.save(m, str(fp32))
    pre = tmp.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(
        str(pre),
        str(int8),
        _Calib(calib_x),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    q = onnx.load(str(int8))
    del q.metadata_props[:]
    for prop in m.metadata_props:
        p = q.metadata_props.add()
        p.key, p.value = prop.key, prop.value
    onnx.save(q, str(int8))
    # Parity fixture: torch logits for two held-out inputs, so CI (no torch) still checks
    # the ONNX numerics against the framework the model was trained in.
    xin = calib_x[:2].astype(np.float32)[:, None]
    with torch.no_grad():
        ref = model(torch.from_numpy(xin)).numpy()
    fx = models_dir / "fixtures"
    fx.mkdir(exist_ok=True)
    np.savez_compressed(
        fx / "parity.npz", x=calib_x[:2].astype(np.float16), logits=ref.astype(np.float32)
    )
    # The torch weights (for the live parity test and fine-tuning) and the training record.
    shutil.copy(ckpt, models_dir / f"{MODEL_NAME}.pt")
    info = ckpt.with_name("train_info.json")
    if info.exists():
        shutil.copy(info, models_dir / f"{MODEL_NAME}.train.json")
    # The view gate reads pooled encoder features from a second output; its calibration is
    # tied to the file's hash, so a new export needs `python -m models.calibrate_view`.
    from models.view_features import add_feature_output

    for p in (fp32, int8):
        add_feature_output(p)
    log.info("exported %s (%d B), %s (%d B)", fp32, fp32.stat().st_size, int8, int8.stat().st_size)
    log.warning(
        "now run `python -m models.calibrate_view`: the view gate refuses a stale calibration"
    )
    return {"fp32": fp32, "int8": int8}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    here = Path(__file__).resolve().parent
    ck = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent / "runs" / "unet.pt"
    z = np.load(Path("/tmp/dgs_train_cache.npz"))
    export_all(ck, here.parent, z["xva"][:64])
