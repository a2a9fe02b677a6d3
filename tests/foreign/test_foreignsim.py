"""The foreign simulator (benchmarks/foreign): physics kernels, recordings, truth, motion."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.foreign.anatomy import inside, polygon_moments
from benchmarks.foreign.psf import ProbePreset, psf_bank
from benchmarks.foreign.session import ForeignSession, generate
from benchmarks.foreign.sim import ForeignConfig, ForeignSimulator
from edge_service.detector.measure import ellipse_fit
from edge_service.recording import open_recording

FIXED = {"fc_mhz": 3.6, "nerve_depth_mm": 55.0, "depth_mm": 85.0, "persistence": 0.0}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("foreign")


@pytest.fixture(scope="module")
def session(cache: Path) -> ForeignSession:
    # One PSF bank (pymust SIMUS + DAS, ~30 s) is computed here and shared by the module.
    return generate(7, frames=3, cache=cache, calcification=True, swollen=False, **FIXED)


def test_polygon_moments_match_an_ellipse() -> None:
    a, b = 7.0, 4.0
    phi = np.linspace(0, 2 * math.pi, 2000, endpoint=False)
    poly = np.stack([3 + a * np.cos(phi), 50 + b * np.sin(phi)], 1)
    area, cx, cz, major, minor = polygon_moments(poly)
    assert area == pytest.approx(math.pi * a * b, rel=1e-4)
    assert (cx, cz) == pytest.approx((3.0, 50.0), abs=1e-6)
    assert (major, minor) == pytest.approx((2 * a, 2 * b), rel=1e-4)
    x = np.array([3.0, 3.0 + a + 0.1, 3.0])
    z = np.array([50.0, 50.0, 50.0 + b - 0.1])
    assert inside(poly, x, z).tolist() == [True, False, True]


def test_psf_bank_is_a_focused_beam(cache: Path, session: ForeignSession) -> None:
    # Read back from the module's cache (computed by the session fixture), re-centred.
    bank = psf_bank(ProbePreset(fc_mhz=3.6, focus_mm=50.0), cache / "psf")
    assert len(list((cache / "psf").glob("psf-*.npy"))) == 1
    assert bank.ndim == 3 and np.iscomplexobj(bank)
    for h in bank:
        a = np.abs(h)
        r, c = np.unravel_index(int(a.argmax()), a.shape)
        assert r == a.shape[0] // 2 and abs(c - a.shape[1] // 2) <= 1
        # Axial resolution (0.1 mm samples) is finer than lateral (a beam is wider than
        # its pulse is long): compare the -6 dB extents in mm at 50 mm depth (0.19 deg/line
        # at ~100 mm radius -> ~0.35 mm per line).
        ax = (a[:, c] > a.max() / 2).sum() * 0.1
        lat = (a[r] > a.max() / 2).sum() * 0.35
        assert 0.15 < ax < 1.0 and lat > ax


def test_session_is_a_contract_recording_with_consistent_truth(
    cache: Path, session: ForeignSession
) -> None:
    rec = open_recording(session.path)
    assert rec.n_frames == 3
    assert rec.spacing_mm is not None and rec.roi is not None
    dx, dy = rec.spacing_mm
    assert dx == pytest.approx(session.truth["spacing_mm"][0])
    t = session.truth
    assert t["format"] == "dgs.phantom-truth/1"
    assert t["calcification"]["present"] and 8.0 <= t["calcification"]["long_axis_mm"] <= 12.5
    assert 6.0 <= t["nerve"]["ap_mm"] <= 9.5  # normal nerve
    frames = list(rec.frames())
    for i, fr in enumerate(frames):
        m = session.frame_masks(i)
        assert fr.pixels.dtype == np.uint8 and fr.pixels.shape == m["nerve"].shape
        # The masks are the truth's outline rasterised: area and moment axes agree.
        area = float(m["nerve"].sum()) * dx * dy
        assert area == pytest.approx(t["nerve"]["csa_mm2"], rel=0.06)
        major, minor, *_ = ellipse_fit(m["nerve"], dx, dy)
        assert minor == pytest.approx(t["nerve"]["ap_mm"], abs=0.35)
        assert major == pytest.approx(t["nerve"]["width_mm"], abs=0.35)
        assert m["calcification"].any() and m["shadow"].any()
        # The calcification is hyperechoic and shadows what lies behind it.
        calc = fr.pixels[m["calcification"]].mean()
        assert calc > fr.pixels[m["shadow"]].mean() + 40
    # Cached: the second call reads the same directory back without simulating.
    t0 = time.perf_counter()
    again = generate(7, frames=3, cache=cache, calcification=True, swollen=False, **FIXED)
    assert again.path == session.path and time.perf_counter() - t0 < 5.0


def test_speckle_moves_with_the_gliding_nerve(cache: Path, session: ForeignSession) -> None:
    cfg = ForeignConfig(side="left", restricted=False, despeckle=False, **FIXED)
    sim = ForeignSimulator(cfg, 11, cache / "psf")
    sim._pose = lambda t: np.zeros(3)  # type: ignore[method-assign]  # hold the probe still
    a = sim.render(np.array([0.0, 0.0, 0.0]), 0.0)
    b = sim.render(np.array([0.0, 0.0, 12.0]), 0.1)
    shift_px = (b.truth["nerve_displacement_mm"] - a.truth["nerve_displacement_mm"]) / sim.spacing
    assert shift_px > 4  # a free nerve glides well over a millimetre for 12 deg of IR
    ys, xs = np.nonzero(a.masks["nerve"])
    cy, cx = int(ys.mean()), int(xs.mean())
    pa = a.pixels[cy - 8 : cy + 8, cx - 12 : cx + 12].astype(float)
    best, best_dx, best_dy = -1.0, 0, 0
    for dxp in range(-3, int(shift_px) + 6):
        for dyp in range(-3, 6):
            pb = b.pixels[cy - 8 + dyp : cy + 8 + dyp, cx - 12 + dxp : cx + 12 + dxp]
            r = np.corrcoef(pa.ravel(), pb.astype(float).ravel())[0, 1]
            if r > best:
                best, best_dx, best_dy = r, dxp, dyp
    # The speckle inside the nerve is the same pattern, displaced with the tissue
    # (laterally by the glide, anteriorly = deeper by 0.2 x the glide).
    assert abs(best_dx - shift_px) <= 1.5 and abs(best_dy - 0.2 * shift_px) <= 1.5
    assert best > 0.6
