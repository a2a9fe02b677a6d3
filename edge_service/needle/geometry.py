"""Needle geometry against the same frame's detections, pure numpy.

From a located needle (tip in px, shaft angle) and the nerve / calcification masks of the
same frame: tip in mm, tip-to-epineurium distance (the nerve outline; <= 0 when the tip is
inside), the projected path from the tip to the image edge and its closest approach to the
nerve ahead of the tip (0 when the path enters the nerve), and tip-to-calcification
distance. The spacing rules of every measurement apply: no spacing -> every mm value is
None and measure_reason is "no_spacing" (never a guessed scale); anisotropic pixels are
handled by measuring in mm.

Outlines are the masks' boundary pixels (centres), so a distance is exact to about half a
pixel (~0.1 mm at the phantom's 0.19 mm/px).

Cost: the live procedure mode measures every frame against a nerve mask that is re-detected
only a few times a second (docs/procedure.md), so an `OutlineCache` keeps the last mask's
outline and a k-d tree of it in mm: a frame then costs one tree query for the tip and one
for the path's sample points instead of an erosion and a dense point-to-outline matrix. The
distances are the same (nearest outline point, exact).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from edge_service.acquisition.frame import Roi
from edge_service.needle.postprocess import direction_from_angle
from edge_service.needle.types import NeedleResult, Px

PATH_STEP_PX = 1.0


def boundary_px(mask: np.ndarray) -> np.ndarray:
    """(N, 2) (row, col) of a mask's outline pixels (4-connected boundary)."""
    m = mask.astype(bool)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if rows.size == 0:
        return np.zeros((0, 2))
    # erode only the mask's bounding box (+1 px of background on every side, so the
    # image border counts as outside exactly as in a whole-frame erosion)
    r0, c0 = rows[0], cols[0]
    crop = np.pad(m[r0 : rows[-1] + 1, c0 : cols[-1] + 1], 1)
    inner = ndimage.binary_erosion(crop, structure=ndimage.generate_binary_structure(2, 1))
    r, c = np.nonzero(crop & ~inner)
    return np.stack([r + r0 - 1, c + c0 - 1], 1).astype(np.float64)


class Outline:
    """A mask's outline pixels and a k-d tree of them in mm (for one spacing)."""

    def __init__(self, mask: np.ndarray, spacing: tuple[float, float]) -> None:
        self.px = boundary_px(mask)
        dx, dy = spacing
        self.tree = (
            cKDTree(self.px * np.array([dy, dx])) if self.px.size else None
        )  # rows scale by dy, columns by dx

    def nearest_mm(self, rows: np.ndarray, cols: np.ndarray, spacing: tuple[float, float]) -> float:
        assert self.tree is not None
        dx, dy = spacing
        d, _ = self.tree.query(np.stack([rows * dy, cols * dx], 1))
        return float(np.min(d))


class OutlineCache:
    """The outline of the last mask measured against (by identity: the live procedure mode
    passes the same detection's arrays until the nerve is re-detected). Holds the mask, so
    its identity cannot be reused by another array while cached."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[np.ndarray, tuple[float, float], Outline]] = {}
        self.built = 0

    def get(self, name: str, mask: np.ndarray, spacing: tuple[float, float]) -> Outline:
        hit = self._entries.get(name)
        if hit is not None and hit[0] is mask and hit[1] == spacing:
            return hit[2]
        o = Outline(mask, spacing)
        self._entries[name] = (mask, spacing, o)
        self.built += 1
        return o


def signed_distance_mm(
    p: Px,
    mask: np.ndarray,
    outline: np.ndarray,
    spacing: tuple[float, float],
    tree: Outline | None = None,
) -> float | None:
    """Distance (mm) from point p to the mask outline; negative when p is inside."""
    if outline.size == 0:
        return None
    dx, dy = spacing
    if tree is not None and tree.tree is not None:
        d = tree.nearest_mm(np.array([p[0]]), np.array([p[1]]), spacing)
    else:
        d = np.hypot((outline[:, 0] - p[0]) * dy, (outline[:, 1] - p[1]) * dx).min()
    r, c = round(p[0]), round(p[1])
    inside = 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and bool(mask[r, c])
    return -float(d) if inside else float(d)


def trajectory_end(tip: Px, direction: tuple[float, float], bounds: Roi) -> Px:
    """Where the ray tip + s * direction (s >= 0) leaves [x0, x1) x [y0, y1)."""
    r, c = tip
    dr, dc = direction
    s_max = math.inf
    if dr > 1e-9:
        s_max = min(s_max, (bounds.y1 - 1 - r) / dr)
    elif dr < -1e-9:
        s_max = min(s_max, (bounds.y0 - r) / dr)
    if dc > 1e-9:
        s_max = min(s_max, (bounds.x1 - 1 - c) / dc)
    elif dc < -1e-9:
        s_max = min(s_max, (bounds.x0 - c) / dc)
    s_max = max(0.0, s_max if math.isfinite(s_max) else 0.0)
    return r + dr * s_max, c + dc * s_max


def path_distance_mm(
    tip: Px,
    end: Px,
    mask: np.ndarray,
    outline: np.ndarray,
    spacing: tuple[float, float],
    tree: Outline | None = None,
) -> float | None:
    """Closest approach (mm) of the segment tip -> end to the mask outline; 0 when the path
    enters the mask; the tip's own signed distance when the tip is already inside."""
    if outline.size == 0:
        return None
    own = signed_distance_mm(tip, mask, outline, spacing, tree)
    if own is not None and own <= 0:
        return own
    n = max(2, math.ceil(math.hypot(end[0] - tip[0], end[1] - tip[1]) / PATH_STEP_PX) + 1)
    rows = np.linspace(tip[0], end[0], n)
    cols = np.linspace(tip[1], end[1], n)
    ri = np.clip(np.round(rows).astype(int), 0, mask.shape[0] - 1)
    ci = np.clip(np.round(cols).astype(int), 0, mask.shape[1] - 1)
    if mask[ri, ci].any():
        return 0.0
    if tree is not None and tree.tree is not None:
        return tree.nearest_mm(rows, cols, spacing)
    dx, dy = spacing
    # Outline points only near the path matter; chunk to bound memory.
    best = math.inf
    for i in range(0, n, 256):
        d = np.hypot(
            (outline[None, :, 0] - rows[i : i + 256, None]) * dy,
            (outline[None, :, 1] - cols[i : i + 256, None]) * dx,
        )
        best = min(best, float(d.min()))
    return best


def measure(
    res: NeedleResult,
    spacing: tuple[float, float] | None,
    shape: tuple[int, int],
    nerve_mask: np.ndarray | None = None,
    calcification_mask: np.ndarray | None = None,
    bounds: Roi | None = None,
    *,
    cache: OutlineCache | None = None,
) -> NeedleResult:
    """A copy of `res` with the geometry filled in (nothing to do when not found).
    `cache`: reuse the outlines of masks measured against before (same array objects)."""
    if not res.found or res.tip_px is None:
        return res
    out = dataclasses.replace(res)
    tip = res.tip_px
    b = bounds or Roi(0, 0, shape[1], shape[0])
    if res.angle_deg is not None:
        out.trajectory_end_px = trajectory_end(tip, direction_from_angle(res.angle_deg), b)
    if spacing is None:
        out.tip_mm = None
        out.nerve_distance_mm = out.path_nerve_distance_mm = None
        out.calcification_distance_mm = None
        out.measure_reason = "no_spacing"
        return out
    dx, dy = float(spacing[0]), float(spacing[1])
    out.tip_mm = (tip[0] * dy, tip[1] * dx)
    out.measure_reason = None
    sp = (dx, dy)

    def outline_of(name: str, mask: np.ndarray) -> tuple[np.ndarray, Outline | None]:
        if cache is None:
            return boundary_px(mask), None
        o = cache.get(name, mask, sp)
        return o.px, o

    if nerve_mask is not None and nerve_mask.any():
        outline, tree = outline_of("nerve", nerve_mask)
        out.nerve_distance_mm = signed_distance_mm(tip, nerve_mask, outline, sp, tree)
        if out.trajectory_end_px is not None:
            out.path_nerve_distance_mm = path_distance_mm(
                tip, out.trajectory_end_px, nerve_mask, outline, sp, tree
            )
    if calcification_mask is not None and calcification_mask.any():
        outline, tree = outline_of("calcification", calcification_mask)
        out.calcification_distance_mm = signed_distance_mm(
            tip, calcification_mask, outline, sp, tree
        )
    return out
