"""Bounded ring of hip-angle samples in host time, and the `imu.jsonl` recording format.

`AngleTimeline.angles_at(t)` interpolates between the two samples around `t` and answers
None ("unknown") outside the recorded span or inside a gap longer than `max_gap_s`: a frame
must never be paired with an angle that was made up across lost data.

The ring stores every sample twice (at i and i + capacity) so the live span is always one
contiguous, time-sorted slice: `np.searchsorted` then answers queries without copying.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from edge_service.clip.messages import Sample
from edge_service.clip.settings import TimelineSettings
from edge_service.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TimedSample:
    """A decoded SAMPLE with its host time (clock sync) and unwrapped device time."""

    t: float
    t_dev_us: int
    sample: Sample
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Angles:
    t: float
    flexion_deg: float
    adduction_deg: float
    rotation_deg: float
    status: int  # SAMPLE flags of the nearer sample


@dataclass(frozen=True, slots=True)
class AngleWindow:
    t: np.ndarray
    seq: np.ndarray
    t_dev_us: np.ndarray
    flexion_deg: np.ndarray
    adduction_deg: np.ndarray
    rotation_deg: np.ndarray
    status: np.ndarray

    def __len__(self) -> int:
        return len(self.t)


def _resident(shape: int | tuple[int, ...], dtype: type) -> np.ndarray:
    """Zeros whose pages are all written now. np.zeros maps untouched zero pages, so the ring
    (31 MB at the default 20 min x 200 Hz, both copies) became resident only as samples
    arrived: the service's RSS rose ~46 MB/h at 100 Hz for the first 40 min, which the soak
    benchmark read as a leak. Resident from the start, the ring's memory is flat."""
    a: np.ndarray = np.empty(shape, dtype=dtype)
    a.fill(0)
    return a


class AngleTimeline:
    """Thread-safe bounded ring of samples (one writer: the link; many readers)."""

    def __init__(self, settings: TimelineSettings | None = None, capacity: int | None = None):
        self.settings = settings or TimelineSettings()
        self.capacity = capacity or self.settings.capacity_samples
        self.max_gap_s = self.settings.max_gap_s
        c2 = 2 * self.capacity
        self._t = _resident(c2, np.float64)
        self._seq = _resident(c2, np.int64)
        self._dev = _resident(c2, np.int64)
        self._gen = _resident(c2, np.int64)
        self._ang = _resident((c2, 3), np.float64)
        self._st = _resident(c2, np.int64)
        self._start = 0
        self._n = 0
        self.clamped = 0  # samples whose host time went backwards and was held
        self.dropped_old = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._n

    def append(
        self,
        t: float,
        seq: int,
        t_dev_us: int,
        flexion_deg: float,
        adduction_deg: float,
        rotation_deg: float,
        status: int,
        generation: int = 0,
    ) -> None:
        with self._lock:
            if self._n:
                last = self._t[self._start + self._n - 1]
                if t < last:
                    # Clock refits can move estimates back by a fraction of a millisecond;
                    # queries need sorted times, so hold the time instead of reordering.
                    self.clamped += 1
                    t = float(last)
            if self._n == self.capacity:
                self._start = (self._start + 1) % self.capacity
                self._n -= 1
                self.dropped_old += 1
            i = (self._start + self._n) % self.capacity
            for j in (i, i + self.capacity):
                self._t[j] = t
                self._seq[j] = seq
                self._dev[j] = t_dev_us
                self._gen[j] = generation
                self._ang[j] = (flexion_deg, adduction_deg, rotation_deg)
                self._st[j] = status
            self._n += 1

    def add(self, ts: TimedSample) -> None:
        s = ts.sample
        self.append(
            ts.t,
            s.seq,
            ts.t_dev_us,
            s.flexion_deg,
            s.adduction_deg,
            s.rotation_deg,
            s.flags,
            ts.generation,
        )

    def _span(self) -> slice:
        return slice(self._start, self._start + self._n)

    @property
    def t_first(self) -> float | None:
        return float(self._t[self._start]) if self._n else None

    @property
    def t_last(self) -> float | None:
        return float(self._t[self._start + self._n - 1]) if self._n else None

    def angles_at(self, t: float) -> Angles | None:
        """Angles at host time t, or None where unknown (outside the data or in a gap)."""
        if not math.isfinite(t):
            return None
        with self._lock:
            if not self._n:
                return None
            ts = self._t[self._span()]
            k = int(np.searchsorted(ts, t, side="right"))
            base = self._start
            if k == 0:
                return None
            if k == self._n:
                if t == ts[-1]:
                    return self._at(base + k - 1, t)
                return None
            t0, t1 = float(ts[k - 1]), float(ts[k])
            if t1 - t0 > self.max_gap_s:
                return None
            if t1 == t0:
                return self._at(base + k, t)
            w = (t - t0) / (t1 - t0)
            a = self._ang[base + k - 1] * (1.0 - w) + self._ang[base + k] * w
            st = self._st[base + k - 1] if w < 0.5 else self._st[base + k]
            return Angles(t, float(a[0]), float(a[1]), float(a[2]), int(st))

    def _at(self, i: int, t: float) -> Angles:
        a = self._ang[i]
        return Angles(t, float(a[0]), float(a[1]), float(a[2]), int(self._st[i]))

    def window(self, t0: float, t1: float) -> AngleWindow:
        """Copies of the samples with t0 <= t <= t1, in time order."""
        with self._lock:
            sl = self._span()
            ts = self._t[sl]
            i0 = int(np.searchsorted(ts, t0, side="left")) + self._start
            i1 = int(np.searchsorted(ts, t1, side="right")) + self._start
            r = slice(i0, i1)
            return AngleWindow(
                self._t[r].copy(),
                self._seq[r].copy(),
                self._dev[r].copy(),
                self._ang[r, 0].copy(),
                self._ang[r, 1].copy(),
                self._ang[r, 2].copy(),
                self._st[r].copy(),
            )

    def retime(self, clock: Any) -> int:
        """Re-map the host times of the current clock generation with the clock's latest fit
        (early estimates are refined once more data arrived). Returns the samples changed."""
        with self._lock:
            if not self._n:
                return 0
            sl = self._span()
            mask = self._gen[sl] == clock.generation
            if not mask.any():
                return 0
            new_t = self._t[sl].copy()
            new_t[mask] = clock.to_host_array(self._dev[sl][mask])
            new_t = np.maximum.accumulate(new_t)  # keep sorted across generations
            for off in (0, self.capacity):
                idx = (np.arange(self._start, self._start + self._n) % self.capacity) + off
                self._t[idx] = new_t
            return int(mask.sum())

    @classmethod
    def from_jsonl(
        cls, path: str | Path, settings: TimelineSettings | None = None
    ) -> AngleTimeline:
        """Load an `imu.jsonl` recording. Corrupt lines (e.g. a last line cut by a power
        loss) are skipped and counted in `skipped_lines`; no valid line is an InputError."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"IMU recording not found: {p}")
        rows: list[tuple[float, int, int, float, float, float, int]] = []
        skipped = 0
        with p.open("r", encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    row = (
                        float(d["t"]),
                        int(d["seq"]),
                        int(d.get("t_dev", 0)),
                        float(d["flexion_deg"]),
                        float(d["adduction_deg"]),
                        float(d["rotation_deg"]),
                        int(d.get("status", 0)),
                    )
                    if not all(math.isfinite(v) for v in (row[0], row[3], row[4], row[5])):
                        raise ValueError("non-finite value")
                except (ValueError, KeyError, TypeError) as exc:
                    skipped += 1
                    log.warning("%s:%d: skipped unreadable IMU line (%s)", p, lineno, exc)
                    continue
                rows.append(row)
        if not rows:
            raise InputError(
                f"{p}: no readable IMU samples (expected imu.jsonl lines with "
                "t, seq, flexion_deg, adduction_deg, rotation_deg)"
            )
        rows.sort(key=lambda r: r[0])
        base = settings or TimelineSettings()
        tl = cls(base, capacity=max(len(rows), 2))
        for r in rows:
            tl.append(r[0], r[1], r[2], r[3], r[4], r[5], r[6])
        tl.skipped_lines = skipped
        return tl

    skipped_lines: int = 0


def sample_row(ts: TimedSample) -> dict[str, Any]:
    """One imu.jsonl object (design contract 2) for a timed sample."""
    s = ts.sample
    return {
        "t": round(ts.t, 6),
        "seq": s.seq,
        "t_dev": ts.t_dev_us,
        "flexion_deg": s.flexion_deg,
        "adduction_deg": s.adduction_deg,
        "rotation_deg": s.rotation_deg,
        "status": s.flags,
        "quat": [round(v, 5) for v in s.quat_f],
    }


class ImuJsonlWriter:
    """Appends one JSON object per sample to `imu.jsonl` (design contract 2).

    Each line is written whole and flushed, so a crash loses at most the line being written
    (which `from_jsonl` then skips)."""

    def __init__(self, path: str | Path, fsync_every: int = 200) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")
        self._fsync_every = fsync_every
        self.lines = 0

    def write(self, ts: TimedSample) -> None:
        self.write_row(sample_row(ts))

    def write_row(self, row: dict[str, Any]) -> None:
        if self._fh is None:
            raise InputError(f"{self.path}: writer is closed")
        self._fh.write(json.dumps(row, separators=(",", ":")) + "\n")
        self._fh.flush()
        self.lines += 1
        if self.lines % self._fsync_every == 0:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ImuJsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
