"""Guided exam steps (case report 2.3) recognised live from the clip's hip angles.

The exam of one side: neutral rest >= 3 s, FAIR twice, seated piriformis stretch. A step is
shown done when the angles show it was performed; it is never inferred without angles.

Incremental rules (same thresholds as the offline manoeuvre labelling, `ManoeuvreSettings`):
an episode starts when internal rotation or adduction leaves rest (> active_deg) and ends
when both are back; it is FAIR when the hip gained >= fair_min_flexion_gain_deg of flexion
during it from a lying start, piriformis when the hip was already flexed (seated) at its
start; both need min_ir_deg of internal rotation and some adduction. Rest is a stretch with
internal rotation and adduction within active_deg and flexion steady (range < active_deg)
while lying (flexion below the seated threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge_service.analysis.settings import ManoeuvreSettings

REST_S = 3.0
FAIR_REPS = 2


@dataclass
class _Episode:
    start_t: float
    start_flex: float
    peak_flex: float
    peak_add: float
    peak_ir: float


class GuidedSteps:
    def __init__(self, settings: ManoeuvreSettings | None = None) -> None:
        self.s = settings or ManoeuvreSettings()
        self.rest_s = 0.0
        self.fair = 0
        self.piriformis = 0
        self.other = 0
        self._rest_t0: float | None = None
        self._rest_flex = (0.0, 0.0)
        self._ep: _Episode | None = None
        self._last_t: float | None = None

    def add(self, t: float, angles: Sequence[float]) -> None:
        flex, add, ir = (float(a) for a in angles)
        s = self.s
        if self._last_t is not None and t - self._last_t > 1.0:
            self._rest_t0 = None  # a gap in the angles breaks a rest stretch
        self._last_t = t
        quiet = abs(ir) < s.active_deg and abs(add) < s.active_deg
        if self._ep is None:
            if not quiet:
                self._ep = _Episode(t, flex, flex, add, ir)
                self._rest_t0 = None
                return
            lying = flex < s.seated_min_flexion_deg
            if self._rest_t0 is None or not lying:
                self._rest_t0 = t if lying else None
                self._rest_flex = (flex, flex)
            else:
                lo, hi = min(self._rest_flex[0], flex), max(self._rest_flex[1], flex)
                if hi - lo >= s.active_deg:  # moving in flexion: not at rest
                    self._rest_t0, lo, hi = t, flex, flex
                self._rest_flex = (lo, hi)
                self.rest_s = max(self.rest_s, t - self._rest_t0)
            return
        ep = self._ep
        ep.peak_flex = max(ep.peak_flex, flex)
        ep.peak_add = max(ep.peak_add, add)
        ep.peak_ir = max(ep.peak_ir, ir)
        if quiet:
            self._ep = None
            self._classify(ep)

    def _classify(self, ep: _Episode) -> None:
        s = self.s
        provocative = ep.peak_ir >= s.min_ir_deg
        if provocative and ep.start_flex >= s.seated_min_flexion_deg:
            if ep.peak_add >= s.piriformis_min_adduction_deg:
                self.piriformis += 1
                return
        elif (
            provocative
            and ep.peak_flex - ep.start_flex >= s.fair_min_flexion_gain_deg
            and ep.peak_add >= s.fair_min_adduction_deg
        ):
            self.fair += 1
            return
        self.other += 1

    @property
    def current(self) -> str | None:
        return None if self._ep is None else "moving"

    def to_list(self) -> list[dict[str, Any]]:
        return [
            {
                "step": "neutral_rest",
                "label": f"Neutral rest ≥ {REST_S:g} s",
                "done": self.rest_s >= REST_S,
                "progress": f"{min(self.rest_s, REST_S):.1f} / {REST_S:g} s",
            },
            {
                "step": "fair",
                "label": f"FAIR × {FAIR_REPS}",
                "done": self.fair >= FAIR_REPS,
                "progress": f"{min(self.fair, FAIR_REPS)} / {FAIR_REPS}",
            },
            {
                "step": "piriformis",
                "label": "Seated piriformis stretch",
                "done": self.piriformis >= 1,
                "progress": f"{min(self.piriformis, 1)} / 1",
            },
        ]
