"""A needle "locator" that reads the phantom's truth (truth.json of a recorded needle
session): isolates the procedure logic from locator error in tests that are about the
logic and the plumbing. Tests about the shipped locator use `default_locator_factory()`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edge_service.acquisition.frame import Frame
from edge_service.needle.types import NeedleResult


class TruthLocator:
    name = "phantom-truth"

    def __init__(self, truth: dict[str, Any] | Path) -> None:
        if isinstance(truth, Path):
            truth = json.loads((truth / "truth.json").read_text())
        self.frames = truth["frames"]

    def reset(self) -> None:
        pass

    def locate(self, frame: Frame) -> NeedleResult:
        f = self.frames[frame.index % len(self.frames)]
        n = f.get("needle") or {}
        if not n.get("present") or not n.get("tip_in_image") or n.get("tip_visibility", 0) < 0.2:
            return NeedleResult()
        vis = float(n.get("visible_fraction", 0.0))
        dr, dc = n["direction"]
        angle = math.degrees(math.atan2(dr, abs(dc))) * (1 if dc >= 0 else -1)
        return NeedleResult(
            found=True,
            tip_px=(n["tip_px"][0], n["tip_px"][1]),
            angle_deg=angle,
            shaft_start_px=None if n.get("shaft_start_px") is None else tuple(n["shaft_start_px"]),  # type: ignore[arg-type]
            shaft_visible_fraction=vis,
            confidence=1.0,
            cue="shaft" if vis >= 0.3 else "motion",
        )
