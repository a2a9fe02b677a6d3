"""The view / out-of-distribution gate with the shipped models and their committed
calibrations: real images of other anatomy give no nerve, synthetic non-views are refused
with their reason, held-out phantom frames are accepted, and a stale or missing calibration
is refused. The default gate is the view classifier (models/view_cls.onnx); the previous
`features` gate is still selectable and tested."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_ood import real_files
from benchmarks.ood_negatives import colour_doppler, negatives, phantom_frame
from edge_service.acquisition.factory import open_path
from edge_service.acquisition.frame import Frame
from edge_service.detector import Detector, DetectorSettings
from edge_service.detector.model import models_dir, shipped_model
from edge_service.detector.view import (
    REASONS,
    ViewCalibration,
    calibration_path,
    file_sha256,
)
from edge_service.detector.view_classifier import (
    CLASSIFIER_FILE,
    ViewClassifier,
    classifier_calibration_path,
)
from edge_service.errors import DgsError, InputError, ModelError


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector.load(threads=1)


def _gate_refused(d, reason: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert not d.view_ok
    assert d.view_reason in REASONS
    if reason is not None:
        assert d.view_reason == reason
    assert not d.nerve.found and d.nerve.ap_mm is None and d.nerve.csa_mm2 is None
    assert not d.calcification.present and d.calcification.long_axis_mm is None
    assert 0.0 <= d.view_score <= 1.0


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_shipped_calibration_matches_its_model(precision: str) -> None:
    model = shipped_model(precision)
    cal = ViewCalibration.load(calibration_path(model))
    assert cal.model_sha256 == file_sha256(model)
    assert 0.0 < cal.alpha < 0.05
    prov = cal.raw["provenance"]
    assert "no real image" in prov["data"]
    d = Detector.load(model, threads=1, settings=DetectorSettings(view_method="features"))
    assert d.gate is not None and d.seg.n_features == cal.n_features
    assert d.gate.method == "features"


def test_shipped_view_classifier_matches_its_calibration() -> None:
    clf_path = models_dir() / CLASSIFIER_FILE
    cal = json.loads(classifier_calibration_path(clf_path).read_text())
    assert cal["model_sha256"] == file_sha256(clf_path)
    assert 0.0 < cal["alpha"] < 0.05
    assert "no real image" in cal["provenance"]["data"]
    # Calibrated on held-out data: the null set is accepted at ~1 - alpha by construction,
    # and the held-out synthetic negatives are mostly refused.
    assert cal["summary"]["held_out_positives_accepted"] >= 0.99
    assert cal["summary"]["held_out_synthetic_negatives_rejected"] >= 0.9
    for precision in ("fp32", "int8"):
        d = Detector.load(threads=1, settings=DetectorSettings(precision=precision))
        assert d.gate is not None and d.gate.method == "classifier"
        assert d.gate.alpha == cal["alpha"]


def test_view_min_score_is_honoured() -> None:
    d = Detector.load(threads=1, settings=DetectorSettings(view_min_score=0.999))
    assert d.gate is not None and d.gate.alpha == 0.999
    d.reset()
    # Almost nothing scores above 0.999: a good frame is then refused as `ood`.
    _gate_refused(d.detect(phantom_frame(32_500)), "ood")


def test_held_out_phantom_frames_are_accepted(det: Detector) -> None:
    scores = []
    for seed in range(32_000, 32_012):
        det.reset()
        d = det.detect(phantom_frame(seed))
        assert d.view_ok, (seed, d.view_score, d.view_reason)
        assert d.view_reason is None
        scores.append(d.view_score)
    assert all(0.0 < v <= 1.0 for v in scores)


def _as_frame(img: np.ndarray, index: int = 0) -> Frame:
    import cv2

    px = (cv2.resize(img, (480, 320)).clip(0, 1) * 255).round().astype(np.uint8)
    return Frame(px, float(index), index, (0.2, 0.2))


def test_other_anatomy_from_the_negative_generator_is_refused(det: Detector) -> None:
    """Cardiac, fetal, abdominal, linear vessel, lung, gel-only ... images from
    models/view_negatives.py at a seed neither training nor calibration uses."""
    from models.view_negatives import CATEGORIES
    from models.view_negatives import negatives as gen_negatives

    imgs, cats = gen_negatives(2 * len(CATEGORIES), 9_191_919)
    refused = []
    for i, img in enumerate(imgs):
        det.reset()
        d = det.detect(_as_frame(img, i), require_spacing=False)
        refused.append(not d.view_ok)
        if d.view_ok:
            continue
        _gate_refused(d)
    assert np.mean(refused) >= 0.9, [
        CATEGORIES[c] for c, r in zip(cats, refused, strict=True) if not r
    ]


def test_features_gate_still_selectable() -> None:
    d = Detector.load(threads=1, settings=DetectorSettings(view_method="features"))
    for f in negatives("noise", 2):
        d.reset()
        _gate_refused(d.detect(f, require_spacing=False), "ood")
    d.reset()
    assert d.detect(phantom_frame(32_001)).view_ok


@pytest.mark.parametrize(
    ("category", "reason"),
    [("blank", "blank"), ("no contact", "no_contact"), ("noise", None), ("natural image", None)],
)
def test_synthetic_non_views_are_refused(det: Detector, category: str, reason: str | None) -> None:
    for f in negatives(category, 3):
        det.reset()
        _gate_refused(det.detect(f, require_spacing=False), reason)


def test_colour_doppler_refused_by_its_chroma(det: Detector) -> None:
    f = colour_doppler(phantom_frame(32_100), np.random.default_rng(0))
    assert f.meta["chroma_fraction"] > 0.002  # view_colour_fraction
    det.reset()
    _gate_refused(det.detect(f), "colour")
    # The same gray pixels without the chroma report are not refused for colour.
    det.reset()
    d = det.detect(dataclasses.replace(f, meta={}))
    assert d.view_reason != "colour"


def test_frozen_frame_refused_then_live_again(det: Detector) -> None:
    f = phantom_frame(32_200)
    det.reset()
    assert det.detect(f).view_ok
    again = dataclasses.replace(f, index=f.index + 1, t=f.t + 0.05)
    _gate_refused(det.detect(again), "frozen")
    fresh = dataclasses.replace(phantom_frame(32_201), index=f.index + 2)
    assert det.detect(fresh).view_ok
    # Not consecutive (a different source or a jump): not called frozen.
    det.reset()
    det.detect(f)
    assert det.detect(dataclasses.replace(f, index=f.index + 5)).view_reason != "frozen"


def test_without_spacing_found_but_no_mm(det: Detector) -> None:
    f = dataclasses.replace(phantom_frame(32_300), spacing_mm=None)
    det.reset()
    d = det.detect(f, require_spacing=False)
    assert d.view_ok and d.nerve.found
    assert d.measure_reason == "no_spacing"
    assert d.nerve.ap_mm is None and d.nerve.width_mm is None and d.nerve.csa_mm2 is None


def test_stale_or_missing_classifier_calibration_refused(tmp_path: Path) -> None:
    clf = tmp_path / "v.onnx"
    shutil.copy(models_dir() / CLASSIFIER_FILE, clf)
    settings = DetectorSettings(view_classifier_path=str(clf))
    with pytest.raises(ModelError, match="view_train"):
        Detector.load(settings=settings)  # no calibration next to it
    cal = json.loads(classifier_calibration_path(models_dir() / CLASSIFIER_FILE).read_text())
    classifier_calibration_path(clf).write_text(json.dumps(cal))
    assert ViewClassifier(clf).alpha == cal["alpha"]  # a copy with its calibration loads
    cal["model_sha256"] = "0" * 64
    classifier_calibration_path(clf).write_text(json.dumps(cal))
    with pytest.raises(ModelError, match="another classifier file"):
        Detector.load(settings=settings)
    classifier_calibration_path(clf).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        Detector.load(settings=settings)
    with pytest.raises(ModelError, match="not found"):
        Detector.load(settings=DetectorSettings(view_classifier_path=str(tmp_path / "no.onnx")))


def test_stale_or_missing_calibration_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(shipped_model("fp32"), model)
    feats = DetectorSettings(view_method="features")
    # The classifier gate does not depend on the segmentation model's calibration.
    assert Detector.load(model).gate is not None
    with pytest.raises(ModelError, match="calibrate_view"):
        Detector.load(model, settings=feats)  # no calibration next to it
    cal = json.loads(calibration_path(shipped_model("fp32")).read_text())
    cal["model_sha256"] = "0" * 64
    calibration_path(model).write_text(json.dumps(cal))
    with pytest.raises(ModelError, match="another model file"):
        Detector.load(model, settings=feats)
    calibration_path(model).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        Detector.load(model, settings=feats)
    # Explicitly off: loads (development only) and every frame passes as a view.
    d = Detector.load(model, settings=DetectorSettings(view_gate=False))
    assert d.gate is None


def _readable() -> list[str]:
    out = []
    for f, _ in real_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                open_path(f).close()
        except (DgsError, ValueError, OSError):
            continue  # refusing the file is tests/acquisition's concern
        out.append(f)
    return out


READABLE = _readable()


def test_real_file_set_is_the_vendor_ultrasound_and_more() -> None:
    names = {Path(f).name for f in READABLE}
    assert len(READABLE) >= 100
    assert {"US1_J2KR.dcm", "OBXXXX1A.dcm", "color3d_jpeg_baseline.dcm"} <= names


@pytest.mark.sim
@pytest.mark.parametrize("path", READABLE, ids=lambda p: Path(p).name)
def test_real_files_of_other_anatomy_give_no_nerve(det: Detector, path: str) -> None:
    """Every frame of every DICOM in pydicom/pydicom-data the sources read: no nerve, no
    calcification (with or without a pixel spacing)."""
    det.reset()
    n = 0
    refused = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_path(path) as src:
            try:
                for frame in src.frames():
                    d = det.detect(frame, require_spacing=False)
                    assert not d.nerve.found, (frame.index, d.view_score)
                    assert not d.calcification.present, (frame.index, d.view_score)
                    n += 1
            except InputError as exc:
                # A few test files have headers but pixel data no decoder reads (deliberately
                # broken ones among them): refused with one clear error, nothing reported.
                refused = str(exc)
    assert n >= 1 or (refused is not None and "cannot decode" in refused)


def test_frame_without_roi_uses_its_content_box(det: Detector) -> None:
    """A shallow image (ROI 337 of 480 rows) captured without its B-mode region: the
    detector crops to the content box, so the gate and the measurements see what the model
    was trained on (full-frame input looked foreign: view_score ~1e-4)."""
    f = phantom_frame(33_010)
    assert f.roi is not None and f.roi.height < 0.75 * f.pixels.shape[0]
    det.reset()
    with_roi = det.detect(f)
    det.reset()
    bare = det.detect(dataclasses.replace(f, roi=None))
    assert with_roi.view_ok and bare.view_ok
    assert bare.nerve.found and with_roi.nerve.ap_mm is not None and bare.nerve.ap_mm is not None
    assert abs(bare.nerve.ap_mm - with_roi.nerve.ap_mm) < 0.5
