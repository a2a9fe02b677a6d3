"""The needle contract shared by the detector, the procedure logic, the workstation and
`dgs-edge detect --json` (whose per-frame `needle` object is `NeedleResult.to_dict()`).

Coordinates: pixels are (row, col) in the full frame (the contract of `detect --json`), mm
are (depth, lateral) from the frame's top-left using the frame's spacing; angles are the
shaft's angle from the image horizontal in degrees, 0-90, the sign saying which way it
descends (positive: the tip is deeper and to the right of the entry, i.e. lateral-to-medial
on a right-side scan drawn with lateral on the left).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from edge_service.acquisition.frame import Frame

Px = tuple[float, float]  # (row, col)


def _r(v: float | None, nd: int = 3) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), nd)


def _rp(p: Px | None, nd: int = 2) -> list[float | None] | None:
    return None if p is None else [_r(p[0], nd), _r(p[1], nd)]


@dataclass
class NeedleResult:
    """The needle in one frame. When found is False every other field is None (or 0)."""

    found: bool = False
    tip_px: Px | None = None
    tip_mm: tuple[float, float] | None = None  # (depth, lateral) mm; None without spacing
    angle_deg: float | None = None
    shaft_start_px: Px | None = None  # visible end nearest the skin entry
    shaft_visible_fraction: float | None = None  # 0..1 of the expected in-plane shaft seen
    confidence: float = 0.0
    # "shaft": tip at the end of a visible shaft; "motion": tip found by its motion only
    # (shaft faint or out of plane); None when not found.
    cue: str | None = None
    trajectory_end_px: Px | None = None  # projected path from the tip to the image edge
    nerve_distance_mm: float | None = None  # tip to epineurium (nerve outline); <= 0: inside
    path_nerve_distance_mm: float | None = None  # projected path's closest approach ahead
    calcification_distance_mm: float | None = None  # tip to the calcification outline
    measure_reason: str | None = None  # why mm values are None although found

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "tip_px": _rp(self.tip_px),
            "tip_mm": None if self.tip_mm is None else [_r(v) for v in self.tip_mm],
            "angle_deg": _r(self.angle_deg, 2),
            "shaft_start_px": _rp(self.shaft_start_px),
            "shaft_visible_fraction": _r(self.shaft_visible_fraction),
            "confidence": _r(self.confidence, 4),
            "cue": self.cue,
            "trajectory_end_px": _rp(self.trajectory_end_px),
            "nerve_distance_mm": _r(self.nerve_distance_mm),
            "path_nerve_distance_mm": _r(self.path_nerve_distance_mm),
            "calcification_distance_mm": _r(self.calcification_distance_mm),
            "measure_reason": self.measure_reason,
        }


class NeedleLocator(Protocol):
    """Finds the needle in a stream of frames. Stateful (a short history for motion cues):
    call `reset()` at the start of each session, then `locate()` once per frame in order.
    Distances to the nerve/calcification are filled by the caller's geometry step from the
    same frame's `Detection` (edge_service.needle.geometry), not by the locator."""

    name: str

    def reset(self) -> None: ...

    def locate(self, frame: Frame) -> NeedleResult: ...
