"""Scripted needle procedures as NeedleResult sequences (truth geometry: circles in mm)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge_service.needle.types import NeedleResult
from edge_service.procedure.motion import shaft_dir
from edge_service.procedure.observation import Observation

FPS = 30.0


@dataclass
class Scene:
    nerve_c: tuple[float, float] = (50.0, 70.0)
    nerve_r: float = 6.0
    calc_c: tuple[float, float] = (40.0, 50.0)
    calc_r: float = 3.0


def ray_circle(tip: tuple[float, float], angle: float, c: tuple[float, float], rad: float) -> float:
    u = shaft_dir(angle)
    v = (c[0] - tip[0], c[1] - tip[1])
    along = v[0] * u[0] + v[1] * u[1]
    if along <= 0:
        return math.dist(tip, c) - rad
    perp = abs(v[0] * u[1] - v[1] * u[0])
    return perp - rad


def needle(
    tip: tuple[float, float],
    angle: float,
    sc: Scene,
    *,
    cue: str = "shaft",
    frac: float = 0.9,
    conf: float = 0.9,
) -> NeedleResult:
    return NeedleResult(
        found=True,
        tip_px=(tip[0] * 10, tip[1] * 10),
        tip_mm=tip,
        angle_deg=angle,
        shaft_visible_fraction=frac,
        confidence=conf,
        cue=cue,
        nerve_distance_mm=math.dist(tip, sc.nerve_c) - sc.nerve_r,
        path_nerve_distance_mm=ray_circle(tip, angle, sc.nerve_c, sc.nerve_r),
        calcification_distance_mm=math.dist(tip, sc.calc_c) - sc.calc_r,
    )


@dataclass
class Script:
    sc: Scene = field(default_factory=Scene)
    t: float = 1000.0
    i: int = 0
    obs: list[Observation] = field(default_factory=list)
    tip: tuple[float, float] = (10.0, 5.0)
    angle: float = 30.0

    def _emit(self, n: NeedleResult, **kw: object) -> None:
        calc_off = None
        if n.tip_mm is not None:
            calc_off = (n.tip_mm[0] - self.sc.calc_c[0], n.tip_mm[1] - self.sc.calc_c[1])
        o = Observation(
            t=self.t, index=self.i, needle=n, nerve_found=True, calc_present=True,
            calc_offset_mm=calc_off,
        )  # fmt: skip
        for k, v in kw.items():
            setattr(o, k, v)
        self.obs.append(o)
        self.t += 1 / FPS
        self.i += 1

    def move_to(self, target: tuple[float, float], speed_mm_s: float = 8.0, **kw: object) -> None:
        d = math.dist(self.tip, target)
        n = max(1, int(d / speed_mm_s * FPS))
        p0 = self.tip
        for k in range(1, n + 1):
            f = k / n
            self.tip = (p0[0] + (target[0] - p0[0]) * f, p0[1] + (target[1] - p0[1]) * f)
            self._emit(needle(self.tip, self.angle, self.sc, **kw))  # type: ignore[arg-type]

    def advance(self, mm: float, speed_mm_s: float = 8.0, **kw: object) -> None:
        u = shaft_dir(self.angle)
        self.move_to((self.tip[0] + u[0] * mm, self.tip[1] + u[1] * mm), speed_mm_s, **kw)

    def hold(
        self,
        s: float,
        spread_to_mm2: float = 0.0,
        inject_after_s: float = 0.6,
        spread_nerve_mm: float | None = None,
        **kw: object,
    ) -> None:
        n = int(s * FPS)
        n0 = int(inject_after_s * FPS)
        for k in range(n):
            area = None
            if spread_to_mm2 > 0 and k >= n0:
                area = spread_to_mm2 * min(1.0, (k - n0 + 1) / (3.0 * FPS))  # grows over 3 s
            extra: dict[str, object] = {}
            if area is not None:
                extra["spread_mm2"] = area
                extra["spread_nerve_mm"] = spread_nerve_mm
            else:
                extra["spread_mm2"] = 0.0
            self._emit(needle(self.tip, self.angle, self.sc, **kw), **extra)  # type: ignore[arg-type]

    def lost(self, s: float) -> None:
        for _ in range(int(s * FPS)):
            self._emit(NeedleResult())

    def aim_at(self, c: tuple[float, float]) -> None:
        self.angle = math.degrees(math.atan2(c[0] - self.tip[0], c[1] - self.tip[1]))
