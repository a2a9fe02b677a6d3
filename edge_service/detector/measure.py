"""Post-processing and measurements in millimetres (pure numpy + scipy.ndimage).

Segmentation probabilities come at the model's input resolution; each structure's
probability is resampled bilinearly onto the frame's own pixels inside the structure's box
and thresholded there, so sizes are measured at sub-input-pixel precision (the model was
trained on per-pixel area fractions, so p = 0.5 is the boundary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from edge_service.acquisition.frame import Roi
from edge_service.detector.preprocess import sample_bilinear


@dataclass
class Refined:
    """A structure's mask at frame resolution, in a crop [y0:y1, x0:x1] of the frame."""

    mask: np.ndarray
    prob: np.ndarray
    y0: int
    x0: int

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, bool)
        h, w = self.mask.shape
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = self.mask
        return out


def largest_component(binary: np.ndarray, weight: np.ndarray) -> np.ndarray | None:
    """The connected component with the largest summed weight (8-connectivity)."""
    lab, n = ndimage.label(binary, structure=np.ones((3, 3), bool))
    if n == 0:
        return None
    sums = ndimage.sum_labels(weight, lab, index=np.arange(1, n + 1))
    return np.asarray(lab == int(np.argmax(sums)) + 1)


def refine(
    prob: np.ndarray,
    component: np.ndarray,
    roi: Roi,
    scale: tuple[float, float],
    threshold: float,
    pad: int = 2,
) -> Refined | None:
    """Upsample `prob` around `component` (input grid) onto frame pixels and threshold."""
    rows, cols = np.nonzero(component)
    sy, sx = scale
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, prob.shape[0])
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, prob.shape[1])
    y0 = roi.y0 + math.floor(r0 * sy)
    y1 = min(roi.y0 + math.ceil(r1 * sy), roi.y1)
    x0 = roi.x0 + math.floor(c0 * sx)
    x1 = min(roi.x0 + math.ceil(c1 * sx), roi.x1)
    src_r = (np.arange(y0, y1) - roi.y0 + 0.5) / sy - 0.5
    src_c = (np.arange(x0, x1) - roi.x0 + 0.5) / sx - 0.5
    # Only this component's probability: neighbours of the same class must not merge in.
    p = np.where(ndimage.binary_dilation(component, iterations=pad), prob, 0.0).astype(np.float32)
    up = sample_bilinear(p, src_r, src_c)
    m = up >= threshold
    if not m.any():
        return None
    keep = largest_component(m, up)
    if keep is None:
        return None
    return Refined(keep, up, y0, x0)


def ellipse_fit(mask: np.ndarray, dx: float, dy: float) -> tuple[float, float, float, float, float]:
    """Moment ellipse of a filled region: (major mm, minor mm, angle deg, cy, cx px).

    For a filled ellipse the variance along a principal axis is (semi-axis)^2 / 4, so the
    full axis length is 4 * sqrt(eigenvalue); discretisation adds 1/12 px^2 (removed).
    """
    ys, xs = np.nonzero(mask)
    cy, cx = float(ys.mean()), float(xs.mean())
    pts = np.stack([(xs - cx) * dx, (ys - cy) * dy])
    cov = np.cov(pts) if pts.shape[1] > 1 else np.zeros((2, 2))
    cov -= np.diag([dx * dx / 12.0, dy * dy / 12.0])
    evals, evecs = np.linalg.eigh(cov)
    evals = np.clip(evals, 0.0, None)
    minor, major = 4.0 * math.sqrt(evals[0]), 4.0 * math.sqrt(evals[1])
    vx, vy = evecs[:, 1]
    angle = math.degrees(math.atan2(vy, vx))
    if angle > 90:
        angle -= 180
    elif angle <= -90:
        angle += 180
    return major, minor, angle, cy, cx


def boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def contour(mask: np.ndarray, y0: int, x0: int) -> np.ndarray:
    """Boundary pixels as an (N, 2) [x, y] polygon ordered by angle around the centroid."""
    ys, xs = np.nonzero(boundary(mask))
    if ys.size == 0:
        return np.zeros((0, 2))
    cy, cx = ys.mean(), xs.mean()
    order = np.argsort(np.arctan2(ys - cy, xs - cx))
    return np.stack([xs[order] + x0, ys[order] + y0], 1).astype(np.float64)


def fascicular_index(crop: np.ndarray, mask: np.ndarray, dx: float) -> float:
    """Texture contrast inside the nerve: standard deviation (grey levels / 255) of the image
    smoothed at ~0.6 mm (averages speckle, keeps ~1-2 mm fascicles). The display is
    log-compressed, so this is a dB-like spread: honeycomb nerves (bright epineurium,
    dark fascicles) score high, swollen hypoechoic nerves with lost fascicles score low."""
    inner = ndimage.binary_erosion(mask, iterations=max(1, round(0.6 / dx)))
    if inner.sum() < 10:
        inner = mask
    sm = ndimage.gaussian_filter(crop.astype(np.float32), 0.6 / dx)
    return float(sm[inner].std() / 255.0)


def echogenicity(
    pixels: np.ndarray,
    full_mask: np.ndarray,
    cy: float,
    cx: float,
    a_px: float,
    b_px: float,
    gap_px: float,
) -> float:
    """Mean nerve echo / mean echo of the superficial ring 2-6 mm outside it (the muscle)."""
    h, w = pixels.shape
    ra, rb = a_px + 3 * gap_px, b_px + 3 * gap_px
    y0, y1 = max(int(cy - rb), 0), min(int(cy + rb) + 1, h)
    x0, x1 = max(int(cx - ra), 0), min(int(cx + ra) + 1, w)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    r = max(a_px, b_px)
    d = np.hypot(yy - cy, xx - cx)
    ring = (d > r + gap_px) & (d <= r + 3 * gap_px) & (yy < cy) & (pixels[y0:y1, x0:x1] > 0)
    nerve_mean = float(pixels[full_mask].mean())
    if not ring.any():
        return float("nan")
    ring_mean = float(pixels[y0:y1, x0:x1][ring].mean())
    return nerve_mean / ring_mean if ring_mean > 0 else float("nan")


def shadow_ratio(pixels: np.ndarray, mask: np.ndarray, dy: float) -> float:
    """Echo 1-10 mm below the structure / echo 1-10 mm above it, over its columns."""
    ys, xs = np.nonzero(mask)
    cols = np.unique(xs)
    top = np.full(pixels.shape[1], pixels.shape[0], int)
    bot = np.zeros(pixels.shape[1], int)
    np.minimum.at(top, xs, ys)
    np.maximum.at(bot, xs, ys)
    n1, n10 = max(1, round(1.0 / dy)), max(2, round(10.0 / dy))
    above, below = [], []
    h = pixels.shape[0]
    for c in cols:
        above.append(pixels[max(top[c] - n10, 0) : max(top[c] - n1, 0), c])
        below.append(pixels[min(bot[c] + n1, h) : min(bot[c] + n10, h), c])
    a = np.concatenate(above) if above else np.zeros(0)
    b = np.concatenate(below) if below else np.zeros(0)
    if a.size == 0 or b.size == 0 or float(a.mean()) <= 0:
        return float("nan")
    return float(b.mean() / a.mean())


def edge_distance_mm(m1: Refined, m2: Refined, dx: float, dy: float) -> float:
    """Shortest distance between two structures' outlines in mm (0 when they touch)."""
    b1 = np.argwhere(boundary(m1.mask)) + np.array([m1.y0, m1.x0])
    b2 = np.argwhere(boundary(m2.mask)) + np.array([m2.y0, m2.x0])
    if b1.size == 0 or b2.size == 0:
        return float("nan")
    b1 = b1[:: max(1, len(b1) // 400)]
    b2 = b2[:: max(1, len(b2) // 400)]
    d = np.hypot((b1[:, None, 0] - b2[None, :, 0]) * dy, (b1[:, None, 1] - b2[None, :, 1]) * dx)
    # Pixel centres of the two outlines are one pixel further apart than the edges.
    return max(0.0, float(d.min()) - 0.5 * (dx + dy))


@dataclass
class RimAxis:
    """Outline extent along one axis from the epineurium (bright rim) peaks."""

    length_mm: float
    found: int  # how many of the two ends had a rim peak (0-2); ends without use the mask


def rim_extent(
    pixels: np.ndarray,
    cy: float,
    cx: float,
    angle_deg: float,
    half_mm: float,
    dx: float,
    dy: float,
    search_mm: tuple[float, float] = (0.0, 2.5),
    band_mm: float = 1.0,
    min_contrast: float = 0.1,
    min_shift_mm: float = 0.5,
) -> RimAxis:
    """Extent of the nerve along the axis at `angle_deg` (x right, y down, mm space) through
    (cx, cy) px, measured between the epineurium peaks rather than the mask edges.

    The epineurium is the nerve's outer sheath, a bright rim on B-mode; clinicians measure
    nerve size to it. When the segmentation stops short of the rim (lower class probability
    near the boundary on an unfamiliar scanner) the mask edge (`half_mm` from the centre)
    lies inside the outline: for each end the brightest point of the smoothed intensity
    profile within [edge + search_mm[0], edge + search_mm[1]] is taken when it is a ridge,
    brighter by `min_contrast` of the profile's range than both the nerve's interior and the
    tissue 0.75-2 mm beyond it, and lies at least `min_shift_mm` outside the mask edge
    (within that the segmentation is trusted: on the own phantom a closer rim only adds
    speckle noise); otherwise the mask edge stays.
    The profile averages parallel lines within +-band_mm, which suppresses speckle.
    """
    a = math.radians(angle_deg)
    ux, uy = math.cos(a), math.sin(a)  # along the axis (mm)
    step = 0.05
    reach = half_mm + search_mm[1] + 2.5
    t = np.arange(-reach, reach + step / 2, step)
    offs = np.arange(-band_mm, band_mm + 1e-9, 0.25)
    xs = cx + (t[None, :] * ux - offs[:, None] * uy) / dx
    ys = cy + (t[None, :] * uy + offs[:, None] * ux) / dy
    h, w = pixels.shape
    if xs.min() < 0 or ys.min() < 0 or xs.max() > w - 1 or ys.max() > h - 1:
        return RimAxis(2.0 * half_mm, 0)
    img = pixels.astype(np.float32)
    x0, x1 = int(xs.min()), math.ceil(xs.max()) + 1
    y0, y1 = int(ys.min()), math.ceil(ys.max()) + 1
    crop = ndimage.gaussian_filter(img[y0:y1, x0:x1], (0.25 / dy, 0.25 / dx))
    prof = ndimage.map_coordinates(crop, [ys - y0, xs - x0], order=1).mean(axis=0)
    core = np.abs(t) <= 0.5 * half_mm
    inner = float(np.median(prof[core])) if core.any() else float(np.median(prof))
    span = float(prof.max() - prof.min())
    ends = []
    n_found = 0
    for sign in (1.0, -1.0):
        d = sign * t  # distance from the centre towards this end
        win = (d >= half_mm + search_mm[0]) & (d <= half_mm + search_mm[1])
        if not win.any() or span <= 0:
            ends.append(half_mm)
            continue
        i = np.flatnonzero(win)[int(np.argmax(prof[win]))]
        peak = float(prof[i])
        inside_window = 0 < i < len(t) - 1 and win[i - 1] and win[i + 1]
        # A rim is a ridge: brighter than the nerve inside AND the tissue just outside it
        # (a step into brighter surroundings is not an epineurium).
        beyond = (d >= d[i] + 0.75) & (d <= d[i] + 2.0)
        outer = float(np.median(prof[beyond])) if beyond.any() else peak
        ridge = peak - max(inner, outer) >= min_contrast * span
        if inside_window and ridge and abs(float(d[i]) - half_mm) >= min_shift_mm:
            ends.append(float(d[i]))
            n_found += 1
        else:
            ends.append(half_mm)
    return RimAxis(ends[0] + ends[1], n_found)


def bright_extent_mm(
    pixels: np.ndarray,
    mask: np.ndarray,
    dx: float,
    dy: float,
    reach_mm: float = 30.0,
    level: float = 0.8,
) -> float:
    """Longest axis (mm) of the bright structure a calcification candidate belongs to.

    A calcification is a focal echo inside the ligament; a bone cortex (ischial spine, the
    ischium's shelf) is a long continuous bright curve. The candidate's structure: pixels of
    the image smoothed at 0.4 mm brighter than `level` of the way from the soft tissue 3-8 mm
    above the candidate to the candidate's median echo, connected to the candidate (0.8:
    at 0.5 a calcification imaged with wide beams merges with the ligament and cortex
    beside it - measured on the own RF-family validation renders). Its moment-ellipse major axis is returned (at least the candidate's own);
    a structure that reaches the search box (`reach_mm` beyond the candidate) is long."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return float("nan")
    h, w = pixels.shape
    ry, rx = round(reach_mm / 3 / dy), round(reach_mm / dx)
    y0, y1 = max(ys.min() - ry, 0), min(ys.max() + ry + 1, h)
    x0, x1 = max(xs.min() - rx, 0), min(xs.max() + rx + 1, w)
    crop = ndimage.gaussian_filter(pixels[y0:y1, x0:x1].astype(np.float32), (0.4 / dy, 0.4 / dx))
    cm = mask[y0:y1, x0:x1]
    inside = float(np.median(crop[cm]))
    cols = np.unique(xs) - x0
    top = ys.min() - y0
    a0, a1 = max(top - round(8.0 / dy), 0), max(top - round(3.0 / dy), 0)
    above = crop[a0:a1][:, cols]
    bg = float(np.median(above)) if above.size else float(np.median(crop))
    if inside <= bg:
        return float("nan")
    lab, _ = ndimage.label(crop >= bg + level * (inside - bg), structure=np.ones((3, 3), bool))
    ids = np.unique(lab[cm & (lab > 0)])
    comp = np.isin(lab, ids[ids > 0]) | cm
    major, *_ = ellipse_fit(comp, dx, dy)
    own_major, *_ = ellipse_fit(cm, dx, dy)
    _, cx = np.nonzero(comp)
    touches = (cx.min() == 0 and x0 > 0) or (cx.max() == comp.shape[1] - 1 and x1 < w)
    if touches:
        major = max(major, reach_mm)
    return float(max(major, own_major))
