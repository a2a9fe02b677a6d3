"""The injectate spread near a stationary tip, measured on the image.

When the tip comes to rest the meter keeps the neighbourhood of the tip (a disc of
spread_radius_mm) as a reference; on each later frame at rest the area whose smoothed echo
changed by more than spread_change grey levels is the spread (a bolus shows first anechoic,
then echogenic: both are changes). Smoothing (a 5x5 box) keeps frame-to-frame speckle noise
from counting. The spread's closest approach to the nerve outline comes from the
detector's nerve mask. Any motion of the tip resets the reference: after a redirect the next
aliquot is measured against the image at its own spot.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_service.procedure.settings import ProcedureSettings


class SpreadMeter:
    def __init__(self, s: ProcedureSettings) -> None:
        self.s = s
        self._ref: np.ndarray | None = None
        self._box: tuple[int, int, int, int] | None = None  # y0, y1, x0, x1
        self._disc: np.ndarray | None = None

    def reset(self) -> None:
        self._ref = None
        self._box = None

    def update(
        self,
        pixels: np.ndarray,
        spacing_mm: tuple[float, float] | None,
        tip_px: tuple[float, float] | None,
        stationary: bool,
        nerve_mask: np.ndarray | None = None,
    ) -> tuple[float | None, float | None]:
        """(spread area mm2, spread-to-nerve mm); (None, None) when not measurable."""
        if not stationary or tip_px is None or spacing_mm is None:
            self.reset()
            return None, None
        dx, dy = spacing_mm
        h, w = pixels.shape
        if self._ref is None or self._box is None or self._disc is None:
            ry = max(2, math.ceil(self.s.spread_radius_mm / dy))
            rx = max(2, math.ceil(self.s.spread_radius_mm / dx))
            cy, cx = round(tip_px[0]), round(tip_px[1])
            y0, y1, x0, x1 = (
                max(0, cy - ry),
                min(h, cy + ry + 1),
                max(0, cx - rx),
                min(w, cx + rx + 1),
            )
            if y1 - y0 < 3 or x1 - x0 < 3:
                return None, None
            self._box = (y0, y1, x0, x1)
            self._ref = self._smooth(pixels[y0:y1, x0:x1])
            self._disc = self._make_disc(
                cy - y0, cx - x0, y1 - y0, x1 - x0, dx, dy, self.s.spread_radius_mm
            )
            return 0.0, None
        y0, y1, x0, x1 = self._box
        cur = self._smooth(pixels[y0:y1, x0:x1])
        changed = (np.abs(cur - self._ref) > self.s.spread_change) & self._disc
        n = int(changed.sum())
        area = n * dx * dy
        if n == 0 or nerve_mask is None or not np.any(nerve_mask):
            return area, None
        outside = (np.asarray(nerve_mask) == 0).astype(np.uint8)
        # mm distance of every pixel to the nerve outline (anisotropic spacing: use the
        # mean pixel size; spacing is near-isotropic on B-mode scan converters)
        dist = cv2.distanceTransform(outside, cv2.DIST_L2, 3)[y0:y1, x0:x1]
        near = float(dist[changed].min()) * 0.5 * (dx + dy)
        return area, near

    @staticmethod
    def _smooth(a: np.ndarray) -> np.ndarray:
        return cv2.blur(a.astype(np.float32), (5, 5))

    @staticmethod
    def _make_disc(
        cy: int, cx: int, hh: int, ww: int, dx: float, dy: float, rad_mm: float
    ) -> np.ndarray:
        yy, xx = np.mgrid[0:hh, 0:ww]
        return (((yy - cy) * dy) ** 2 + ((xx - cx) * dx) ** 2) <= rad_mm**2
