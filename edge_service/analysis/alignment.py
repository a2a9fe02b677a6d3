"""Clip-probe time alignment: the lag between the hip angles and the nerve displacement.

The clip's samples and the probe's frames carry host times from two paths (USB serial
vs a capture card or DICOM export); the capture path adds tens to hundreds of ms. The
lag is estimated by cross-correlating the internal-rotation angle with the tracked
nerve displacement over a window of candidate lags (Pearson r at each, absolute value:
the direction of the glide is reported separately) and the angles are re-sampled at the
best one. The estimate is refused - and with it every angle-based call - when the peak
is weak (the two series do not describe the same movement: shuffled or foreign angles)
or lies at the window edge (the true lag is outside what may be corrected).

Sign: `lag_s` > 0 means the angle timestamps are late; the angle that belongs to a frame
at time t was stamped t + lag_s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POINTS = 10


@dataclass(frozen=True)
class LagEstimate:
    lag_s: float | None  # None when no estimate could be made
    correlation: float | None  # |r| at lag_s
    correlation_at_zero: float | None
    at_edge: bool
    n_frames: int
    window_s: float

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return {
            "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
            "correlation": None if self.correlation is None else round(self.correlation, 3),
            "correlation_at_zero": None
            if self.correlation_at_zero is None
            else round(self.correlation_at_zero, 3),
            "at_window_edge": self.at_edge,
            "n_frames": self.n_frames,
            "window_s": self.window_s,
        }


def shift(t: np.ndarray, values: np.ndarray, lag_s: float) -> np.ndarray:
    """values (N, k) sampled at t, re-sampled at t + lag_s; NaN where either neighbour is
    NaN or outside the sampled span (gaps are never bridged)."""
    t = np.asarray(t, dtype=float)
    v = np.asarray(values, dtype=float)
    flat = v.ndim == 1
    v2 = v.reshape(len(t), -1)
    out = np.full_like(v2, np.nan)
    if len(t) < 2 or lag_s == 0.0:
        return v.copy()
    tq = t + lag_s
    j = np.searchsorted(t, tq, side="right")
    inside = (j > 0) & (j < len(t))
    exact = np.isclose(tq, t[np.clip(j - 1, 0, len(t) - 1)], rtol=0.0, atol=1e-9)
    i0 = np.clip(j - 1, 0, len(t) - 1)
    i1 = np.clip(j, 0, len(t) - 1)
    dt = t[i1] - t[i0]
    w = np.where(dt > 0, (tq - t[i0]) / np.where(dt > 0, dt, 1.0), 0.0)
    for c in range(v2.shape[1]):
        a, b = v2[i0, c], v2[i1, c]
        val = a + w * (b - a)
        ok = inside & np.isfinite(a) & np.isfinite(b)
        val = np.where(exact & np.isfinite(a), a, val)
        ok = ok | (exact & np.isfinite(a))
        out[:, c] = np.where(ok, val, np.nan)
    return out.reshape(-1) if flat else out


def _abs_r(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < MIN_POINTS:
        return float("nan"), n
    xs, ys = x[ok], y[ok]
    sx, sy = float(xs.std()), float(ys.std())
    if sx < 1e-9 or sy < 1e-9:
        return float("nan"), n
    r = float(np.mean((xs - xs.mean()) * (ys - ys.mean())) / (sx * sy))
    return abs(r), n


def estimate_lag(
    t: np.ndarray, ir_deg: np.ndarray, disp_mm: np.ndarray, window_s: float, step_s: float
) -> LagEstimate:
    """Best lag in [-window_s, +window_s] by |Pearson r| of displacement vs shifted IR."""
    t = np.asarray(t, dtype=float)
    ir = np.asarray(ir_deg, dtype=float)
    disp = np.asarray(disp_mm, dtype=float)
    r0, n0 = _abs_r(ir, disp)
    if not np.isfinite(r0):
        return LagEstimate(None, None, None, False, n0, window_s)
    if window_s <= 0:
        return LagEstimate(0.0, r0, r0, False, n0, window_s)
    k = round(window_s / step_s)
    lags = np.arange(-k, k + 1) * step_s
    rs = np.full(lags.size, np.nan)
    for i, lag in enumerate(lags):
        rs[i], _ = _abs_r(shift(t, ir, float(lag)), disp)
    if not np.isfinite(rs).any():
        return LagEstimate(None, None, r0, False, n0, window_s)
    best = int(np.nanargmax(rs))
    # Prefer the smallest correction among (numerically) equal peaks.
    ties = np.flatnonzero(rs >= rs[best] - 1e-6)
    best = int(ties[np.argmin(np.abs(lags[ties]))])
    at_edge = best in (0, lags.size - 1)
    return LagEstimate(float(lags[best]), float(rs[best]), r0, at_edge, n0, window_s)
