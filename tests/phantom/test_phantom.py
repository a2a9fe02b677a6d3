"""Phantom simulator: geometry, physics sanity, masks vs truth, determinism, coherent motion."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from edge_service.detector.measure import ellipse_fit
from edge_service.phantom import PhantomConfig, PhantomSimulator
from edge_service.sim.motion import manoeuvre

STILL: dict[str, Any] = {"jitter_mm": 0.0, "jitter_deg": 0.0, "gain_wander_db": 0.0}


@pytest.fixture(scope="module")
def calc_frame():
    sim = PhantomSimulator(PhantomConfig(nerve="swollen", calcification=True), seed=11)
    return sim, sim.render(np.zeros(3))


def test_fan_geometry_and_spacing() -> None:
    sim = PhantomSimulator(PhantomConfig(depth_mm=90.0, radius_mm=45.0), seed=1)
    g = sim.geom
    pf = sim.render(np.zeros(3))
    assert pf.frame.spacing_mm is not None
    dx, dy = pf.frame.spacing_mm
    assert dx == dy > 0
    assert pf.frame.pixels.shape == (480, 640)
    # The deepest fan pixel lies at the configured depth (on the probe axis).
    rows = np.nonzero(g.fan_mask[:, 320])[0]
    assert rows.max() * dy + g.y_top_mm == pytest.approx(90.0, abs=2 * dy)
    # Outside the fan the image is black; the ROI holds the whole fan.
    assert pf.frame.pixels[~g.fan_mask].max() == 0
    roi = pf.frame.roi
    assert roi is not None
    assert g.fan_mask[: roi.y0].sum() == 0 and g.fan_mask[roi.y1 :].sum() == 0


def test_masks_match_session_truth(calc_frame) -> None:
    sim, pf = calc_frame
    truth = sim.truth()
    dx, dy = pf.frame.spacing_mm
    nerve = pf.masks["nerve"]
    major, minor, _, _, _ = ellipse_fit(nerve, dx, dy)
    assert minor == pytest.approx(truth["nerve"]["ap_mm"], abs=0.15)
    assert major == pytest.approx(truth["nerve"]["width_mm"], abs=0.15)
    assert nerve.sum() * dx * dy == pytest.approx(truth["nerve"]["csa_mm2"], rel=0.03)
    assert 10.0 <= truth["nerve"]["ap_mm"] <= 14.0  # swollen class range
    calc = pf.masks["calcification"]
    c_major, c_minor, _, _, _ = ellipse_fit(calc, dx, dy)
    assert c_major == pytest.approx(truth["calcification"]["long_axis_mm"], abs=0.3)
    assert c_minor == pytest.approx(truth["calcification"]["thickness_mm"], abs=0.3)
    assert 5.0 <= truth["calcification"]["long_axis_mm"] <= 15.0
    assert 2.0 <= truth["calcification"]["thickness_mm"] <= 4.0
    assert not (nerve & calc).any()


def test_calcification_casts_acoustic_shadow(calc_frame) -> None:
    _sim, pf = calc_frame
    px = pf.frame.pixels.astype(float)
    calc, shadow = pf.masks["calcification"], pf.masks["shadow"]
    assert shadow.any() and not (shadow & calc).any()
    # Shadow lies deep to the calcification, and is dark compared with the bright focus.
    assert np.nonzero(shadow)[0].min() >= np.nonzero(calc)[0].min()
    assert px[calc].mean() > 2.0 * px[shadow].mean()
    # Just above the calcification, tissue is brighter than just below it (in the shadow).
    ys, xs = np.nonzero(calc)
    above = px[ys.min() - 25 : ys.min() - 5, xs.min() : xs.max()]
    below = px[ys.max() + 5 : ys.max() + 25, xs.min() : xs.max()]
    assert below.mean() < 0.5 * above.mean()


def test_no_calcification_means_empty_masks() -> None:
    sim = PhantomSimulator(PhantomConfig(calcification=False), seed=2)
    pf = sim.render(np.zeros(3))
    assert not pf.masks["calcification"].any() and not pf.masks["shadow"].any()
    assert sim.truth()["calcification"] == {"present": False}
    assert 6.0 <= sim.truth()["nerve"]["ap_mm"] <= 9.0  # normal class range


def test_determinism_by_seed() -> None:
    a = PhantomSimulator(PhantomConfig(), seed=5).render(np.array([10.0, 5.0, 20.0]), 1.0)
    b = PhantomSimulator(PhantomConfig(), seed=5).render(np.array([10.0, 5.0, 20.0]), 1.0)
    c = PhantomSimulator(PhantomConfig(), seed=6).render(np.array([10.0, 5.0, 20.0]), 1.0)
    assert np.array_equal(a.frame.pixels, b.frame.pixels)
    assert not np.array_equal(a.frame.pixels, c.frame.pixels)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def test_speckle_moves_coherently_with_the_nerve() -> None:
    """Speckle inside the nerve follows the glide (shifted copy), tissue far away stays."""
    sim = PhantomSimulator(
        PhantomConfig(gliding="free", nerve="swollen", noise_db=-80.0, **STILL), seed=4
    )
    f0 = sim.render(np.zeros(3), 0.0)
    f1 = sim.render(np.array([0.0, 0.0, 8.0]), 0.0)
    d_lat = f1.truth["nerve_displacement_mm"]
    assert d_lat > 0.75  # free gliding: >= 0.1 mm/deg of IR
    assert f0.frame.spacing_mm is not None
    dx = f0.frame.spacing_mm[0]
    x0, y0 = (int(v) for v in f0.truth["nerve_center_px"])
    x1, y1 = (round(v) for v in f1.truth["nerve_center_px"])
    assert (x1 - x0) == pytest.approx(d_lat / dx, abs=2)  # lateral = +x on the left side
    p0 = f0.frame.pixels[y0 - 12 : y0 + 12, x0 - 20 : x0 + 20].astype(float)

    def best(pix: np.ndarray) -> float:
        # best match within +-2 px of the true shift (sub-pixel rounding, curved beams)
        return max(
            _ncc(p0, pix[y1 + j - 12 : y1 + j + 12, x1 + i - 20 : x1 + i + 20].astype(float))
            for j in range(-2, 3)
            for i in range(-2, 3)
        )

    coherent = best(f1.frame.pixels)
    # The same anatomy and motion with the speckle re-drawn (new scatterer strengths):
    other = PhantomSimulator(
        PhantomConfig(gliding="free", nerve="swollen", noise_db=-80.0, **STILL), seed=4
    )
    signs = np.where(np.random.default_rng(0).random(other.amp.size) < 0.5, -1, 1)
    other.amp = (other.amp * signs).astype(np.float32)
    redrawn = best(other.render(np.array([0.0, 0.0, 8.0]), 0.0).frame.pixels)
    assert coherent > 0.75
    assert coherent > redrawn + 0.3
    top0 = f0.frame.pixels[40:90, 250:390].astype(float)
    top1 = f1.frame.pixels[40:90, 250:390].astype(float)
    assert _ncc(top0, top1) > 0.95  # superficial muscle did not move (no flexion)


def test_gliding_free_vs_restricted_over_fair() -> None:
    motion = manoeuvre("fair")
    _t, ang = motion.sample(5.0)
    out = {}
    for mode in ("free", "restricted"):
        sim = PhantomSimulator(PhantomConfig(gliding=mode), seed=9)
        d = [sim.nerve_displacement(a)[0] for a in ang]
        out[mode] = max(d) - min(d)
        k = sim.truth()["gliding"]["k_ir_mm_per_deg"]
        assert (0.10 <= k <= 0.20) if mode == "free" else (0.02 <= k <= 0.04)
    assert out["free"] > 4.0
    assert out["restricted"] < 0.3 * out["free"]


def test_right_side_is_mirrored() -> None:
    left = PhantomSimulator(PhantomConfig(side="left"), seed=3)
    right = PhantomSimulator(PhantomConfig(side="right"), seed=3)
    assert left.anatomy.spine[0] < left.anatomy.nerve.cx
    assert right.anatomy.spine[0] > right.anatomy.nerve.cx


def test_tgc_and_gain_change_brightness() -> None:
    base: dict[str, Any] = {"noise_db": -80.0, **STILL}
    under = PhantomSimulator(PhantomConfig(tgc_error=-0.4, **base), seed=8).render(np.zeros(3))
    over = PhantomSimulator(PhantomConfig(tgc_error=0.4, **base), seed=8).render(np.zeros(3))
    rows = slice(150, 200)  # deep soft tissue, above the bone
    assert under.frame.pixels[rows].mean() < over.frame.pixels[rows].mean()
    lo = PhantomSimulator(PhantomConfig(gain_db=-6, **base), seed=8).render(np.zeros(3))
    hi = PhantomSimulator(PhantomConfig(gain_db=6, **base), seed=8).render(np.zeros(3))
    assert lo.frame.pixels.mean() < hi.frame.pixels.mean()


def test_speckle_is_larger_at_lower_frequency() -> None:
    def lateral_corr_len(f_mhz: float) -> float:
        sim = PhantomSimulator(PhantomConfig(frequency_mhz=f_mhz, noise_db=-80.0, **STILL), seed=7)
        p = sim.render(np.zeros(3)).frame.pixels[60:110, 260:380].astype(float)
        p -= p.mean(axis=1, keepdims=True)
        ac = np.array([(p[:, :-k] * p[:, k:]).mean() if k else (p * p).mean() for k in range(20)])
        return float(np.argmax(ac / ac[0] < 0.5))

    assert lateral_corr_len(3.0) > lateral_corr_len(5.0)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValidationError):
        PhantomConfig(depth_mm=300.0)
    with pytest.raises(ValidationError):
        PhantomConfig(colour="blue")  # type: ignore[call-arg]
    cfg = PhantomConfig.randomized(np.random.default_rng(0), nerve="swollen")
    assert cfg.nerve == "swollen" and 60.0 <= cfg.depth_mm <= 100.0
