"""Device microsecond ticks -> host Unix time.

USB latency is one-sided (a frame can arrive late, never early) and jittery, with occasional
stalls when the host or the hub is busy. So the fit is made to the *lower envelope* of
`arrival - device_time`: the minimum per bin (one bin = `bin_s` of device time) is the sample
that travelled fastest, and a robust line through the bin minima gives offset and drift. Bins
spoiled by a stall (their minimum is far above the line) are rejected. The line's intercept is
then lowered to the bottom of the minima, because the mean of per-bin minima is itself late.

Ticks wrap at 2**30 on the clip; they are unwrapped to int64 microseconds with the host clock
deciding how many wraps happened during a silence, so a pause longer than half a wrap
(~9 minutes) is still handled.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
from dgsclip.protocol import TICKS_MASK, TICKS_PERIOD

from edge_service.clip.settings import ClockSyncSettings

log = logging.getLogger(__name__)


class TickUnwrapper:
    """30-bit wrapping device ticks -> monotonic int64 microseconds since the first tick seen."""

    def __init__(self) -> None:
        self._raw: int | None = None
        self._ext = 0
        self._host = 0.0

    def reset(self) -> None:
        self._raw = None

    def unwrap(self, raw: int, host_t: float) -> int:
        raw &= TICKS_MASK
        if self._raw is None:
            ext = raw
        else:
            d = (raw - self._raw) % TICKS_PERIOD
            # Whole wraps the host clock says passed besides the visible delta (0 normally,
            # -1 for a frame stamped slightly earlier than the previous one, >0 after a silence).
            k = round(((host_t - self._host) * 1e6 - d) / TICKS_PERIOD)
            ext = self._ext + d + k * TICKS_PERIOD
        self._raw, self._ext, self._host = raw, ext, host_t
        return ext


@dataclass(frozen=True, slots=True)
class ClockState:
    synced: bool
    offset_s: float  # host time at device time 0 of this generation
    drift_ppm: float
    uncertainty_s: float
    bins: int
    rejected_bins: int
    generation: int
    resets: int


class ClockSync:
    """Online lower-envelope fit of host = dev + offset + drift * dev (per generation).

    `observe(raw_ticks, arrival)` feeds one frame and returns `(t_dev_us, host_estimate)`;
    `to_host(t_dev_us)` maps any unwrapped device time of the current generation. `reset()`
    starts a new generation (reboot, reconnect): the old fit is useless after either.
    """

    def __init__(self, settings: ClockSyncSettings | None = None) -> None:
        self.settings = settings or ClockSyncSettings()
        self._unwrap = TickUnwrapper()
        self.generation = 0
        self.resets = 0
        self._clear()

    def _clear(self) -> None:
        self._dev0: int | None = None
        self._host0 = 0.0
        self._bins: deque[tuple[float, float]] = deque()
        self._cur_bin: int | None = None
        self._cur_min: tuple[float, float] | None = None
        self._a = 0.0
        self._b = 0.0
        self._unc = float("inf")
        self._below = 0
        self._rejected = 0
        self._y_lo = float("inf")
        self._y_hi = float("-inf")

    def reset(self, reason: str = "") -> None:
        if self._dev0 is not None:
            self.resets += 1
            log.info("clock sync reset (%s)", reason or "requested")
        self.generation += 1
        self._unwrap.reset()
        self._clear()

    @property
    def synced(self) -> bool:
        return len(self._bins) >= 2

    @property
    def uncertainty_s(self) -> float:
        return self._unc

    @property
    def drift_ppm(self) -> float:
        return self._b * 1e6

    def state(self) -> ClockState:
        return ClockState(
            self.synced,
            self._host0 + self._a - self.settings.latency_floor_s,
            self.drift_ppm,
            self._unc,
            len(self._bins),
            self._rejected,
            self.generation,
            self.resets,
        )

    def observe(self, raw_ticks: int, arrival: float) -> tuple[int, float]:
        ext = self._unwrap.unwrap(raw_ticks, arrival)
        if self._dev0 is None:
            self._dev0 = ext
            self._host0 = arrival
        x = (ext - self._dev0) / 1e6
        y = arrival - self._host0 - x
        if self._cur_min is not None and self._fitted_once():
            r = y - (self._a + self._b * x)
            if r < -self.settings.step_reset_ms / 1000.0:
                self._below += 1
                if self._below >= 3:
                    # Impossible with one-sided latency: the host clock stepped or the clip
                    # restarted its ticks without us noticing. Start again from this frame.
                    self.reset("samples arrive before the fitted time")
                    return self.observe(raw_ticks, arrival)
            else:
                self._below = 0
        self._y_lo = min(self._y_lo, y)
        self._y_hi = max(self._y_hi, y)
        b = int(x // self.settings.bin_s)
        cur = self._cur_min
        if cur is None or b != self._cur_bin:
            if cur is not None:
                self._bins.append(cur)
                self._trim(x)
            self._cur_bin = b
            self._cur_min = (x, y)
            self._fit()
        elif y < cur[1]:
            self._cur_min = (x, y)
            if len(self._bins) < 2:
                self._fit()
        return ext, self._host0 + x + self._a + self._b * x - self.settings.latency_floor_s

    def to_host(self, t_dev_us: int) -> float:
        if self._dev0 is None:
            raise ValueError("clock sync has no data yet")
        x = (t_dev_us - self._dev0) / 1e6
        return self._host0 + x + self._a + self._b * x - self.settings.latency_floor_s

    def to_host_array(self, t_dev_us: np.ndarray) -> np.ndarray:
        if self._dev0 is None:
            raise ValueError("clock sync has no data yet")
        x = (t_dev_us.astype(np.int64) - self._dev0) / 1e6
        return self._host0 + x + self._a + self._b * x - self.settings.latency_floor_s

    def _fitted_once(self) -> bool:
        return len(self._bins) >= 1

    def _trim(self, x_now: float) -> None:
        while self._bins and x_now - self._bins[0][0] > self.settings.window_s:
            self._bins.popleft()

    def _fit(self) -> None:
        s = self.settings
        pts = list(self._bins)
        if len(pts) < 2:
            # Too little for a slope: offset only, from the fastest frame seen so far.
            cands = [*pts, self._cur_min] if self._cur_min else pts
            self._a = min(p[1] for p in cands)
            self._b = 0.0
            self._unc = (self._y_hi - self._y_lo) / 2.0 if len(cands) > 1 else float("inf")
            return
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        keep = np.ones(len(x), dtype=bool)
        max_b = s.max_drift_ppm * 1e-6
        a = b = 0.0
        for _ in range(3):
            xs, ys = x[keep], y[keep]
            if len(xs) >= 2 and np.ptp(xs) > 0:
                b, a = np.polyfit(xs, ys, 1)
            else:
                b, a = 0.0, float(np.min(ys))
            b = float(np.clip(b, -max_b, max_b))
            a = float(np.mean(ys - b * xs))
            r = y - (a + b * x)
            mad = float(np.median(np.abs(r[keep] - np.median(r[keep])))) * 1.4826
            new_keep = r <= s.outlier_ms / 1000.0 + 3.0 * mad
            if new_keep.sum() < 2 or np.array_equal(new_keep, keep):
                break
            keep = new_keep
        r_in = (y - (a + b * x))[keep]
        # Per-bin minima are late on average: move the line down to their lower edge.
        shift = float(np.min(r_in)) if len(r_in) <= 10 else float(np.percentile(r_in, 10))
        self._a = a + shift
        self._b = b
        self._rejected = int((~keep).sum())
        xk = x[keep]
        n = len(xk)
        resid = r_in - shift
        sd = float(np.sqrt(np.sum((resid - resid.mean()) ** 2) / max(n - 2, 1)))
        sxx = float(np.sum((xk - xk.mean()) ** 2)) or 1e-9
        x_now = self._cur_min[0] if self._cur_min else float(x[-1])
        self._unc = sd * float(np.sqrt(1.0 / n + (x_now - xk.mean()) ** 2 / sxx))
