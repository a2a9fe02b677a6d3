"""Clock sync against simulated USB streams: drift ±200 ppm, 0–20 ms latency jitter, 100 ms
stalls, tick wrap, long silences, reboots and host clock steps."""

from __future__ import annotations

import numpy as np
import pytest
from dgsclip.protocol import TICKS_MASK, TICKS_PERIOD

from edge_service.clip.clocksync import ClockSync, TickUnwrapper

HOST0 = 1_763_900_000.0


def simulate(
    duration_s: float,
    ppm: float,
    rate_hz: int = 100,
    seed: int = 0,
    tick0: int = 0,
    stalls: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true host times, raw 30-bit device ticks, arrival times)."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * rate_hz)
    true = HOST0 + np.arange(n) / rate_hz
    dev = tick0 + np.round(np.arange(n) / rate_hz * (1 + ppm * 1e-6) * 1e6).astype(np.int64)
    arrival = true + rng.uniform(0.0, 0.020, n)
    if stalls:
        k = 0
        while True:
            k += int(rng.integers(2 * rate_hz, 10 * rate_hz))
            if k >= n:
                break
            end = min(n - 1, k + rate_hz // 10)  # a 100 ms stall: everything waits for `end`
            arrival[k:end] = np.maximum(arrival[k:end], true[end])
    return true, dev & TICKS_MASK, arrival


def run(cs: ClockSync, dev: np.ndarray, arrival: np.ndarray) -> np.ndarray:
    return np.array([cs.observe(int(d), float(a))[1] for d, a in zip(dev, arrival, strict=True)])


@pytest.mark.parametrize(("ppm", "seed"), [(200.0, 0), (-200.0, 1), (0.0, 2)])
def test_error_under_1ms_p95_after_30s(ppm: float, seed: int) -> None:
    true, dev, arr = simulate(60, ppm, seed=seed)
    cs = ClockSync()
    est = run(cs, dev, arr)
    late = slice(30 * 100, None)
    err = np.abs(est[late] - true[late])
    naive = np.abs(arr[late] - true[late])
    assert np.percentile(err, 95) < 1e-3
    assert np.percentile(err, 95) < np.percentile(naive, 95) / 10
    assert cs.synced
    assert abs(cs.drift_ppm + ppm) < 50  # host-per-device drift is the opposite sign
    # The stated uncertainty is honest: the true error is within a few sigma of it.
    assert abs(est[-1] - true[-1]) < 5 * cs.uncertainty_s + 0.5e-3


def test_stalled_bins_are_rejected() -> None:
    true, dev, arr = simulate(40, 100.0, seed=4, stalls=False)
    # Stall whole bins for 150 ms: their minima sit far above the envelope.
    for s in (1000, 2300, 3100):
        arr[s : s + 100] = true[s : s + 100] + 0.150
    cs = ClockSync()
    est = run(cs, dev, arr)
    assert cs.state().rejected_bins >= 3
    assert np.percentile(np.abs(est[-500:] - true[-500:]), 95) < 1e-3


def test_tick_wrap_during_stream() -> None:
    true, dev, arr = simulate(30, 150.0, seed=5, tick0=TICKS_PERIOD - 10_000_000)
    assert (np.diff(dev.astype(np.int64)) < 0).any()  # the raw ticks did wrap
    cs = ClockSync()
    est = run(cs, dev, arr)
    assert np.all(np.diff(est[-1000:]) > 0)
    assert np.percentile(np.abs(est[-1000:] - true[-1000:]), 95) < 1e-3


def test_unwrapper_uses_host_time_across_long_silence() -> None:
    u = TickUnwrapper()
    assert u.unwrap(TICKS_MASK - 5, 100.0) == TICKS_MASK - 5
    assert u.unwrap(10, 100.001) == TICKS_PERIOD + 10  # plain wrap
    # 40 minutes of silence = more than two full wraps; the host clock tells how many.
    gap_us = 40 * 60 * 1_000_000
    raw = (TICKS_PERIOD + 10 + gap_us) & TICKS_MASK
    assert u.unwrap(raw, 100.001 + gap_us / 1e6) == TICKS_PERIOD + 10 + gap_us
    # A frame stamped slightly earlier than the previous one unwraps backwards, not +1 wrap.
    assert u.unwrap(raw - 50, 100.001 + gap_us / 1e6 + 0.0001) == TICKS_PERIOD + 10 + gap_us - 50


def test_reset_starts_a_new_generation() -> None:
    _true, dev, arr = simulate(20, 200.0, seed=6)
    cs = ClockSync()
    run(cs, dev, arr)
    assert cs.synced and cs.generation == 0
    cs.reset("clip rebooted")
    assert not cs.synced and cs.generation == 1 and cs.resets == 1
    # After the reboot the device ticks restart at 0 with a new offset.
    true2, dev2, arr2 = simulate(20, 200.0, seed=7)
    est = run(cs, dev2, arr2 + 50.0)
    assert np.percentile(np.abs(est[-500:] - (true2[-500:] + 50.0)), 95) < 1e-3


def test_host_clock_step_backwards_triggers_refit() -> None:
    true, dev, arr = simulate(30, 0.0, seed=8, stalls=False)
    step = np.zeros_like(arr)
    step[1500:] = -0.5  # NTP stepped the host clock back by 500 ms
    cs = ClockSync()
    est = run(cs, dev, arr + step)
    assert cs.resets == 1
    assert np.percentile(np.abs(est[-500:] - (true[-500:] - 0.5)), 95) < 1e-3


def test_to_host_before_data_is_an_error() -> None:
    with pytest.raises(ValueError, match="no data"):
        ClockSync().to_host(0)


def test_latency_floor_is_subtracted() -> None:
    from edge_service.clip.settings import ClockSyncSettings

    true, dev, arr = simulate(20, 50.0, seed=9, stalls=False)
    arr = arr + 0.002  # a 2 ms constant delay (clip processing + USB) the envelope cannot see
    plain = run(ClockSync(), dev, arr)
    floored = run(ClockSync(ClockSyncSettings(latency_floor_s=0.002)), dev, arr)
    assert np.median(plain[-500:] - true[-500:]) > 1.5e-3
    assert np.percentile(np.abs(floored[-500:] - true[-500:]), 95) < 1e-3
