"""`NeedleGuide`: the needle per frame as the appliance reports it: a locator (learned by
default, classical as the fallback/peer), the nerve detector's view gate, and the geometry
against the same frame's nerve and calcification."""

from __future__ import annotations

import logging

from edge_service.acquisition.frame import Frame
from edge_service.needle.geometry import measure
from edge_service.needle.types import NeedleLocator, NeedleResult

log = logging.getLogger(__name__)

LOCATORS = ("learned", "classical")


def make_locator(kind: str = "learned", threads: int = 1) -> NeedleLocator:
    if kind == "learned":
        from edge_service.needle.learned import LearnedLocator

        return LearnedLocator(threads=threads)
    if kind == "classical":
        from edge_service.needle.classical import ClassicalLocator

        return ClassicalLocator()
    raise ValueError(f"needle locator must be one of {LOCATORS}, got {kind!r}")


class NeedleGuide:
    """Locate + gate + measure. `reset()` per session, `analyse()` per frame in order."""

    def __init__(self, locator: NeedleLocator) -> None:
        self.locator = locator
        self.last_raw = NeedleResult()  # the locator's own answer for the last frame

    def reset(self) -> None:
        self.locator.reset()

    def analyse(self, frame: Frame, det: object | None = None) -> NeedleResult:
        """The needle in `frame`, given the same frame's `Detection` (or None: no nerve
        distances). A frame the view gate refuses reports no needle: the locator still sees
        it, so its motion history stays continuous."""
        res = self.locator.locate(frame)
        self.last_raw = res
        if det is not None and not getattr(det, "view_ok", True):
            return NeedleResult()
        nerve = getattr(det, "nerve", None)
        calc = getattr(det, "calcification", None)
        nerve_mask = nerve.mask if nerve is not None and nerve.found else None
        calc_mask = calc.mask if calc is not None and calc.present else None
        return measure(
            res, frame.spacing_mm, frame.pixels.shape, nerve_mask, calc_mask, frame.region
        )
