"""The detector with the shipped ONNX model: contract, parity, held-out phantom accuracy,
not-found reporting and bad model files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge_service.acquisition.frame import Frame
from edge_service.detector import Detector
from edge_service.detector.model import OnnxSegmenter, shipped_model
from edge_service.errors import InputError, ModelError
from edge_service.phantom import PhantomConfig, PhantomSimulator

MODELS = Path(__file__).resolve().parents[2] / "models"

# Held-out patients: seeds below 1000 are never used for training (10000+) or validation.
HELD_OUT = [
    (901, PhantomConfig(nerve="swollen", calcification=True, side="left")),
    (902, PhantomConfig(nerve="normal", calcification=False, side="right", depth_mm=70.0)),
    (903, PhantomConfig(nerve="normal", calcification=True, side="left", frequency_mhz=4.5)),
    (904, PhantomConfig(nerve="swollen", calcification=False, side="right", depth_mm=90.0)),
]
ANGLES = [np.zeros(3), np.array([60.0, 10.0, 30.0])]


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector.load(threads=1)


@pytest.fixture(scope="module")
def held_out():
    out = []
    for seed, cfg in HELD_OUT:
        sim = PhantomSimulator(cfg, seed=seed)
        for i, ang in enumerate(ANGLES):
            out.append((sim.truth(), sim.render(ang, t_rel=float(i))))
    return out


def test_shipped_model_follows_the_contract(det: Detector) -> None:
    assert det.input_hw == (128, 192)
    s = det.seg.session
    assert [i.name for i in s.get_inputs()] == ["image"]
    assert [o.name for o in s.get_outputs()] == ["logits", "features"]  # features: view gate
    assert det.seg.classes == ("background", "nerve", "calcification")
    assert "not clinically validated" in s.get_modelmeta().custom_metadata_map["dgs.training"]
    for prec in ("fp32", "int8"):
        assert shipped_model(prec).stat().st_size < 5_000_000


def test_onnx_matches_committed_torch_outputs() -> None:
    """CI has no torch: the fixture holds PyTorch logits for two held-out inputs."""
    z = np.load(MODELS / "fixtures" / "parity.npz")
    seg = OnnxSegmenter(shipped_model("fp32"))
    for x, ref in zip(z["x"], z["logits"], strict=True):
        out = seg.run(x.astype(np.float32)[None, None])[0]
        assert np.abs(out - ref).max() < 1e-3 * max(1.0, float(np.abs(ref).max()))


def test_onnx_matches_pytorch_live() -> None:
    torch = pytest.importorskip(
        "torch", reason="torch is not installed (appliance/CI); the fixture test covers ONNX"
    )
    from models.train.export import load_model

    model, (h, w) = load_model(MODELS / "dgs_seg.pt")
    x = np.random.default_rng(1).random((1, 1, h, w), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = OnnxSegmenter(shipped_model("fp32")).run(x)
    assert np.abs(out - ref).max() < 1e-3 * max(1.0, float(np.abs(ref).max()))


def test_int8_agrees_with_fp32() -> None:
    z = np.load(MODELS / "fixtures" / "parity.npz")
    f32 = OnnxSegmenter(shipped_model("fp32"))
    i8 = OnnxSegmenter(shipped_model("int8"))
    for x in z["x"]:
        xi = x.astype(np.float32)[None, None]
        a = f32.run(xi)[0].argmax(0)
        b = i8.run(xi)[0].argmax(0)
        assert (a == b).mean() > 0.97
        na, nb = a == 1, b == 1
        assert (na & nb).sum() / max((na | nb).sum(), 1) > 0.8


def test_held_out_nerve_measurements(det: Detector, held_out) -> None:
    errs = []
    for truth, pf in held_out:
        d = det.detect(pf.frame)
        assert d.nerve.found, f"nerve not found in held-out seed {truth['seed']}"
        assert d.nerve.confidence > 0.5
        errs.append(abs(d.nerve.ap_mm - truth["nerve"]["ap_mm"]))
        assert d.nerve.width_mm == pytest.approx(truth["nerve"]["width_mm"], abs=2.5)
        assert d.nerve.csa_mm2 == pytest.approx(truth["nerve"]["csa_mm2"], rel=0.25)
        # The mask is where the nerve is.
        m = pf.masks["nerve"]
        assert (d.nerve.mask & m).sum() / (d.nerve.mask | m).sum() > 0.6
    assert float(np.median(errs)) <= 0.8, errs
    assert max(errs) <= 2.0, errs


def test_swollen_nerve_is_hypoechoic_normal_is_not(det: Detector, held_out) -> None:
    echo: dict[bool, list[float]] = {}
    for truth, pf in held_out:
        d = det.detect(pf.frame)
        assert d.nerve.echogenicity is not None
        echo.setdefault(truth["nerve"]["swollen"], []).append(d.nerve.echogenicity)
    assert max(echo[True]) < min(echo[False])


def test_held_out_calcification_detection(det: Detector, held_out) -> None:
    for truth, pf in held_out:
        d = det.detect(pf.frame)
        want = truth["calcification"]["present"]
        assert d.calcification.present == want, f"seed {truth['seed']}"
        if want:
            c = truth["calcification"]
            assert d.calcification.shadow is True
            assert d.calcification.long_axis_mm == pytest.approx(c["long_axis_mm"], abs=3.0)
            assert d.calcification.thickness_mm == pytest.approx(c["thickness_mm"], abs=1.5)
            assert d.calcification.nerve_distance_mm == pytest.approx(
                pf.truth["calcification_nerve_distance_mm"], abs=3.0
            )
        json.dumps(d.to_dict())


def test_nerve_not_found_is_reported_not_filled_in(det: Detector) -> None:
    blank = Frame(np.zeros((480, 640), np.uint8), t=1.0, index=7, spacing_mm=(0.2, 0.2))
    d = det.detect(blank)
    assert d.nerve.found is False
    assert d.nerve.ap_mm is None and d.nerve.csa_mm2 is None and d.nerve.mask is None
    assert d.calcification.present is False
    out = json.loads(json.dumps(d.to_dict()))
    assert out["nerve"]["found"] is False and out["nerve"]["ap_mm"] is None
    assert out["index"] == 7


def test_frame_without_spacing_is_refused(det: Detector, held_out) -> None:
    pf = held_out[0][1]
    fr = Frame(pf.frame.pixels, pf.frame.t, pf.frame.index, None, pf.frame.roi)
    with pytest.raises(InputError, match="spacing"):
        det.detect(fr)
    assert det.probabilities(fr).shape == (3, 128, 192)  # segmentation alone is allowed


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        Detector.load(tmp_path / "nope.onnx")


def test_corrupt_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(shipped_model("fp32").read_bytes()[:5000])  # truncated download
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        Detector.load(bad)


def test_model_with_wrong_io_contract(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "rgb.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError, match=r"input must be float \(1, 1, H, W\)"):
        Detector.load(path)
    # Right input, too few output classes.
    x1 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 64, 64])
    y1 = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 64, 64])
    g1 = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x1], [y1])
    onnx.save(helper.make_model(g1, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError, match="C>=3"):
        Detector.load(path)


def test_model_with_wrong_classes(tmp_path: Path) -> None:
    m = onnx.load(str(shipped_model("fp32")))
    for p in m.metadata_props:
        if p.key == "dgs.classes":
            p.value = json.dumps(["background", "calcification", "nerve"])
    path = tmp_path / "swapped.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ModelError, match="classes must start with"):
        Detector.load(path)


def test_model_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(shipped_model("int8"), tmp_path / "dgs_seg.int8.onnx")
    monkeypatch.setenv("DGS_MODEL_DIR", str(tmp_path))
    assert shipped_model("int8") == tmp_path / "dgs_seg.int8.onnx"
    with pytest.raises(ModelError, match="not found"):
        Detector.load()  # fp32 is not in that directory
