"""Classical peer (ridge filter + Hough/RANSAC): finds a visible in-plane shaft, nothing on
frames without structure."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from edge_service.needle.classical import ClassicalLocator
from edge_service.phantom import PhantomFrame


def test_visible_in_plane_needle_tip_and_angle(inplane: list[PhantomFrame]) -> None:
    loc = ClassicalLocator()
    pf = inplane[-1]
    res = loc.locate(pf.frame)
    nd = pf.truth["needle"]
    assert res.found and res.tip_px is not None and res.angle_deg is not None
    err = math.hypot(res.tip_px[0] - nd["tip_px"][0], res.tip_px[1] - nd["tip_px"][1])
    assert err * pf.frame.spacing_mm[0] < 2.0, err
    assert abs(res.angle_deg - nd["angle_deg"]) < 3.0
    assert res.cue == "shaft"


def test_blank_and_noise_frames_have_no_needle(inplane: list[PhantomFrame]) -> None:
    loc = ClassicalLocator()
    f = inplane[0].frame
    blank = dataclasses.replace(f, pixels=np.zeros_like(f.pixels))
    rng = np.random.default_rng(0)
    noise = dataclasses.replace(f, pixels=rng.integers(0, 256, f.pixels.shape, dtype=np.uint8))
    assert not loc.locate(blank).found
    assert not loc.locate(noise).found
