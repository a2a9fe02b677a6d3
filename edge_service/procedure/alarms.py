"""The alarm book: raise on the first frame a condition holds (no debounce: latency is
safety), clear with hysteresis, keep every alarm with its timing for the result.

Kinds (each says what it is; level in brackets):
- nerve_stop [stop]: tip within stop_mm of the epineurium, or inside the nerve outline.
- nerve_caution [caution]: tip within caution_mm of the epineurium.
- path_caution [caution]: the projected path passes within caution_mm while advancing.
- needle_lost [stop]: the tip was advancing and has been unseen for lost_after_s.
- probe_frozen [caution]: the image has not changed for frozen_after_s; guidance suspended.
- nerve_not_seen [caution]: a needle is in view but no nerve: its distance is unknown.
- spread_at_nerve [stop]: the injectate spread reaches the epineurium.
"""

from __future__ import annotations

from edge_service.procedure.observation import LEVELS, Alarm

KIND_LEVEL = {
    "nerve_stop": "stop",
    "nerve_caution": "caution",
    "path_caution": "caution",
    "needle_lost": "stop",
    "probe_frozen": "caution",
    "nerve_not_seen": "caution",
    "spread_at_nerve": "stop",
}


class AlarmBook:
    def __init__(self) -> None:
        self.active: dict[str, Alarm] = {}
        self.history: list[Alarm] = []

    def update(
        self, t: float, frame: int, wanted: dict[str, tuple[str, float | None]], keep: set[str]
    ) -> tuple[list[Alarm], list[Alarm]]:
        """wanted: kind -> (message, value) for the conditions that hold this frame; keep:
        active kinds inside their hysteresis band (not raised anew, not cleared)."""
        raised: list[Alarm] = []
        cleared: list[Alarm] = []
        for kind, (msg, val) in wanted.items():
            a = self.active.get(kind)
            if a is None:
                a = Alarm(kind, KIND_LEVEL[kind], msg, t, frame, val)
                self.active[kind] = a
                self.history.append(a)
                raised.append(a)
            else:
                # the message stays what raised it; value_mm follows the closest approach
                if val is not None and (a.value_mm is None or val < a.value_mm):
                    a.value_mm = val
        for kind in list(self.active):
            if kind not in wanted and kind not in keep:
                a = self.active.pop(kind)
                a.t_cleared = t
                cleared.append(a)
        return raised, cleared

    def close(self, t: float) -> None:
        for a in self.active.values():
            a.t_cleared = t
        self.active.clear()

    def level(self) -> str:
        best = "none"
        for a in self.active.values():
            if best == "none" or LEVELS.index(a.level) > LEVELS.index(best):
                best = a.level
        return best
