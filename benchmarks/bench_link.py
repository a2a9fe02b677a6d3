"""Clip link benchmarks: host decoder throughput on one core, clock-sync error after 10 s and
10 min of simulated streaming (drift ±200 ppm, 0–20 ms USB latency jitter, 100 ms stalls)
side by side with the naive host-arrival timestamp."""

from __future__ import annotations

import os
import platform
import random
import time

import numpy as np
from dgsclip import framing
from dgsclip import protocol as P

from edge_service.clip.clocksync import ClockSync
from edge_service.clip.decoder import FrameDecoder

CLIP_MAX_HZ = 200
GOAL_RATIO = 100


def _stream(n: int, pelvis_every: int = 0) -> bytes:
    rng = random.Random(0)
    e = P.Encoder()
    out = bytearray()
    for i in range(n):
        pq = (16000, 10, -20, 30) if pelvis_every and i % pelvis_every == 0 else None
        out += e.sample(
            None,
            i * 5000,
            rng.randint(-9000, 9000),
            rng.randint(-3000, 3000),
            rng.randint(-4000, 4000),
            (16384, 0, 0, 0),
            P.FLAG_CALIBRATED,
            0,
            0,
            pq,
        )
    return bytes(out)


def _decode_rate(data: bytes, n: int, chunk: int = 4096, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        dec = FrameDecoder()
        t0 = time.perf_counter()
        got = 0
        for i in range(0, len(data), chunk):
            got += len(dec.feed(data[i : i + chunk]))
        best = min(best, time.perf_counter() - t0)
        assert got == n and dec.stats.samples == n
    return n / best


def _portable_rate(data: bytes, n: int) -> float:
    """The clip-side MicroPython code path (pure-Python COBS + table CRC) run on CPython."""
    saved = framing._crc_hqx
    framing._crc_hqx = None  # force the table CRC used on MicroPython
    try:
        chunks = data.split(b"\x00")[:-1]
        dst = bytearray(P.MAX_FRAME)
        t0 = time.perf_counter()
        for c in chunks:
            P.unframe(c, len(c), dst)
        return len(chunks) / (time.perf_counter() - t0)
    finally:
        framing._crc_hqx = saved


def _encode_us(n: int = 20000) -> float:
    e = P.Encoder()
    t0 = time.perf_counter()
    for i in range(n):
        e.sample(None, i, 100, 200, 300, (16384, 0, 0, 0), 1, 0, 0)
    return (time.perf_counter() - t0) / n * 1e6


def simulate(
    duration_s: float, ppm: float, seed: int, rate_hz: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true host times, raw 30-bit ticks, arrival times): uniform 0-20 ms latency, a 100 ms
    stall every 2-10 s (frames queue until the stall ends), device ticks starting 3 s before
    the 30-bit wrap."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * rate_hz)
    true = 1_763_900_000.0 + np.arange(n) / rate_hz
    tick0 = P.TICKS_PERIOD - 3_000_000
    dev = tick0 + np.round(np.arange(n) / rate_hz * (1 + ppm * 1e-6) * 1e6).astype(np.int64)
    arrival = true + rng.uniform(0.0, 0.020, n)
    k = 0
    while True:
        k += int(rng.integers(2 * rate_hz, 10 * rate_hz))
        if k >= n:
            break
        end = min(n - 1, k + rate_hz // 10)
        arrival[k:end] = np.maximum(arrival[k:end], true[end])
    return true, dev & P.TICKS_MASK, arrival


def _clock_errors(duration_s: float, seeds: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
    """|error| of the online estimate and of naive arrival time over the last second before
    `duration_s`, pooled over seeds and drift ±200 ppm; plus µs per observe()."""
    errs, naive = [], []
    spent = 0.0
    count = 0
    for seed in seeds:
        for ppm in (200.0, -200.0):
            true, dev, arr = simulate(duration_s, ppm, seed)
            cs = ClockSync()
            est = np.empty(len(true))
            t0 = time.perf_counter()
            for i in range(len(true)):
                est[i] = cs.observe(int(dev[i]), float(arr[i]))[1]
            spent += time.perf_counter() - t0
            count += len(true)
            last = slice(len(true) - 100, None)
            errs.append(np.abs(est[last] - true[last]))
            naive.append(np.abs(arr[last] - true[last]))
    return np.concatenate(errs), np.concatenate(naive), spent / count * 1e6


def _pty_end_to_end(seconds: float, rate_hz: int = 200) -> tuple[float, float, int, int]:
    """A real pty through pyserial into ClipLink: the encoder writes SAMPLE frames at
    rate_hz on the master; returns (p50, p95 of write -> subscriber latency in ms, samples
    sent, samples delivered)."""
    import tty

    from edge_service.clip.link import ClipLink
    from edge_service.clip.settings import ClipLinkSettings

    m, sl = os.openpty()
    tty.setraw(sl)
    sent_at: dict[int, float] = {}
    lat: list[float] = []

    def on_sample(ts: object) -> None:
        s = ts.sample  # type: ignore[attr-defined]
        lat.append(time.time() - sent_at[s.seq])

    e = P.Encoder()
    t0 = time.monotonic()
    n = int(seconds * rate_hz)
    try:
        with ClipLink(ClipLinkSettings(), port=os.ttyname(sl)) as link:
            link.subscribe(on_sample)
            for i in range(n):
                due = t0 + i / rate_hz
                while (now := time.monotonic()) < due:
                    time.sleep(min(due - now, 0.002))
                f = bytes(e.sample(None, int((now - t0) * 1e6), i, 0, 0, (16384, 0, 0, 0), 1))
                sent_at[i] = time.time()
                os.write(m, f)
            deadline = time.monotonic() + 2.0
            while len(lat) < n and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        os.close(m)
        os.close(sl)
    a = np.array(lat) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 95)), n, len(lat)


def run(quick: bool = False) -> str:
    n = 20_000 if quick else 100_000
    data = _stream(n)
    data_p = _stream(n, pelvis_every=1)
    part = data[: len(data) // 10]
    # Interleaved, best of 5 each: the machine is shared, so peers run side by side.
    rate = rate_p = port_rate = 0.0
    for _ in range(5):
        rate = max(rate, _decode_rate(data, n, repeats=1))
        rate_p = max(rate_p, _decode_rate(data_p, n, repeats=1))
        port_rate = max(port_rate, _portable_rate(part, n // 10))
    enc_us = _encode_us(5000 if quick else 20000)
    need = CLIP_MAX_HZ
    lines = [
        "## Clip link",
        "",
        "| measure | value | goal | ratio |",
        "|---|---:|---:|---:|",
        f"| decoder throughput, thigh samples (20 B payload) | {rate:,.0f} samples/s | "
        f"≥ {GOAL_RATIO * need:,} samples/s | {rate / need:,.0f}× the 200 Hz clip |",
        f"| decoder throughput, thigh + pelvis (28 B payload) | {rate_p:,.0f} samples/s | "
        f"≥ {GOAL_RATIO * need:,} samples/s | {rate_p / need:,.0f}× the 200 Hz clip |",
        f"| portable MicroPython code path on CPython (`protocol.unframe`, table CRC) | "
        f"{port_rate:,.0f} frames/s | - | {rate / port_rate:.1f}× slower than the host decoder |",
        f"| clip-side `Encoder.sample` on CPython | {enc_us:.1f} µs/frame | - | - |",
    ]
    seeds = [1, 2] if quick else [1, 2, 3, 4, 5]
    for dur, label in ((10.0, "10 s"), (600.0, "10 min")):
        e, nv, us = _clock_errors(dur, seeds)
        p95, p95n = np.percentile(e, 95) * 1e3, np.percentile(nv, 95) * 1e3
        lines.append(
            f"| clock-sync error p95 after {label} (naive arrival time: {p95n:.2f} ms) | "
            f"{p95:.3f} ms | ≤ 1 ms | {p95n / max(p95, 1e-9):,.0f}× better than naive |"
        )
    lines.append(f"| clock sync cost | {us:.1f} µs/sample | - | - |")
    p50, p95, n_sent, n_got = _pty_end_to_end(3.0 if quick else 10.0)
    lines.append(
        f"| pty end to end at 200 Hz (write → subscriber), p50 / p95 | {p50:.2f} / {p95:.2f} ms "
        f"| - | {n_got}/{n_sent} samples delivered |"
    )
    lines += [
        "",
        f"Method: {n:,} encoded SAMPLE frames fed to `FrameDecoder.feed` in 4 KiB reads on one "
        "core (interleaved, best of 5); clock sync on 100 Hz streams with drift ±200 ppm, uniform 0–20 ms "
        f"latency and a 100 ms stall every 2–10 s, ticks crossing the 30-bit wrap, {len(seeds)} "
        "seeds × both drift signs, error = |estimate − true send time| over the last second "
        "before the mark; end to end: the encoder writes 200 Hz frames into a real pty read by "
        f"`ClipLink` through pyserial (reader thread, decoder, clock sync, subscriber). Machine: {platform.machine()}, {os.cpu_count()} logical CPUs "
        f"(shared), Python {platform.python_version()}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick=True))
