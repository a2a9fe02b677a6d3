"""SpreadMeter on synthetic images: a bolus appearing near a still tip."""

from __future__ import annotations

import math

import numpy as np

from edge_service.procedure import ProcedureSettings
from edge_service.procedure.injections import volume_ml
from edge_service.procedure.spread import SpreadMeter

SP = (0.1, 0.1)


def speckle(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 100, size=(400, 400), dtype=np.uint8)


def test_bolus_area_and_volume() -> None:
    base = speckle(1)
    m = SpreadMeter(ProcedureSettings())
    tip = (200.0, 200.0)
    assert m.update(base, SP, tip, True) == (0.0, None)
    img = base.copy()
    yy, xx = np.mgrid[0:400, 0:400]
    r_px = math.sqrt(41.0 / math.pi) / 0.1  # 41 mm2 disc
    img[((yy - 215) ** 2 + (xx - 200) ** 2) <= r_px**2] = 5  # anechoic bolus below the tip
    area, near = m.update(img, SP, tip, True)
    assert area is not None and 35.0 <= area <= 45.0
    assert near is None
    # 41 mm2 changed: a bolus + the ring of tissue it pushed (injections.py): ~0.09 mL
    assert 0.07 <= volume_ml(area) <= 0.11


def test_noise_alone_is_no_spread_and_motion_resets() -> None:
    m = SpreadMeter(ProcedureSettings())
    base = speckle(2)
    m.update(base, SP, (200.0, 200.0), True)
    noisy = np.clip(
        base.astype(int) + np.random.default_rng(3).integers(-8, 9, base.shape), 0, 255
    ).astype(np.uint8)
    area, _ = m.update(noisy, SP, (200.0, 200.0), True)
    assert area is not None and area < 1.0
    assert m.update(noisy, SP, (200.0, 200.0), False) == (None, None)
    assert m.update(noisy, None, (200.0, 200.0), True) == (None, None)


def test_spread_distance_to_the_nerve() -> None:
    base = speckle(4)
    m = SpreadMeter(ProcedureSettings())
    nerve = np.zeros((400, 400), np.uint8)
    nerve[200:260, 280:340] = 1  # nerve 6 mm right of the tip
    m.update(base, SP, (200.0, 200.0), True, nerve)
    img = base.copy()
    img[190:230, 200:275] = 200  # echogenic spread reaching 0.5 mm from the nerve
    area, near = m.update(img, SP, (200.0, 200.0), True, nerve)
    assert area is not None and area > 10
    assert near is not None and near <= 1.0
