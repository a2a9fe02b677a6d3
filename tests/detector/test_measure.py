"""Measurement maths on synthetic masks (no model): ellipse fit, distances, shadow, contour."""

from __future__ import annotations

import numpy as np
import pytest

from edge_service.acquisition.frame import Roi
from edge_service.detector import measure
from edge_service.detector.preprocess import input_scale, prepare_input, resize_area


def _ellipse(shape, cy, cx, a_px, b_px, angle_deg=0.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    t = np.radians(angle_deg)
    u = (np.cos(t) * (xx - cx) + np.sin(t) * (yy - cy)) / a_px
    v = (-np.sin(t) * (xx - cx) + np.cos(t) * (yy - cy)) / b_px
    return u * u + v * v <= 1.0


@pytest.mark.parametrize("angle", [0.0, 20.0, -35.0])
def test_ellipse_fit_recovers_axes_in_mm(angle: float) -> None:
    m = _ellipse((200, 300), 100, 150, 40, 25, angle)
    major, minor, ang, cy, cx = measure.ellipse_fit(m, 0.2, 0.2)
    assert major == pytest.approx(16.0, abs=0.1)
    assert minor == pytest.approx(10.0, abs=0.1)
    assert ang == pytest.approx(angle, abs=1.0)
    assert (cy, cx) == pytest.approx((100, 150), abs=0.1)


def test_ellipse_fit_uses_anisotropic_spacing() -> None:
    # 40 px wide at 0.1 mm, 20 px tall at 0.3 mm: 8 mm x 12 mm -> major is the vertical one.
    m = _ellipse((100, 100), 50, 50, 40, 20)
    major, minor, ang, *_ = measure.ellipse_fit(m, 0.1, 0.3)
    assert major == pytest.approx(12.0, abs=0.15) and minor == pytest.approx(8.0, abs=0.15)
    assert abs(ang) == pytest.approx(90.0, abs=1.0)


def test_edge_distance_between_outlines() -> None:
    a = _ellipse((100, 200), 50, 50, 20, 20)
    b = _ellipse((100, 200), 50, 150, 20, 20)  # centres 100 px apart, radii 20 -> gap 60 px
    ra = measure.Refined(a, a.astype(np.float32), 0, 0)
    rb = measure.Refined(b, b.astype(np.float32), 0, 0)
    assert measure.edge_distance_mm(ra, rb, 0.2, 0.2) == pytest.approx(12.0, abs=0.3)
    assert measure.edge_distance_mm(ra, ra, 0.2, 0.2) == 0.0


def test_shadow_ratio_sees_dark_band_below() -> None:
    px = np.full((200, 100), 120, np.uint8)
    calc = np.zeros_like(px, bool)
    calc[80:90, 30:60] = True
    px[90:, 30:60] = 20  # acoustic shadow
    assert measure.shadow_ratio(px, calc, 0.2) == pytest.approx(20 / 120, abs=0.02)
    px[90:, 30:60] = 120
    assert measure.shadow_ratio(px, calc, 0.2) == pytest.approx(1.0, abs=0.02)


def test_contour_is_closed_polygon_on_boundary() -> None:
    m = _ellipse((100, 100), 50, 50, 30, 15)
    c = measure.contour(m, 10, 20)
    assert c.shape[1] == 2 and len(c) > 50
    assert np.all(m[(c[:, 1] - 10).astype(int), (c[:, 0] - 20).astype(int)])


def test_refine_recovers_subpixel_size_from_soft_input_grid() -> None:
    """A soft area-fraction map at the coarse grid -> full-res mask of the right size."""
    roi = Roi(0, 0, 576, 384)
    full = _ellipse((384, 576), 190.0, 300.0, 50.0, 27.0)
    soft = resize_area(full.astype(np.float32), 128, 192)
    comp = soft >= 0.5
    scale = input_scale(roi.height, roi.width, 128, 192)
    ref = measure.refine(soft, comp, roi, scale, 0.5)
    assert ref is not None
    major, minor, *_ = measure.ellipse_fit(ref.full((384, 576)), 0.2, 0.2)
    assert minor == pytest.approx(10.8, abs=0.25)
    assert major == pytest.approx(20.0, abs=0.25)


def test_prepare_input_contract() -> None:
    px = np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)
    x = prepare_input(px, Roi(8, 0, 632, 418), 128, 192)
    assert x.shape == (1, 1, 128, 192) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    const = prepare_input(np.full((480, 640), 51, np.uint8), None, 128, 192)
    assert np.allclose(const, 0.2, atol=1e-6)
