"""Curvilinear probe geometry: the fan, the pixel spacing and the scan-conversion maps.

Coordinates: x lateral (mm, 0 on the probe axis), y depth (mm, 0 at the skin on the axis).
The virtual apex of the curved array sits at (0, -radius). Echo lines are simulated on a
polar (range, angle) grid - the way a scanner acquires them - and scan-converted to the
Cartesian display with precomputed cv2.remap maps, so the fan, its pixel spacing and the
depth-dependent line density are all those of a real curvilinear probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_service.acquisition.frame import Roi


@dataclass
class FanGeometry:
    radius_mm: float
    depth_mm: float
    half_angle_rad: float
    width_px: int
    height_px: int
    n_lines: int
    n_samples: int

    def __post_init__(self) -> None:
        r, d, th = self.radius_mm, self.depth_mm, self.half_angle_rad
        self.y_top_mm = r * (math.cos(th) - 1.0)  # the fan's upper corners are above y=0
        width_mm = 2.0 * (r + d) * math.sin(th)
        height_mm = d - self.y_top_mm
        # Square pixels, the whole fan visible with a 2 % margin.
        self.spacing_mm = 1.02 * max(width_mm / self.width_px, height_mm / self.height_px)
        self.cx_px = (self.width_px - 1) / 2.0
        self.dr_mm = d / self.n_samples
        self.dtheta = 2.0 * th / self.n_lines
        self._build_maps()

    # -- coordinate transforms ------------------------------------------------------------
    def mm_to_px(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x / self.spacing_mm + self.cx_px, (y - self.y_top_mm) / self.spacing_mm

    def px_to_mm(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (col - self.cx_px) * self.spacing_mm, row * self.spacing_mm + self.y_top_mm

    def mm_to_polar(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sample index, line index) as floats for points in mm."""
        yy = y + self.radius_mm
        r = np.hypot(x, yy)
        theta = np.arctan2(x, yy)
        return (r - self.radius_mm) / self.dr_mm, (theta + self.half_angle_rad) / self.dtheta

    def _build_maps(self) -> None:
        rows, cols = np.mgrid[0 : self.height_px, 0 : self.width_px].astype(np.float32)
        x, y = self.px_to_mm(cols, rows)
        s, line = self.mm_to_polar(x, y)
        self.fan_mask = (
            (s >= 0) & (s <= self.n_samples - 1) & (line >= 0) & (line <= self.n_lines - 1)
        )
        # cv2.remap: display pixel <- polar grid (x = line, y = sample)
        self.polar_to_cart = (line.astype(np.float32), s.astype(np.float32))
        si, li = np.mgrid[0 : self.n_samples, 0 : self.n_lines].astype(np.float32)
        r = self.radius_mm + si * self.dr_mm
        th = li * self.dtheta - self.half_angle_rad
        px, py = self.mm_to_px(r * np.sin(th), r * np.cos(th) - self.radius_mm)
        # polar grid sample <- display pixel (used to sample drawn label maps along the beams)
        self.cart_to_polar = (px.astype(np.float32), py.astype(np.float32))
        self.depth_of_sample_mm = (np.arange(self.n_samples) + 0.5) * self.dr_mm
        ys, xs = np.nonzero(self.fan_mask)
        self.roi = Roi(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)

    def to_display(self, polar: np.ndarray, nearest: bool = False) -> np.ndarray:
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        out = cv2.remap(polar, *self.polar_to_cart, interp, borderMode=cv2.BORDER_CONSTANT)
        out[~self.fan_mask] = 0
        return out

    def to_polar(self, display: np.ndarray) -> np.ndarray:
        return cv2.remap(
            display, *self.cart_to_polar, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT
        )
