"""Gliding figures from a tracked displacement series and the labelled angle timeline.

Per provocative manoeuvre (FAIR / seated piriformis):
- *baseline*: median displacement over the neutral frames just before it (the rest
  position it started from; if none, its own frames with the least internal rotation);
- *excursion*: median displacement over the frames where internal rotation is at least
  `PEAK_FRACTION` of the manoeuvre's peak, minus the baseline. Medians over the hold
  make it robust to single-frame tracking noise, unlike a max-min range;
- *slope*: least-squares fit of (displacement - baseline) against internal rotation,
  reported per 10 deg with r^2, its standard error and the residual spread.

The session's `per_10deg_ir_mm` pools the frames of every provocative manoeuvre.

Excursion is reported as a magnitude with a separate direction (lateral/medial); the
signed value stays internal. Intervals: the excursion's by bootstrap over the baseline
and hold frames (medians of resamples), the slope's by a moving-block bootstrap over the
pooled frames (blocks of ~1 s keep the frame-to-frame correlation of the tracking error,
which a plain regression standard error ignores). The generator is seeded: the same
recording always gives the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_service.analysis.manoeuvres import FAIR, NEUTRAL, PIRIFORMIS, Episode
from edge_service.analysis.settings import GlidingRule

PEAK_FRACTION = 0.9
PROVOCATIVE = (FAIR, PIRIFORMIS)


@dataclass(frozen=True)
class Fit:
    slope_mm_per_deg: float
    intercept_mm: float
    r2: float
    slope_se_mm_per_deg: float
    residual_mm: float
    n: int
    ir_range_deg: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "per_10deg_ir_mm": 10.0 * self.slope_mm_per_deg,
            "slope_se_per_10deg_mm": 10.0 * self.slope_se_mm_per_deg,
            "intercept_mm": self.intercept_mm,
            "r2": self.r2,
            "residual_sd_mm": self.residual_mm,
            "n_frames": self.n,
            "ir_range_deg": self.ir_range_deg,
        }


def fit_line(ir_deg: np.ndarray, disp_mm: np.ndarray) -> Fit | None:
    """Least-squares displacement = a + b * IR with its fit quality; None if < 3 points."""
    ok = np.isfinite(ir_deg) & np.isfinite(disp_mm)
    x, y = ir_deg[ok], disp_mm[ok]
    n = int(x.size)
    if n < 3 or float(np.ptp(x)) < 1e-6:
        return None
    b, a = np.polyfit(x, y, 1)
    res = y - (a + b * x)
    ss_res = float(np.sum(res**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    sxx = float(np.sum((x - x.mean()) ** 2))
    se = float(np.sqrt(ss_res / max(n - 2, 1) / sxx))
    return Fit(
        float(b), float(a), r2, se, float(np.sqrt(ss_res / max(n - 2, 1))), n, float(np.ptp(x))
    )


@dataclass(frozen=True)
class ManoeuvreGlide:
    episode: Episode
    baseline_mm: float | None
    excursion_mm: float | None  # signed, + = lateral (see magnitude())
    excursion_ap_mm: float | None
    excursion_vs_muscle_mm: float | None
    fit: Fit | None
    n_tracked: int
    excursion_ci_mm: tuple[float, float] | None = None  # signed interval
    tracking_quality: float | None = None  # median over the episode's frames


def magnitude(signed: float | None) -> tuple[float | None, str | None]:
    """(|excursion|, "lateral"/"medial"/None) - no negative "max excursion" anywhere."""
    if signed is None or not np.isfinite(signed):
        return None, None
    return abs(float(signed)), ("lateral" if signed >= 0 else "medial")


def magnitude_ci(
    signed: float | None, ci: tuple[float, float] | None
) -> tuple[float, float] | None:
    """The interval of |excursion| from the interval of the signed value."""
    if signed is None or ci is None:
        return None
    lo, hi = ci
    if lo <= 0.0 <= hi:  # the interval spans zero: the magnitude may be 0
        return 0.0, max(abs(lo), abs(hi))
    a, b = sorted((abs(lo), abs(hi)))
    return a, b


def _rng() -> np.random.Generator:
    return np.random.default_rng(20261129)


def excursion_ci(
    base: np.ndarray, hold: np.ndarray, level: float, samples: int
) -> tuple[float, float] | None:
    """Bootstrap interval of median(hold) - median(base), frames resampled independently."""
    b, h = base[np.isfinite(base)], hold[np.isfinite(hold)]
    if b.size < 2 or h.size < 2:
        return None
    rng = _rng()
    mb = np.median(rng.choice(b, size=(samples, b.size)), axis=1)
    mh = np.median(rng.choice(h, size=(samples, h.size)), axis=1)
    d = mh - mb
    a = (1.0 - level) / 2.0
    return float(np.quantile(d, a)), float(np.quantile(d, 1.0 - a))


def slope_ci_per_10deg(
    x: np.ndarray, y: np.ndarray, block: int, level: float, samples: int
) -> tuple[float, float] | None:
    """Moving-block bootstrap interval of the least-squares slope, per 10 deg."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = x.size
    if n < 6 or float(np.ptp(x)) < 1e-6:
        return None
    block = int(min(max(block, 1), max(n // 3, 1)))
    starts = np.arange(0, n - block + 1)
    k = int(np.ceil(n / block))
    rng = _rng()
    slopes = []
    for _ in range(samples):
        idx = (rng.choice(starts, size=k)[:, None] + np.arange(block)[None, :]).reshape(-1)[:n]
        xs, ys = x[idx], y[idx]
        xm = xs - xs.mean()
        sxx = float(np.sum(xm**2))
        if sxx <= 1e-12:
            continue
        slopes.append(float(np.sum(xm * (ys - ys.mean())) / sxx))
    if len(slopes) < samples // 2:
        return None
    a = (1.0 - level) / 2.0
    arr = 10.0 * np.asarray(slopes)
    return float(np.quantile(arr, a)), float(np.quantile(arr, 1.0 - a))


def _baseline_indices(ep: Episode, episodes: list[Episode], ir: np.ndarray) -> np.ndarray:
    before = [e for e in episodes if e.name == NEUTRAL and e.end_index < ep.start_index]
    if before:
        e = before[-1]
        return np.arange(e.start_index, e.end_index + 1)
    idx = np.arange(ep.start_index, ep.end_index + 1)
    seg = ir[idx]
    finite = np.isfinite(seg)
    if not finite.any():
        return idx[:0]
    return idx[finite & (seg <= np.nanmin(seg) + 2.0)]


def _median(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    return float(np.median(v)) if v.size else None


def per_manoeuvre(
    episodes: list[Episode],
    ir: np.ndarray,
    lateral: np.ndarray,
    ap: np.ndarray,
    vs_muscle: np.ndarray,
    quality: np.ndarray | None = None,
    ci_level: float = 0.95,
    ci_samples: int = 400,
) -> list[ManoeuvreGlide]:
    """Gliding of each provocative episode. Arrays are per frame; NaN = not tracked."""
    out = []
    for ep in episodes:
        if ep.name not in PROVOCATIVE:
            continue
        idx = np.arange(ep.start_index, ep.end_index + 1)
        base_idx = _baseline_indices(ep, episodes, ir)
        base = _median(lateral[base_idx]) if base_idx.size else None
        base_ap = _median(ap[base_idx]) if base_idx.size else None
        base_m = _median(vs_muscle[base_idx]) if base_idx.size else None
        seg_ir = ir[idx]
        peak_ir = float(np.nanmax(seg_ir)) if np.isfinite(seg_ir).any() else float("nan")
        hold = idx[np.isfinite(seg_ir) & (seg_ir >= PEAK_FRACTION * peak_ir)]
        exc = exc_ap = exc_m = None
        peak = _median(lateral[hold]) if hold.size else None
        if base is not None and peak is not None:
            exc = peak - base
        peak_ap = _median(ap[hold]) if hold.size else None
        if base_ap is not None and peak_ap is not None:
            exc_ap = peak_ap - base_ap
        peak_m = _median(vs_muscle[hold]) if hold.size else None
        if base_m is not None and peak_m is not None:
            exc_m = peak_m - base_m
        fit = fit_line(seg_ir, lateral[idx] - (base or 0.0))
        n_tracked = int(np.isfinite(lateral[idx]).sum())
        ci = (
            excursion_ci(lateral[base_idx], lateral[hold], ci_level, ci_samples)
            if exc is not None
            else None
        )
        q = None
        if quality is not None and np.isfinite(quality[idx]).any():
            q = float(np.nanmedian(quality[idx]))
        out.append(ManoeuvreGlide(ep, base, exc, exc_ap, exc_m, fit, n_tracked, ci, q))
    return out


def pooled_xy(
    glides: list[ManoeuvreGlide], ir: np.ndarray, lateral: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(IR, displacement - baseline) of every provocative frame, in time order."""
    xs, ys = [], []
    for g in glides:
        idx = np.arange(g.episode.start_index, g.episode.end_index + 1)
        xs.append(ir[idx])
        ys.append(lateral[idx] - (g.baseline_mm or 0.0))
    if not xs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ys)


def pooled_fit(glides: list[ManoeuvreGlide], ir: np.ndarray, lateral: np.ndarray) -> Fit | None:
    if not glides:
        return None
    return fit_line(*pooled_xy(glides, ir, lateral))


def classify(
    fit: Fit | None, glides: list[ManoeuvreGlide], rule: GlidingRule
) -> tuple[bool | None, str]:
    """(restricted, reason). None when the session cannot tell (see `GlidingRule`)."""
    if fit is None or fit.ir_range_deg < rule.min_ir_range_deg:
        return None, (
            f"undetermined: needs a tracked provocative manoeuvre covering at least "
            f"{rule.min_ir_range_deg:g} deg of internal rotation"
        )
    slope10 = abs(10.0 * fit.slope_mm_per_deg)
    excursions = [abs(g.excursion_mm) for g in glides if g.excursion_mm is not None]
    best = max(excursions) if excursions else None
    if slope10 < rule.restricted_below_mm_per_10deg:
        return True, (
            f"restricted: {slope10:.2f} mm per 10 deg IR is below "
            f"{rule.restricted_below_mm_per_10deg:g} mm"
        )
    if best is not None and best < rule.min_excursion_mm:
        return (
            True,
            f"restricted: peak excursion {best:.2f} mm is below {rule.min_excursion_mm:g} mm",
        )
    return False, (
        f"free: {slope10:.2f} mm per 10 deg IR (threshold {rule.restricted_below_mm_per_10deg:g} mm)"
    )
