"""The second training image-formation family (models/train/rf_family.py): same anatomy and
labels as the phantom, a different image chain."""

from __future__ import annotations

import numpy as np

from edge_service.phantom import PhantomConfig, PhantomSimulator
from models.train.data import _patient
from models.train.rf_family import RfRenderer

ANG = np.array([30.0, 5.0, 10.0])


def _pair(seed: int) -> tuple:
    cfg = PhantomConfig(calcification=True, nerve="normal", side="left")
    sim = PhantomSimulator(cfg, seed=seed)
    ref = sim.render(ANG, t_rel=1.0)
    rf = RfRenderer(sim, np.random.default_rng([seed, 1])).render(ANG, 1.0)
    return ref, rf


def test_rf_render_keeps_labels_and_geometry_but_forms_its_own_image() -> None:
    ref, rf = _pair(3)
    assert rf.frame.pixels.shape == ref.frame.pixels.shape
    assert rf.frame.pixels.dtype == np.uint8
    assert rf.frame.roi == ref.frame.roi and rf.frame.spacing_mm == ref.frame.spacing_mm
    for k in ("nerve", "calcification"):
        assert np.array_equal(rf.masks[k], ref.masks[k])
    fan = ref.frame.pixels > 0
    assert not rf.frame.pixels[~fan].any() or rf.frame.pixels[~fan].mean() < 1.0
    # a different image, not a copy of the phantom's
    a = rf.frame.pixels[fan].astype(float)
    b = ref.frame.pixels[fan].astype(float)
    assert np.corrcoef(a, b)[0, 1] < 0.9
    assert a.std() > 10.0


def test_rf_render_shows_the_calcification_bright_with_a_shadow() -> None:
    _, rf = _pair(5)
    px = rf.frame.pixels.astype(float)
    calc = rf.masks["calcification"]
    rows, cols = np.nonzero(calc)
    below = px[rows.max() + 15 : rows.max() + 40, cols.min() : cols.max() + 1]
    assert px[calc].mean() > 1.5 * below.mean()


def test_training_patients_mix_the_family_from_its_own_stream() -> None:
    x0, y0 = _patient((10_003, 2, 128, 192, 0.0, 0.0))
    x1, y1 = _patient((10_003, 2, 128, 192, 0.0, 1.0))
    assert x0.shape == x1.shape == (2, 128, 192)
    assert np.array_equal(y0, y1)  # same anatomy, angles and labels
    assert not np.array_equal(x0, x1)  # rendered differently
