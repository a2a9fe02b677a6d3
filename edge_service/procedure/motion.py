"""Tip motion along the shaft: advancing / withdrawing / stationary, and needle passes.

Progress along the needle is the tip's displacement projected on the shaft direction, summed
frame to frame (`s_mm`), so a redirect (a new angle) keeps counting depth along the current
shaft. Passes use hysteresis on `s_mm`: an advance is `pass_min_mm` of progress from the
last turning point, a withdrawal the same backwards; a redirect is a change of the shaft
angle by `redirect_deg` from the angle of the last advance or redirect.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from edge_service.procedure.settings import ProcedureSettings


def shaft_dir(angle_deg: float) -> tuple[float, float]:
    """Unit vector (depth, lateral) from the entry towards the tip (types.py's sign rule)."""
    a = math.radians(abs(angle_deg))
    return math.sin(a), math.copysign(math.cos(a), angle_deg if angle_deg != 0 else 1.0)


@dataclass
class PassEvent:
    t: float
    kind: str  # advance | withdraw | redirect
    s_mm: float
    angle_deg: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "kind": self.kind,
            "s_mm": round(self.s_mm, 2),
            "angle_deg": None if self.angle_deg is None else round(self.angle_deg, 2),
        }


class TipMotion:
    def __init__(self, s: ProcedureSettings) -> None:
        self.s = s
        self.s_mm = 0.0
        self._hist: deque[tuple[float, float, float, float]] = deque()  # t, s, depth, lateral
        self._last_tip: tuple[float, float] | None = None
        self._phase: str | None = None  # None (not yet advanced) | in | out
        self._lo = 0.0
        self._hi = 0.0
        self._ref_angle: float | None = None
        self.events: list[PassEvent] = []
        self.advances = 0
        self.withdrawals = 0
        self.redirects = 0
        self.travel_mm = 0.0  # path length of the tip since the track began
        # farthest the tip got from where the track began: jitter of a still reflector (a bone
        # edge, the epineurium's bright line) stays small, a needle being moved does not
        self.excursion_mm = 0.0
        self._track_start: tuple[float, float] | None = None
        self.last_moving_t: float | None = None
        self.last_advancing_t: float | None = None

    def reset_track(self) -> None:
        """A different reflector (a jump): forget the motion history, keep the counts."""
        self._hist.clear()
        self._last_tip = None
        self.travel_mm = 0.0
        self.excursion_mm = 0.0
        self._track_start = None

    def add(
        self,
        t: float,
        tip: tuple[float, float],
        angle_deg: float | None,
        direction: tuple[float, float] | None = None,
    ) -> list[PassEvent]:
        """direction: unit (depth, lateral) from the entry towards the tip when the locator
        gives the shaft's visible start (more robust than the angle's sign convention)."""
        ev: list[PassEvent] = []
        u = direction if direction is not None else None
        if u is None and angle_deg is not None:
            u = shaft_dir(angle_deg)
        if self._last_tip is not None and u is not None:
            dd, dl = tip[0] - self._last_tip[0], tip[1] - self._last_tip[1]
            self.s_mm += dd * u[0] + dl * u[1]
            self.travel_mm += math.hypot(dd, dl)
        self._last_tip = tip
        if self._track_start is None:
            self._track_start = tip
        self.excursion_mm = max(self.excursion_mm, math.dist(tip, self._track_start))
        self._hist.append((t, self.s_mm, tip[0], tip[1]))
        while self._hist and t - self._hist[0][0] > self.s.motion_window_s:
            self._hist.popleft()
        ev += self._passes(t, angle_deg)
        m = self.state(t)
        if m in ("advancing", "withdrawing", "moving"):
            self.last_moving_t = t
        if m == "advancing":
            self.last_advancing_t = t
        self.events += ev
        return ev

    def _passes(self, t: float, angle: float | None) -> list[PassEvent]:
        s, p = self.s_mm, self.s
        out: list[PassEvent] = []
        if self._phase is None:
            self._lo = min(self._lo, s)
            if s - self._lo >= p.pass_min_mm:
                self._phase, self._hi = "in", s
                self.advances += 1
                self._ref_angle = angle
                out.append(PassEvent(t, "advance", s, angle))
        elif self._phase == "in":
            self._hi = max(self._hi, s)
            if self._hi - s >= p.pass_min_mm:
                self._phase, self._lo = "out", s
                self.withdrawals += 1
                out.append(PassEvent(t, "withdraw", s, angle))
        else:
            self._lo = min(self._lo, s)
            if s - self._lo >= p.pass_min_mm:
                self._phase, self._hi = "in", s
                self.advances += 1
                out.append(PassEvent(t, "advance", s, angle))
        if angle is not None and self._ref_angle is not None and self._phase is not None:
            if abs(angle - self._ref_angle) >= p.redirect_deg:
                self.redirects += 1
                self._ref_angle = angle
                out.append(PassEvent(t, "redirect", s, angle))
        elif angle is not None and self._phase is not None and self._ref_angle is None:
            self._ref_angle = angle
        return out

    def state(self, t: float) -> str:
        h = self._hist
        if len(h) < 2 or h[-1][0] - h[0][0] < 0.6 * self.s.motion_window_s:
            return "unknown"
        dt = h[-1][0] - h[0][0]
        v = (h[-1][1] - h[0][1]) / dt
        if v >= self.s.advancing_mm_s:
            return "advancing"
        if v <= -self.s.advancing_mm_s:
            return "withdrawing"
        md = sum(x[2] for x in h) / len(h)
        ml = sum(x[3] for x in h) / len(h)
        spread = max(math.hypot(x[2] - md, x[3] - ml) for x in h)
        return "stationary" if spread <= self.s.stationary_mm else "moving"
