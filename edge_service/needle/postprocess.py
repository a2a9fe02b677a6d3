"""Post-processing of the needle model's maps, pure numpy: sub-pixel tip, shaft line fit,
visible fraction. Shared by the locator and the training script's validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_service.acquisition.frame import Roi
from edge_service.needle.preprocess import to_frame

SHAFT_THRESHOLD = 0.5


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))).astype(np.float32)


def peak_subpixel(
    heat: np.ndarray, at: tuple[int, int] | None = None
) -> tuple[float, float, float]:
    """(row, col, value) of the heat map's maximum (or of the local maximum at pixel `at`),
    refined by a parabola through the log of the 3 neighbours on each axis (exact for a
    Gaussian peak)."""
    if at is None:
        rr, cc = np.unravel_index(int(np.argmax(heat)), heat.shape)
        r, c = int(rr), int(cc)
    else:
        r, c = at
    v = float(heat[r, c])
    h, w = heat.shape

    def off(a: float, b: float, m: float) -> float:
        la, lb, lm = (math.log(max(x, 1e-6)) for x in (a, b, m))
        den = la - 2 * lm + lb
        return 0.0 if den >= 0 else float(np.clip(0.5 * (la - lb) / den, -0.5, 0.5))

    dr = off(heat[r - 1, c], heat[r + 1, c], v) if 0 < r < h - 1 else 0.0
    dc = off(heat[r, c - 1], heat[r, c + 1], v) if 0 < c < w - 1 else 0.0
    return float(r) + dr, float(c) + dc, v


@dataclass
class ShaftFit:
    angle_deg: float  # from the horizontal, signed as in NeedleResult
    direction: tuple[float, float]  # unit (row, col) in frame px, pointing to the tip
    start_px: tuple[float, float]  # far (skin-side) end of the visible shaft
    length_px: float
    n_pixels: int


def fit_shaft(
    prob: np.ndarray,
    tip_rc: tuple[float, float],
    roi: Roi,
    scale: tuple[float, float],
    min_pixels: int = 6,
    reach_px: float = 60.0,
) -> ShaftFit | None:
    """Weighted line fit (PCA) of the shaft probability near the tip (in frame pixels: the
    input grid's two scales differ slightly). None when too few shaft pixels."""
    tr, tc = tip_rc
    rows_all, cols_all = np.nonzero(prob > SHAFT_THRESHOLD)
    rows, cols = rows_all, cols_all
    if rows.size < min_pixels:
        return None
    near = np.hypot(rows - tr, cols - tc) < reach_px
    rows, cols = rows[near], cols[near]
    if rows.size < min_pixels:
        return None
    wgt = prob[rows, cols].astype(np.float64)
    fr = roi.y0 + (rows + 0.5) * scale[0] - 0.5  # to_frame on arrays
    fc = roi.x0 + (cols + 0.5) * scale[1] - 0.5
    mr, mc = np.average(fr, weights=wgt), np.average(fc, weights=wgt)
    cov = np.cov(np.stack([fr - mr, fc - mc]), aweights=wgt)
    evals, evecs = np.linalg.eigh(cov)
    d = evecs[:, 1]
    # Elongated enough to be a line (not a blob at the tip).
    if evals[1] < 4.0 * max(evals[0], 1e-6):
        return None
    ftr, ftc = to_frame(tr, tc, roi, scale)
    proj = (fr - ftr) * d[0] + (fc - ftc) * d[1]
    # Orient d from the far end towards the tip.
    if np.median(proj) > 0:
        d = -d
        proj = -proj
    # The far (skin-side) end: every shaft pixel on the fitted line, not only the near ones.
    ar = roi.y0 + (rows_all + 0.5) * scale[0] - 0.5
    ac = roi.x0 + (cols_all + 0.5) * scale[1] - 0.5
    on_line = np.abs((ar - ftr) * d[1] - (ac - ftc) * d[0]) < 2.5 * max(scale)
    aproj = (ar - ftr) * d[0] + (ac - ftc) * d[1]
    aproj = np.where(on_line, aproj, 0.0)
    far = int(np.argmin(aproj))
    start = (float(ar[far]), float(ac[far]))
    length = float(-aproj[far])
    drow, dcol = float(d[0]), float(d[1])
    if drow < 0:  # the tip must be deeper than the skin side; a fit pointing up is flipped
        drow, dcol = -drow, -dcol
    ang = math.degrees(math.atan2(abs(drow), abs(dcol)))
    sign = 1.0 if dcol >= 0 else -1.0
    return ShaftFit(sign * ang, (drow, dcol), start, length, int(rows.size))


def direction_from_angle(angle_deg: float) -> tuple[float, float]:
    """Unit (row, col) direction of travel (towards the tip, deeper) for a signed angle."""
    a = math.radians(abs(angle_deg))
    return math.sin(a), math.copysign(math.cos(a), angle_deg if angle_deg != 0 else 1.0)
