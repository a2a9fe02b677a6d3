"""Confirmation of a needle over time: a tip is reported only once it behaves like a needle.

A needle enters through the skin and moves; a fascia or bone edge, or a bright speckle
patch, does not. A candidate tip (consecutive detections, each within CANDIDATE_STEP_MM of
the previous) is confirmed when it has moved at least CONFIRM_MOVE_MM from where it was
first seen, or when its fitted shaft reaches the edge of the image (the skin side) on
CONFIRM_EDGE_FRAMES consecutive frames. A confirmed needle stays reported while it is
detected within JUMP_MM of its last position, also when it stands still (injection, frozen
probe); a detection elsewhere is a new candidate; a needle missed on LOST_FRAMES frames in
a row is dropped (frames, not seconds: image folders and some grabbers carry no usable
timing).
"""

from __future__ import annotations

import math

CANDIDATE_STEP_MM = 3.0
CONFIRM_MOVE_MM = 1.5
CONFIRM_EDGE_FRAMES = 3
JUMP_MM = 5.0
LOST_FRAMES = 6  # frames without the needle before it is dropped (0.2-0.75 s at 8-30 fps)
DEFAULT_PX_MM = 0.2  # only to scale the rules when a source has no spacing


class TipConfirm:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.confirmed: tuple[float, float, float] | None = None  # (t, row, col)
        self.cand: list[tuple[float, float, float]] = []
        self.edge_run = 0
        self.miss_confirmed = 0
        self.miss_cand = 0

    def near_confirmed(self, tip: tuple[float, float], px_mm: float | None) -> bool:
        if self.confirmed is None:
            return False
        mm = px_mm or DEFAULT_PX_MM
        return math.hypot(tip[0] - self.confirmed[1], tip[1] - self.confirmed[2]) * mm <= JUMP_MM

    def update(
        self,
        t: float,
        tip: tuple[float, float] | None,
        reaches_edge: bool,
        px_mm: float | None,
    ) -> bool:
        """Feed one frame's raw detection; True when it is to be reported."""
        mm = px_mm or DEFAULT_PX_MM
        if tip is not None and self.near_confirmed(tip, px_mm):
            self.confirmed = (t, tip[0], tip[1])
            self.miss_confirmed = 0
            self.cand, self.edge_run, self.miss_cand = [], 0, 0
            return True
        self.miss_confirmed += 1
        if self.miss_confirmed > LOST_FRAMES:
            self.confirmed = None
        if tip is None:
            self.miss_cand += 1
            if self.miss_cand > LOST_FRAMES:
                self.cand, self.edge_run = [], 0
            return False
        self.miss_cand = 0
        r, c = tip
        if self.cand and math.hypot(r - self.cand[-1][1], c - self.cand[-1][2]) * mm > (
            CANDIDATE_STEP_MM
        ):
            self.cand, self.edge_run = [], 0
        self.cand.append((t, r, c))
        del self.cand[:-64]
        self.edge_run = self.edge_run + 1 if reaches_edge else 0
        _, r0, c0 = self.cand[0]
        moved = len(self.cand) >= 3 and math.hypot(r - r0, c - c0) * mm >= CONFIRM_MOVE_MM
        if moved or self.edge_run >= CONFIRM_EDGE_FRAMES:
            self.confirmed = (t, r, c)
            self.miss_confirmed = 0
            self.cand, self.edge_run = [], 0
            return True
        return False
