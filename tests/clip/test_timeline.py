"""AngleTimeline: interpolation, gaps, bounds, ring wrap, window, JSONL round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_service.clip.clocksync import ClockSync
from edge_service.clip.messages import Sample
from edge_service.clip.settings import TimelineSettings
from edge_service.clip.timeline import AngleTimeline, ImuJsonlWriter, TimedSample
from edge_service.errors import InputError


def filled(n: int = 100, dt: float = 0.01, cap: int = 1000) -> AngleTimeline:
    tl = AngleTimeline(TimelineSettings(max_gap_s=0.05), capacity=cap)
    for i in range(n):
        tl.append(1000.0 + i * dt, i, i * 10_000, float(i), -float(i), 2.0 * i, i % 4)
    return tl


def test_interpolates_between_neighbours() -> None:
    tl = filled()
    a = tl.angles_at(1000.0 + 0.105)
    assert a is not None
    assert a.flexion_deg == pytest.approx(10.5)
    assert a.adduction_deg == pytest.approx(-10.5)
    assert a.rotation_deg == pytest.approx(21.0)
    exact = tl.angles_at(1000.0 + 0.99)
    assert exact is not None and exact.flexion_deg == pytest.approx(99.0)


def test_unknown_outside_and_across_gaps() -> None:
    tl = filled(50)
    for i in range(50, 100):  # 0.2 s hole (lost frames) then more samples
        tl.append(1000.0 + 0.2 + i * 0.01, i, 0, float(i), 0.0, 0.0, 0)
    assert tl.angles_at(999.99) is None
    assert tl.angles_at(1000.0 + 0.2 + 1.0) is None
    assert tl.angles_at(1000.0 + 0.55) is None  # inside the gap
    assert tl.angles_at(1000.0 + 0.485) is not None
    assert tl.angles_at(float("nan")) is None
    assert AngleTimeline(capacity=4).angles_at(0.0) is None


def test_ring_keeps_the_newest() -> None:
    tl = filled(n=250, cap=100)
    assert len(tl) == 100 and tl.dropped_old == 150
    assert tl.t_first == pytest.approx(1001.5)
    assert tl.angles_at(1000.5) is None
    w = tl.window(1001.0, 1003.0)
    assert list(w.seq) == list(range(150, 250))
    assert np.all(np.diff(w.t) > 0)
    a = tl.angles_at(1002.005)
    assert a is not None and a.flexion_deg == pytest.approx(200.5)


def test_window_bounds_inclusive() -> None:
    tl = filled()
    w = tl.window(1000.1, 1000.2)
    assert list(w.seq) == list(range(10, 21))
    assert len(tl.window(2000.0, 2001.0)) == 0


def test_time_going_backwards_is_held_sorted() -> None:
    tl = filled(10)
    tl.append(1000.05, 10, 0, 1.0, 1.0, 1.0, 0)
    assert tl.clamped == 1 and tl.t_last == pytest.approx(1000.09)


def test_jsonl_round_trip_and_corrupt_lines(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "imu.jsonl"
    with ImuJsonlWriter(path) as w:
        for i in range(20):
            s = Sample(i, i * 10_000, 100 * i, -50, 25, (16384, 0, 0, 0), 1, 0, 0)
            w.write(TimedSample(1000.0 + i * 0.01, i * 10_000, s))
    with path.open("a") as fh:
        fh.write('{"t": 1000.3, "seq": 99, "flexion_deg": "x"}\n{"t": 1000.4, "se')  # torn tail
    rows = [json.loads(x) for x in path.read_text().splitlines()[:20]]
    assert rows[3] == {
        "t": 1000.03,
        "seq": 3,
        "t_dev": 30000,
        "flexion_deg": 3.0,
        "adduction_deg": -0.5,
        "rotation_deg": 0.25,
        "status": 1,
        "quat": [1.0, 0.0, 0.0, 0.0],
    }
    tl = AngleTimeline.from_jsonl(path)
    assert len(tl) == 20 and tl.skipped_lines == 2
    a = tl.angles_at(1000.035)
    assert a is not None and a.flexion_deg == pytest.approx(3.5)


def test_jsonl_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        AngleTimeline.from_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "imu.jsonl"
    bad.write_text("not json\n\n")
    with pytest.raises(InputError, match="no readable IMU samples"):
        AngleTimeline.from_jsonl(bad)


def test_retime_refines_early_estimates() -> None:
    rng = np.random.default_rng(3)
    cs = ClockSync()
    tl = AngleTimeline(capacity=5000)
    for i in range(3000):
        true = 5000.0 + i * 0.01
        t_dev, t = cs.observe(int(i * 10_000 * (1 + 150e-6)), true + rng.uniform(0, 0.02))
        tl.append(t, i, t_dev, 0.0, 0.0, 0.0, 0, cs.generation)
    w0 = tl.window(0, 1e12)
    early_before = np.abs(w0.t[:100] - (5000.0 + np.arange(100) * 0.01)).max()
    assert tl.retime(cs) == 3000
    w1 = tl.window(0, 1e12)
    early_after = np.abs(w1.t[:100] - (5000.0 + np.arange(100) * 0.01)).max()
    assert early_after < 1e-3 < early_before


def _resident_fraction(a: np.ndarray) -> float:
    """Share of the array's pages that are in RAM (/proc/self/pagemap: bit 63 = present)."""
    lo = a.__array_interface__["data"][0]
    first, last = lo // 4096, (lo + a.nbytes - 1) // 4096
    with open("/proc/self/pagemap", "rb") as pm:
        pm.seek(first * 8)
        raw = pm.read((last - first + 1) * 8)
    entries = np.frombuffer(raw, dtype="<u8")
    return float(np.mean(entries >> np.uint64(63)))


@pytest.mark.skipif(not Path("/proc/self/pagemap").exists(), reason="Linux pagemap needed")
def test_ring_memory_is_resident_from_the_start_so_the_service_rss_stays_flat() -> None:
    # Found by the soak: np.zeros left the ring's pages unmapped, so the service's RSS rose
    # with every clip sample for the first 40 min (46 MB/h at 100 Hz) and looked like a leak.
    tl = AngleTimeline()  # the service's default capacity (31 MB for both copies)
    rings = (tl._t, tl._seq, tl._dev, tl._gen, tl._ang, tl._st)
    assert sum(r.nbytes for r in rings) > 30e6
    for r in rings:
        assert _resident_fraction(r) == 1.0
        assert not r.any()  # still an empty ring
    tl.append(1.0, 1, 10_000, 1.0, 2.0, 3.0, 0)
    assert tl.angles_at(1.0) is not None
