"""What the procedure logic reads per frame (`Observation`) and what it says (`FrameState`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edge_service.needle.types import NeedleResult

LEVELS = ("info", "caution", "stop")


def r(v: float | None, nd: int = 2) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), nd)


@dataclass
class Observation:
    """One analysed frame, as the procedure logic sees it.

    calc_offset_mm: tip minus the calcification's centre, (depth, lateral) mm, when both are
    known. spread_mm2: echo-changed area near the tip since the tip stopped (SpreadMeter);
    spread_nerve_mm: the changed area's closest approach to the nerve outline.
    frozen: the image is identical to the previous one (probe frozen)."""

    t: float
    index: int
    needle: NeedleResult
    nerve_found: bool = False
    calc_present: bool = False
    frozen: bool = False
    calc_offset_mm: tuple[float, float] | None = None
    spread_mm2: float | None = None
    spread_nerve_mm: float | None = None


@dataclass
class Alarm:
    kind: str
    level: str
    message: str
    t_raised: float
    frame: int
    value_mm: float | None = None  # the distance that raised it (closest while active)
    t_cleared: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level": self.level,
            "message": self.message,
            "t_raised": self.t_raised,
            "t_cleared": self.t_cleared,
            "duration_s": None if self.t_cleared is None else r(self.t_cleared - self.t_raised, 3),
            "frame": self.frame,
            "value_mm": r(self.value_mm),
        }


@dataclass
class FrameState:
    """The procedure state after one frame: what the page and the MQTT alarm events show."""

    t: float
    index: int
    needle_found: bool
    motion: str  # advancing | withdrawing | stationary | moving | unknown | lost
    tip_mm: tuple[float, float] | None
    nerve_distance_mm: float | None
    path_nerve_distance_mm: float | None
    calcification_distance_mm: float | None
    on_target: bool
    on_target_reason: str  # why not (or "on target")
    alarms: list[Alarm]
    level: str  # highest active level: none | info | caution | stop
    raised: list[Alarm] = field(default_factory=list)
    cleared: list[Alarm] = field(default_factory=list)
    injecting: bool = False
    injections: int = 0
    volume_ml: float = 0.0
    passes: int = 0
    redirects: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "frame": self.index,
            "needle_found": self.needle_found,
            "motion": self.motion,
            "tip_mm": None if self.tip_mm is None else [r(v) for v in self.tip_mm],
            "nerve_distance_mm": r(self.nerve_distance_mm),
            "path_nerve_distance_mm": r(self.path_nerve_distance_mm),
            "calcification_distance_mm": r(self.calcification_distance_mm),
            "on_target": self.on_target,
            "on_target_reason": self.on_target_reason,
            "level": self.level,
            "alarms": [a.to_dict() for a in self.alarms],
            "injecting": self.injecting,
            "injections": self.injections,
            "volume_ml": r(self.volume_ml, 3),
            "passes": self.passes,
            "redirects": self.redirects,
        }
