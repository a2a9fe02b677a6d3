"""Clip fusion accuracy and cost: dgsclip (firmware Mahony + stationary bias) vs imufusion
(x-io Fusion AHRS + its gyro Bias) vs ahrs (Madgwick), on the same simulated samples, the
same neutral + functional calibration and the same ISB hip-angle decomposition.
"""

from __future__ import annotations

import time
from array import array

import numpy as np
from dgsclip.calib import Calibration, Calibrator
from dgsclip.fusion import Mahony
from dgsclip.hip import HipAngles
from dgsclip.pipeline import MODE_FUNCTIONAL, MODE_NEUTRAL, Pipeline

from edge_service.sim.imu import (
    CAL_FUNCTIONAL_S,
    CAL_NEUTRAL_S,
    ImuSamples,
    simulate_imu,
    with_calibration,
)
from edge_service.sim.motion import manoeuvre

RATE = 100
# RP2040 assumption for the headroom column: Cortex-M0+ at 125 MHz without an FPU runs this
# float-heavy MicroPython bytecode ~40x slower than the WebAssembly port on a desktop-class
# x86 core (order of magnitude from published MicroPython pystone/float loop figures); the
# I2C read of one 6-axis sample at 400 kHz adds ~0.45 ms.
RP2040_SLOWDOWN = 40.0
I2C_READ_MS = 0.45


def _ours(s: ImuSamples, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Angles, and the gyro with dgsclip's running bias estimate removed (for Madgwick+bias)."""
    p = Pipeline(side)
    out = np.empty((len(s.t_s), 3))
    gcorr = np.empty((len(s.t_s), 3))
    n0, n1 = (int(x * RATE) for x in CAL_NEUTRAL_S)
    f0, f1 = (int(x * RATE) for x in CAL_FUNCTIONAL_S)
    for i in range(len(s.t_s)):
        if i == n0:
            p.begin_calibration(MODE_NEUTRAL, n1 - n0)
        if i == f0:
            p.begin_calibration(MODE_FUNCTIONAL, f1 - f0)
        gcorr[i] = s.gyro_dps[i] - np.asarray(p.thigh.bias)
        p.update(s.gyro_dps[i], s.accel_g[i], 1.0 / RATE)
        out[i] = p.angles
    return out, gcorr


def _peer(s: ImuSamples, side: str, quats: np.ndarray, gyro_corr: np.ndarray) -> np.ndarray:
    """Same calibration and hip angles on a peer's quaternions (w, x, y, z, sensor->earth)."""
    cal, c, hip = Calibration(), Calibrator(), HipAngles(side)
    n0, n1 = (int(x * RATE) for x in CAL_NEUTRAL_S)
    f0, f1 = (int(x * RATE) for x in CAL_FUNCTIONAL_S)
    c.start_neutral()
    for i in range(n0, n1):
        c.add_neutral(*s.accel_g[i], array("f", quats[i]))
    c.finish_neutral(cal)
    c.start_functional()
    for i in range(f0, f1):
        c.add_functional(*gyro_corr[i])
    c.finish_functional(cal)
    # Pelvis reference: the neutral pose captured at the end of the neutral window.
    from dgsclip import quat

    q_seg = array("f", [0.0] * 4)
    out = np.empty((len(s.t_s), 3))
    for i in range(len(s.t_s)):
        quat.mul_into(q_seg, array("f", quats[i]), cal.mount)
        out[i] = hip.compute(cal.pelvis_ref, q_seg)
    return out


def _imufusion(s: ImuSamples) -> tuple[np.ndarray, np.ndarray]:
    import imufusion

    ahrs = imufusion.Ahrs()
    st = imufusion.AhrsSettings()
    st.sample_rate = float(RATE)
    st.gain = 0.5
    st.gyroscope_range = 500.0
    st.acceleration_rejection = 10.0
    st.rejection_timeout = 5 * RATE
    ahrs.set_settings(st)
    bias = imufusion.Bias()
    bs = imufusion.BiasSettings()
    bs.sample_rate = float(RATE)
    bs.stationary_period = 0.5  # default 3 s would learn nothing in the 3 s neutral stand
    bias.set_settings(bs)
    q = np.empty((len(s.t_s), 4))
    g = np.empty((len(s.t_s), 3))
    for i in range(len(s.t_s)):
        g[i] = bias.update(np.asarray(s.gyro_dps[i], dtype=float))
        ahrs.update_no_magnetometer(g[i], np.asarray(s.accel_g[i], dtype=float))
        q[i] = ahrs.get_quaternion()
    return q, g


def _ahrs_madgwick(s: ImuSamples, gyro_dps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ahrs.filters import Madgwick

    m = Mahony()
    m.update(0, 0, 0, *s.accel_g[0], 0.0)  # same initial tilt from the first accel sample
    mad = Madgwick(
        gyr=np.radians(gyro_dps),
        acc=s.accel_g * 9.80665,
        frequency=float(RATE),
        q0=np.array(m.q, dtype=float),
    )
    return mad.Q, gyro_dps


def _rmse(est: np.ndarray, s: ImuSamples, offset: float) -> np.ndarray:
    sel = s.t_s >= offset
    return np.sqrt(((est[sel] - s.angles_deg[sel]) ** 2).mean(0))


def _cost_cpython(s: ImuSamples) -> dict[str, float]:
    """Best of 3 repetitions per implementation (µs per update)."""
    n = min(2000, len(s.t_s))
    import imufusion
    from ahrs.filters import Madgwick

    g = [np.asarray(x, dtype=float) for x in s.gyro_dps[:n]]
    acc = [np.asarray(x, dtype=float) for x in s.accel_g[:n]]
    gr = np.radians(s.gyro_dps[:n])
    ar = s.accel_g[:n] * 9.80665

    def ours() -> None:
        p = Pipeline("left")
        for i in range(n):
            p.update(s.gyro_dps[i], s.accel_g[i], 0.01)

    def fusion() -> None:
        a = imufusion.Ahrs()
        b = imufusion.Bias()
        for i in range(n):
            a.update_no_magnetometer(b.update(g[i]), acc[i])

    def madgwick() -> None:
        mad = Madgwick(frequency=float(RATE))
        q = np.array([1.0, 0, 0, 0])
        for i in range(n):
            q = mad.updateIMU(q, gyr=gr[i], acc=ar[i])

    res = {}
    for name, fn in (
        ("dgsclip (CPython)", ours),
        ("imufusion (C ext.)", fusion),
        ("ahrs Madgwick (numpy)", madgwick),
    ):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        res[name] = best / n * 1e6
    return res


def _cost_wasm() -> float | None:
    """µs per Pipeline.update (fusion + hip angles) in the MicroPython WebAssembly port."""
    import shutil

    from tests.harness.mpwasm import MJS, MpWasm

    node = shutil.which("node")
    if node is None or not MJS.exists():
        return None
    script = """
import time
from dgsclip.pipeline import Pipeline
from array import array
p = Pipeline('left')
g = array('f', (1.0, -2.0, 30.0)); a = array('f', (0.05, 0.99, 0.1))
N = 2000
best = 1e9
for rep in range(5):  # the host is shared: keep the least-disturbed repetition
    t = time.ticks_us()
    for i in range(N):
        p.update(g, a, 0.01)
    best = min(best, time.ticks_diff(time.ticks_us(), t) / N)
print('US', best)
"""
    res = MpWasm(node).run(script).check()
    line = [x for x in res.stdout.splitlines() if x.startswith("US")][-1]
    return float(line.split()[1])


def run(quick: bool = False) -> str:
    seeds = range(2) if quick else range(6)
    rows: list[str] = []
    summary: dict[str, list[np.ndarray]] = {}
    last: ImuSamples | None = None
    for kind in ("fair", "piriformis"):
        acc: dict[str, list[np.ndarray]] = {
            "dgsclip": [],
            "imufusion": [],
            "ahrs Madgwick": [],
            "ahrs Madgwick + dgsclip bias": [],
        }
        for seed in seeds:
            side = "left" if seed % 2 == 0 else "right"
            motion, offset = with_calibration(manoeuvre(kind))
            s = simulate_imu(motion, side=side, rate_hz=RATE, seed=100 + seed)
            last = s
            ours, gcorr = _ours(s, side)
            acc["dgsclip"].append(_rmse(ours, s, offset))
            q, g = _imufusion(s)
            acc["imufusion"].append(_rmse(_peer(s, side, q, g), s, offset))
            # ahrs has no gyro-bias estimator: once with the raw gyro (the library as is),
            # once with dgsclip's bias removed (compares the filter cores alone).
            q, g = _ahrs_madgwick(s, s.gyro_dps)
            acc["ahrs Madgwick"].append(_rmse(_peer(s, side, q, g), s, offset))
            q, g = _ahrs_madgwick(s, gcorr)
            acc["ahrs Madgwick + dgsclip bias"].append(_rmse(_peer(s, side, q, g), s, offset))
        ours = np.sqrt(np.mean(np.square(acc["dgsclip"]), axis=0))
        for name, vals in acc.items():
            r = np.sqrt(np.mean(np.square(vals), axis=0))
            summary.setdefault(name, []).append(r)
            ratio = np.sqrt(np.mean(r**2)) / np.sqrt(np.mean(ours**2))
            rows.append(
                f"| {kind} | {name} | {r[0]:.2f} | {r[1]:.2f} | {r[2]:.2f} | {r.max():.2f} | {ratio:.2f}x |"
            )
    assert last is not None
    cost = _cost_cpython(last)
    wasm = _cost_wasm()
    lines = [
        "## Fusion and hip angles (clip firmware)",
        "",
        "RMSE (deg) of ISB hip angles vs ground truth after neutral + functional calibration;",
        f"{len(seeds)} seeds per manoeuvre (left/right alternating), 100 Hz, gyro noise 0.1 deg/s,",
        "turn-on bias up to 2 deg/s per axis, bias random walk 0.01 deg/s/sqrt(s), accel noise 5 mg,",
        "mounting tilt up to 15 deg and yaw up to 10 deg. Goal: <= 2 deg per axis. Ratio = peer RMSE /",
        "dgsclip RMSE (all three axes), so > 1 means the peer is worse.",
        "",
        "| manoeuvre | filter | flexion | adduction | rotation | worst axis | ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Cost of one update (fusion + hip angles for dgsclip; fusion only for the peers; best of",
        "several repetitions because the host is shared):",
        "",
        "| implementation | µs / update | implied RP2040 load at 100 Hz |",
        "|---|---:|---:|",
    ]
    for name, us in cost.items():
        lines.append(f"| {name} | {us:.1f} | n/a (host only) |")
    if wasm is not None:
        rp_ms = wasm * RP2040_SLOWDOWN / 1000 + I2C_READ_MS
        lines.append(
            f"| dgsclip (MicroPython WebAssembly port) | {wasm:.1f} | ~{rp_ms:.1f} ms of 10 ms "
            f"({100 * rp_ms / 10:.0f}%, headroom {10 / rp_ms:.1f}x) |"
        )
    lines += [
        "",
        "Method: every filter sees the identical simulated samples (edge_service.sim.imu); the",
        "peers' quaternions go through the same dgsclip calibration (mean gravity + principal",
        "gyro axis) and ISB Z-X-Y decomposition. imufusion uses its own gyro Bias estimator",
        "(stationary period shortened to 0.5 s like dgsclip's) and acceleration rejection; ahrs",
        "Madgwick has no bias estimator: raw gyro, and again with dgsclip's running bias removed.",
        "Without a magnetometer heading is gyro-only, so residual bias during the swings shows up",
        "as adduction/rotation error (heading at 90 deg flexion = ab/adduction).",
        f"RP2040 estimate assumes {RP2040_SLOWDOWN:.0f}x slower bytecode than the wasm port on this",
        f"host plus {I2C_READ_MS} ms for the I2C read; not measured on hardware. A load above",
        "100% means 100 Hz does not fit on an RP2040 under that assumption: use 50 Hz there",
        "(config rate_hz) or an FPU board (ESP32-S3, RP2350), or compile with @micropython.native.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))
