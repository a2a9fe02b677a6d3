"""Transfer post-processing: nerve size from the epineurium, bone cortex vs calcification,
the per-frame nerve threshold (measure.py / detector.py options in DetectorSettings)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge_service.detector.measure import bright_extent_mm, ellipse_fit, rim_extent
from edge_service.detector.settings import DetectorSettings

DX = 0.2  # mm per pixel


def _nerve_image(a_mm: float, b_mm: float, rim: bool, seed: int = 0) -> np.ndarray:
    """Speckled muscle, a hypoechoic nerve ellipse (semi-axes a x b mm) with a bright rim."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(110, 18, (300, 400)), 0, 255).astype(np.float32)
    c = (200, 150)
    axes = (round(a_mm / DX), round(b_mm / DX))
    cv2.ellipse(img, c, axes, 0, 0, 360, 70, -1)
    if rim:
        cv2.ellipse(img, c, axes, 0, 0, 360, 220, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def _mask(a_mm: float, b_mm: float) -> np.ndarray:
    m = np.zeros((300, 400), np.uint8)
    cv2.ellipse(m, (200, 150), (round(a_mm / DX), round(b_mm / DX)), 0, 0, 360, 1, -1)
    return m > 0


def test_rim_extent_recovers_the_outline_of_an_undersegmented_nerve() -> None:
    img = _nerve_image(8.0, 4.0, rim=True)
    under = _mask(6.5, 3.0)  # the segmentation stops 1-1.5 mm inside the rim
    major, minor, ang, cy, cx = ellipse_fit(under, DX, DX)
    assert minor == pytest.approx(6.0, abs=0.3)
    ap = rim_extent(img, cy, cx, ang + 90.0, minor / 2, DX, DX)
    width = rim_extent(img, cy, cx, ang, major / 2, DX, DX)
    assert ap.found == 2 and width.found == 2
    assert ap.length_mm == pytest.approx(8.0, abs=0.4)
    assert width.length_mm == pytest.approx(16.0, abs=0.4)


def test_rim_extent_keeps_the_mask_edge_without_a_rim() -> None:
    img = _nerve_image(8.0, 4.0, rim=False)
    m = _mask(8.0, 4.0)
    _, minor, ang, cy, cx = ellipse_fit(m, DX, DX)
    ap = rim_extent(img, cy, cx, ang + 90.0, minor / 2, DX, DX)
    assert ap.found == 0
    assert ap.length_mm == pytest.approx(minor)


def test_rim_extent_near_the_frame_edge_falls_back_to_the_mask() -> None:
    img = _nerve_image(8.0, 4.0, rim=True)
    ap = rim_extent(img, 5.0, 200.0, 90.0, 4.0, DX, DX)
    assert ap.found == 0 and ap.length_mm == pytest.approx(8.0)


def _scene(cortex_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Soft tissue with a bright horizontal structure `cortex_mm` long and a shadow under it;
    the candidate mask covers a 6 mm piece of it."""
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(100, 15, (300, 500)), 0, 255).astype(np.float32)
    y, x_mid = 150, 250
    half = round(cortex_mm / 2 / DX)
    img[y : y + 12, x_mid - half : x_mid + half] = 235
    img[y + 12 :, x_mid - half : x_mid + half] = 15  # acoustic shadow
    m = np.zeros(img.shape, bool)
    m[y : y + 12, x_mid - 15 : x_mid + 15] = True
    return np.clip(img, 0, 255).astype(np.uint8), m


def test_bright_extent_tells_a_long_cortex_from_a_focal_calcification() -> None:
    img, m = _scene(cortex_mm=45.0)
    assert bright_extent_mm(img, m, DX, DX) > 30.0
    img, m = _scene(cortex_mm=8.0)
    assert bright_extent_mm(img, m, DX, DX) == pytest.approx(8.0, abs=1.5)


def test_a_calcification_above_a_bony_shelf_stays_focal() -> None:
    """The calcification lies in the ligament band above the shelf: ligament (moderately
    bright) between them, so the calcification's own structure stays ~its length."""
    rng = np.random.default_rng(2)
    img = np.clip(rng.normal(100, 15, (300, 500)), 0, 255).astype(np.float32)
    img[140:160, 100:400] = 150  # ligament band
    img[160:166, 100:400] = 235  # shelf cortex 60 mm long, with its shadow
    img[166:, 100:400] = 15
    img[146:158, 230:270] = 240  # calcification 8 mm x 2.4 mm in the ligament
    m = np.zeros(img.shape, bool)
    m[146:158, 230:270] = True
    ext = bright_extent_mm(np.clip(img, 0, 255).astype(np.uint8), m, DX, DX)
    assert ext < 15.0


def test_post_processing_settings_validate() -> None:
    s = DetectorSettings()
    assert s.nerve_size_from == "mask" and s.calcification_max_extent_mm == 25.0
    assert s.nerve_relative_threshold is None
    DetectorSettings(nerve_size_from="rim", calcification_max_extent_mm=20.0)
    for bad in (
        {"nerve_size_from": "edge"},
        {"calcification_max_extent_mm": 0.0},
        {"nerve_relative_threshold": 1.5},
    ):
        with pytest.raises(ValidationError):
            DetectorSettings(**bad)
