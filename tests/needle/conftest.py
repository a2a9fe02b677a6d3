"""Shared phantom needle frames (rendered once per test session: rendering is the cost)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_service.phantom import PhantomConfig, PhantomFrame, PhantomSimulator
from edge_service.phantom.needle import Keyframe, NeedleConfig, NeedlePlan, NeedleScene


def inplane_frames(
    n: int = 6, angle: float = 30.0, elev: float = 0.0, seed: int = 5, fps: float = 10.0
) -> list[PhantomFrame]:
    """A needle advancing in plane at `angle` (visible shaft unless elev is large)."""
    sim = PhantomSimulator(PhantomConfig(calcification=True), seed)
    lat = sim.anatomy.lat
    tgt = (sim.anatomy.nerve.cx - lat * 18.0, 32.0)
    a = math.radians(angle)
    entry = (tgt[0] + lat * tgt[1] / math.tan(a), 0.0)
    total = tgt[1] / math.sin(a)
    plan = NeedlePlan(
        entry,
        [Keyframe(0.0, total - 6.0, angle, elev, elev), Keyframe(2.0, total, angle, elev, elev)],
    )
    sim.overlays.append(
        NeedleScene(sim, plan, NeedleConfig(gauge=23, specular_width_deg=35.0, diffuse=0.4))
    )
    return [sim.render(np.zeros(3), i / fps, i, 1.7e9 + i / fps) for i in range(n)]


@pytest.fixture(scope="session")
def inplane() -> list[PhantomFrame]:
    return inplane_frames()
