"""Scripted hip motion shared by the virtual clip, the phantom and the tests.

One source of truth for "what the hip did": the virtual clip turns it into IMU samples,
the phantom turns it into nerve gliding, and analysis tests compare against it.
Angles follow the design's ISB convention: degrees, positive = flexion, adduction,
internal rotation, on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Manoeuvre = Literal["fair", "piriformis", "neutral", "calibration"]

# Peak targets from the clinical description (FAIR: flexion ~60-90 deg, adduction,
# internal rotation up to ~40 deg; seated piriformis stretch: flexed hip ~90 deg,
# maximal passive IR + adduction).
FAIR_PEAK = (75.0, 15.0, 35.0)
PIRIFORMIS_PEAK = (90.0, 20.0, 40.0)
SEATED_BASE = (90.0, 0.0, 0.0)


@dataclass(frozen=True)
class Segment:
    """Move from the previous pose to `pose` over `duration_s` with a cosine ramp."""

    duration_s: float
    pose: tuple[float, float, float]
    label: str


def _smooth(u: np.ndarray) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(u, 0.0, 1.0))


@dataclass(frozen=True)
class HipMotion:
    """A piecewise-smooth hip trajectory: a start pose plus ramped segments."""

    start: tuple[float, float, float]
    segments: tuple[Segment, ...]

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.segments)

    def angles(self, t: np.ndarray | float) -> np.ndarray:
        """Angles (N, 3) [flexion, adduction, rotation] in degrees at times t (s from start)."""
        tt = np.atleast_1d(np.asarray(t, dtype=float))
        out = np.empty((tt.size, 3))
        out[:] = self.start
        t0 = 0.0
        prev = np.asarray(self.start, dtype=float)
        for seg in self.segments:
            pose = np.asarray(seg.pose, dtype=float)
            u = (tt - t0) / seg.duration_s
            active = tt >= t0
            out[active] = prev + (pose - prev) * _smooth(u[active])[:, None]
            t0 += seg.duration_s
            prev = pose
        return out

    def labels(self, t: np.ndarray | float) -> list[str]:
        """The segment label active at each time (the ground truth of manoeuvre detection)."""
        tt = np.atleast_1d(np.asarray(t, dtype=float))
        bounds = np.cumsum([s.duration_s for s in self.segments])
        idx = np.minimum(np.searchsorted(bounds, tt, side="right"), len(self.segments) - 1)
        return [self.segments[i].label for i in idx]

    def sample(self, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """(t, angles) sampled at rate_hz over the whole motion."""
        n = math.floor(self.duration_s * rate_hz + 1e-9) + 1
        t = np.arange(n) / rate_hz
        return t, self.angles(t)


def manoeuvre(kind: Manoeuvre, repetitions: int = 2, hold_s: float = 3.0) -> HipMotion:
    """The scripted hip motion of a session recording.

    fair: supine/side-lying neutral, then repeated passive flexion + adduction + internal
        rotation to FAIR_PEAK, held, and released.
    piriformis: seated (hip flexed 90 deg), repeated maximal IR + adduction, held, released.
    neutral: 10 s at rest.
    calibration: the clip calibration the clinician performs: 3 s still in neutral, then
        4 slow leg swings of +-30 deg (the first movement is flexion), then still.
    """
    neutral = (0.0, 0.0, 0.0)
    segs: list[Segment] = []
    if kind == "fair":
        segs.append(Segment(4.0, neutral, "neutral"))
        for _ in range(repetitions):
            segs += [
                Segment(4.0, FAIR_PEAK, "fair"),
                Segment(hold_s, FAIR_PEAK, "fair"),
                Segment(4.0, neutral, "fair"),
                Segment(3.0, neutral, "neutral"),
            ]
        return HipMotion(neutral, tuple(segs))
    if kind == "piriformis":
        segs.append(Segment(4.0, SEATED_BASE, "neutral"))
        for _ in range(repetitions):
            segs += [
                Segment(4.0, PIRIFORMIS_PEAK, "piriformis"),
                Segment(hold_s, PIRIFORMIS_PEAK, "piriformis"),
                Segment(4.0, SEATED_BASE, "piriformis"),
                Segment(3.0, SEATED_BASE, "neutral"),
            ]
        return HipMotion(SEATED_BASE, tuple(segs))
    if kind == "neutral":
        return HipMotion(neutral, (Segment(10.0, neutral, "neutral"),))
    if kind == "calibration":
        segs.append(Segment(3.0, neutral, "still"))
        for _ in range(4):
            segs += [
                Segment(1.5, (30.0, 0.0, 0.0), "swing"),
                Segment(3.0, (-30.0, 0.0, 0.0), "swing"),
                Segment(1.5, neutral, "swing"),
            ]
        segs.append(Segment(2.0, neutral, "still"))
        return HipMotion(neutral, tuple(segs))
    raise ValueError(f"unknown manoeuvre {kind!r}; expected fair, piriformis, neutral, calibration")
