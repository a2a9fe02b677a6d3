"""Every config key that validates is honoured (issue 12): `run` builds its detector with
`preflight.load_detector(cfg)` and its analysis with `preflight.analysis_for(cfg)`; these tests
change one key at a time and show its effect on the real detector (shipped ONNX model) and the
real session analysis of a phantom recording."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import pytest

from edge_service.config import AppConfig
from edge_service.detector.model import shipped_model
from edge_service.phantom import PhantomConfig, PhantomSimulator, simulate_session
from edge_service.preflight import analysis_for, load_detector


def _cfg(section: str, **kv: Any) -> AppConfig:
    return AppConfig.model_validate({section: kv})


@functools.cache
def _frame() -> Any:
    from edge_service.sim.motion import manoeuvre

    sim = PhantomSimulator(PhantomConfig(calcification=True), seed=3)
    return next(iter(sim.run(manoeuvre("fair"), fps=5.0, t0=0.0))).frame


def _detect(**kv: Any) -> dict[str, Any]:
    det = load_detector(_cfg("detector", **kv))
    return det.detect(_frame()).to_dict()  # type: ignore[no-any-return]


@functools.cache
def _default() -> dict[str, Any]:
    return _detect()


def test_default_frame_has_nerve_and_calcification() -> None:
    d = _default()
    assert d["nerve"]["found"] and d["calcification"]["present"]


def test_precision_picks_the_int8_model() -> None:
    det = load_detector(_cfg("detector", precision="int8"))
    assert det.seg.path == shipped_model("int8")
    assert load_detector(_cfg("detector")).seg.path == shipped_model("fp32")


def test_model_path_is_loaded(tmp_path: Path) -> None:
    mine = tmp_path / "mine.onnx"
    shutil.copy(shipped_model("int8"), mine)
    # A model travels with its view-gate calibration (models/calibrate_view): <stem>.view.json.
    shutil.copy(shipped_model("int8").with_suffix(".view.json"), tmp_path / "mine.view.json")
    assert load_detector(_cfg("detector", model_path=str(mine))).seg.path == mine


def test_threads_reach_onnxruntime() -> None:
    det = load_detector(_cfg("detector", threads=2))
    assert det.seg.session.get_session_options().intra_op_num_threads == 2


def test_nerve_threshold_changes_the_outline() -> None:
    lo, hi = _detect(nerve_threshold=0.1)["nerve"], _detect(nerve_threshold=0.9)["nerve"]
    assert lo["found"] and (not hi["found"] or hi["csa_mm2"] < lo["csa_mm2"])


def test_nerve_min_area_rejects_small_nerves() -> None:
    assert not _detect(nerve_min_area_mm2=1e6)["nerve"]["found"]


def test_calcification_threshold_changes_the_outline() -> None:
    lo = _detect(calcification_threshold=0.1)["calcification"]
    hi = _detect(calcification_threshold=0.9)["calcification"]
    assert lo["present"]
    assert not hi["present"] or hi["long_axis_mm"] != lo["long_axis_mm"]


def test_calcification_min_area_rejects_small_calcifications() -> None:
    assert not _detect(calcification_min_area_mm2=1e6)["calcification"]["present"]


def test_shadow_ratio_decides_the_shadow_call() -> None:
    ratio = _default()["calcification"]["shadow_ratio"]
    assert ratio is not None and ratio > 0
    below = _detect(shadow_ratio=min(0.99, ratio + 0.01))["calcification"]
    above = _detect(shadow_ratio=max(0.01, ratio - 0.01))["calcification"]
    assert below["shadow"] is True and above["shadow"] is False


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys") / "s"
    return simulate_session(d, seed=201, gliding="free", nerve="normal", fps=4.0)


@pytest.fixture(scope="module")
def detector() -> Any:
    return load_detector(AppConfig())


def _analyse(recording: Path, tmp_path: Path, detector: Any, **analysis: Any) -> dict[str, Any]:
    d = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    shutil.copytree(recording, d)
    return analysis_for(AppConfig.model_validate({"analysis": analysis}))(d, detector)


@pytest.mark.sim
def test_analysis_keys_reach_the_analysis(recording: Path, tmp_path: Path, detector: Any) -> None:
    base = _analyse(recording, tmp_path, detector)
    assert base["maneuvers"], "the phantom FAIR session must show manoeuvres by default"
    assert base["gliding"]["restricted"] is False
    # [analysis.gliding]: a threshold above any healthy slope makes the same gliding restricted.
    strict = _analyse(
        recording, tmp_path, detector, gliding={"restricted_below_mm_per_10deg": 50.0}
    )
    assert strict["gliding"]["restricted"] is True
    # [analysis.manoeuvres]: an onset no hip reaches finds no manoeuvre at all.
    calm = _analyse(recording, tmp_path, detector, manoeuvres={"active_deg": 170.0})
    assert calm["maneuvers"] == []
    # [analysis] min_nerve_confidence: above any detection's confidence, nothing is measured.
    blind = _analyse(recording, tmp_path, detector, min_nerve_confidence=1.0)
    assert blind["nerve"]["ap_diameter_mm"] is None and base["nerve"]["ap_diameter_mm"]
