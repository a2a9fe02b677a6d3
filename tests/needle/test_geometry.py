"""Needle geometry: distances to the nerve and calcification in mm, the projected path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_service.acquisition.frame import Roi
from edge_service.needle.geometry import measure, trajectory_end
from edge_service.needle.postprocess import direction_from_angle
from edge_service.needle.types import NeedleResult

SHAPE = (200, 300)


def _disk(r0: float, c0: float, rad: float) -> np.ndarray:
    rr, cc = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    return (rr - r0) ** 2 + (cc - c0) ** 2 <= rad**2


def _needle(tip: tuple[float, float], angle: float | None = 30.0) -> NeedleResult:
    return NeedleResult(found=True, tip_px=tip, angle_deg=angle, confidence=0.9, cue="shaft")


def test_tip_distance_to_the_nerve_outline_in_mm() -> None:
    nerve = _disk(100, 150, 20)
    r = measure(_needle((100, 100)), (0.2, 0.2), SHAPE, nerve)
    # tip 50 px left of the centre, outline 20 px from it: 30 px = 6 mm (outline pixel
    # centres lie up to half a pixel inside the true edge)
    assert r.nerve_distance_mm == pytest.approx(6.0, abs=0.15)
    assert r.tip_mm == pytest.approx((20.0, 20.0))
    inside = measure(_needle((100, 145)), (0.2, 0.2), SHAPE, nerve)
    assert inside.nerve_distance_mm is not None and inside.nerve_distance_mm < 0
    assert inside.path_nerve_distance_mm == inside.nerve_distance_mm


def test_anisotropic_spacing_measures_in_mm() -> None:
    nerve = _disk(100, 150, 20)
    r = measure(_needle((40, 150)), (0.1, 0.3), SHAPE, nerve)
    # 40 px above the outline's top (row 80) at 0.3 mm/row
    assert r.nerve_distance_mm == pytest.approx(40 * 0.3, abs=0.2)


def test_projected_path_towards_the_nerve_enters_it() -> None:
    nerve = _disk(120, 200, 15)
    # tip at (62, 100): heading 30 deg down to the right passes through the nerve's centre
    ang = math.degrees(math.atan2(120 - 62, 200 - 100))
    r = measure(_needle((62, 100), ang), (0.2, 0.2), SHAPE, nerve)
    assert r.path_nerve_distance_mm == 0.0
    assert r.nerve_distance_mm is not None and r.nerve_distance_mm > 15 * 0.2
    # the mirror-image path (down to the left) misses it by a wide margin
    away = measure(_needle((62, 100), -ang), (0.2, 0.2), SHAPE, nerve)
    assert away.path_nerve_distance_mm is not None and away.path_nerve_distance_mm > 10.0


def test_trajectory_ends_on_the_image_edge() -> None:
    end = trajectory_end((50.0, 50.0), direction_from_angle(45.0), Roi(0, 0, 300, 200))
    assert end == pytest.approx((199.0, 199.0))
    end2 = trajectory_end((50.0, 50.0), direction_from_angle(-10.0), Roi(10, 0, 300, 200))
    assert end2[1] == pytest.approx(10.0)
    assert end2[0] > 50.0


def test_calcification_distance() -> None:
    calc = np.zeros(SHAPE, bool)
    calc[100:110, 200:250] = True
    r = measure(_needle((90, 220)), (0.25, 0.25), SHAPE, None, calc)
    assert r.calcification_distance_mm == pytest.approx(2.5, abs=0.01)
    assert r.nerve_distance_mm is None  # no nerve found: no distance, not a made-up one


def test_no_spacing_means_no_mm_and_a_reason() -> None:
    nerve = _disk(100, 150, 20)
    r = measure(_needle((100, 100)), None, SHAPE, nerve)
    assert r.found and r.tip_mm is None and r.nerve_distance_mm is None
    assert r.path_nerve_distance_mm is None and r.measure_reason == "no_spacing"
    assert r.trajectory_end_px is not None  # pixels need no spacing
    d = r.to_dict()
    assert d["measure_reason"] == "no_spacing" and d["nerve_distance_mm"] is None


def test_not_found_stays_empty() -> None:
    r = measure(NeedleResult(), (0.2, 0.2), SHAPE, _disk(100, 150, 20))
    assert not r.found and r.tip_mm is None and r.nerve_distance_mm is None
