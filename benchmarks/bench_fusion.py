"""Clip fusion accuracy: dgsclip (firmware Mahony + stationary bias) vs imufusion (x-io
Fusion AHRS + its gyro Bias algorithm) vs ahrs Madgwick, each run as its documentation
recommends, on the same simulated samples, with the same start-up gyro offset, the same
neutral + functional calibration (dgsclip's, incl. the pelvis alignment) and the same ISB
hip-angle decomposition.

How "the same calibration" is guaranteed: the peers' quaternions (and gyro offsets) are
replayed through dgsclip's own Pipeline in place of its Mahony filters, so calibration,
pelvis alignment and angle code are byte-for-byte the firmware's.
"""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass

import numpy as np
from dgsclip.pipeline import MODE_FUNCTIONAL, MODE_NEUTRAL, Pipeline

from edge_service.sim.body import BodyConditions
from edge_service.sim.imu import (
    CAL_FUNCTIONAL_S,
    CAL_NEUTRAL_S,
    ImuSamples,
    simulate_imu,
    with_calibration,
)
from edge_service.sim.motion import HipMotion, Segment, manoeuvre

RATE = 100
MADGWICK_GAIN = 0.033  # ahrs.filters.Madgwick's documented default gain for IMU (no mag)
STATIC = BodyConditions(wobble_deg=(0.0, 0.0, 0.0), cal_tilt_frac=(0.0, 0.0))

SETTINGS = (
    "imufusion 1.3 (x-io Fusion): `Bias` (its gyro offset algorithm, default settings:"
    " stationary threshold 3 deg/s, period 3 s) seeded with the neutral-window offset,"
    " `Ahrs` with the settings of its README example (NWU, gain 0.5, gyroscope range"
    " 2000 deg/s, acceleration rejection 10 deg, rejection timeout 5 s);"
    f" ahrs 0.4 Madgwick (IMU, documented gain {MADGWICK_GAIN}) on the gyro minus the"
    " neutral-window offset (it has no bias estimator)."
)


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    pelvis: bool = False
    body: BodyConditions | None = None
    brisk: bool = False


SCENARIOS = (
    Scenario("FAIR (supine, static pelvis)", "fair"),
    Scenario("seated piriformis (static pelvis)", "piriformis"),
    Scenario("brisk FAIR: linear acceleration, accel bias", "fair", body=STATIC, brisk=True),
    Scenario("FAIR, pelvis clip, pelvis moving", "fair", True, BodyConditions()),
    Scenario(
        "standing -> supine + FAIR, pelvis clip", "fair", True, BodyConditions(posture_deg=90.0)
    ),
    Scenario("seated piriformis, pelvis clip, pelvis moving", "piriformis", True, BodyConditions()),
)


def brisk(m: HipMotion, factor: float = 0.25) -> HipMotion:
    """The same poses with every movement `factor` times as long (holds unchanged)."""
    segs, prev = [], m.start
    for s in m.segments:
        d = s.duration_s * factor if s.pose != prev else s.duration_s
        segs.append(Segment(d, s.pose, s.label))
        prev = s.pose
    return HipMotion(m.start, tuple(segs))


class _Replayed:
    """Stands in for a Mahony filter inside Pipeline: yields a peer's quaternions (as the
    fixed-point state the Pipeline reads, S[0:4] in Q28)."""

    def __init__(self, quats: np.ndarray, biases: np.ndarray) -> None:
        self.quats, self.biases = quats, biases
        self.q = array("f", quats[0])
        self.bias = array("f", biases[0])
        self.S = array("i", (1 << 28, 0, 0, 0))
        self.i = 0

    # The peers were given the neutral-window offset already (neutral_offset).
    def window_start(self) -> None:
        pass

    def window_add_fx(self, *_args: object) -> None:
        pass

    def window_seed_bias(self) -> bool:
        return False

    def sync(self) -> None:
        pass

    def update_fx(self, *_args: object) -> int:
        i = self.i
        q = self.quats[i]
        self.q[0], self.q[1], self.q[2], self.q[3] = q
        for k in range(4):
            self.S[k] = round(float(q[k]) * (1 << 28))
        self.bias[0], self.bias[1], self.bias[2] = self.biases[i]
        self.i = i + 1
        return 0


def _calibrated_angles(s: ImuSamples, side: str, pelvis: bool, peer=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    p = Pipeline(side, pelvis)
    if peer is not None:
        p.thigh = peer[0]
        if pelvis:
            p.pelvis = peer[1]
        # The relative-bias learner writes into dgsclip's own filter state; the peers'
        # biases live inside their libraries, so they run without it (as documented).
        if p.relbias is not None:
            p.relbias.enabled = False
    n0, n1 = (int(x * RATE) for x in CAL_NEUTRAL_S)
    f0, f1 = (int(x * RATE) for x in CAL_FUNCTIONAL_S)
    out = np.empty((len(s.t_s), 3))
    pg = s.pelvis_gyro_dps if pelvis else None
    pa = s.pelvis_accel_g if pelvis else None
    for i in range(len(s.t_s)):
        if i == n0:
            p.begin_calibration(MODE_NEUTRAL, n1 - n0)
        if i == f0:
            p.begin_calibration(MODE_FUNCTIONAL, f1 - f0)
        p.update(
            s.gyro_dps[i],
            s.accel_g[i],
            1.0 / RATE,
            None if pg is None else pg[i],
            None if pa is None else pa[i],
        )
        if p.cal_done is not None and p.cal_done[1] is not None:
            raise RuntimeError(f"calibration failed: {p.cal_done[1]}")
        out[i] = p.angles
    return out


def neutral_offset(gyro: np.ndarray) -> np.ndarray:
    """The start-up gyro offset every filter gets: mean over the neutral window."""
    n0, n1 = (int(x * RATE) for x in CAL_NEUTRAL_S)
    return gyro[n0:n1].mean(0)


def _imufusion(gyro: np.ndarray, accel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import imufusion

    ahrs = imufusion.Ahrs()
    ahrs.set_settings(
        imufusion.AhrsSettings(
            sample_rate=float(RATE),
            convention=imufusion.CONVENTION_NWU,
            gain=0.5,
            gyroscope_range=2000.0,
            acceleration_rejection=10.0,
            magnetic_rejection=10.0,
            rejection_timeout=5.0 * RATE,
        )
    )
    bias = imufusion.Bias()
    bias.set_settings(imufusion.BiasSettings(sample_rate=float(RATE)))
    bias.set_offset(neutral_offset(gyro))
    q = np.empty((len(gyro), 4))
    b = np.empty((len(gyro), 3))
    for i in range(len(gyro)):
        g = bias.update(np.asarray(gyro[i], dtype=float))
        b[i] = bias.get_offset()
        ahrs.update_no_magnetometer(g, np.asarray(accel[i], dtype=float))
        q[i] = ahrs.get_quaternion()
    return q, b


def _madgwick(gyro: np.ndarray, accel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ahrs.filters import Madgwick
    from dgsclip.fusion import Mahony

    off = neutral_offset(gyro)
    m = Mahony()
    m.update(0, 0, 0, *accel[0], 0.0)  # same initial tilt from the first accel sample
    mad = Madgwick(
        gyr=np.radians(gyro - off),
        acc=accel * 9.80665,
        frequency=float(RATE),
        gain=MADGWICK_GAIN,
        q0=np.array(m.q, dtype=float),
    )
    return mad.Q, np.tile(off, (len(gyro), 1))


PEERS = {"imufusion": _imufusion, "ahrs Madgwick": _madgwick}


def _rmse(est: np.ndarray, s: ImuSamples, offset: float) -> np.ndarray:
    sel = s.t_s >= offset
    return np.sqrt(((est[sel] - s.angles_deg[sel]) ** 2).mean(0))


def evaluate(sc: Scenario, seed: int) -> dict[str, np.ndarray]:
    side = "left" if seed % 2 == 0 else "right"
    base = manoeuvre(sc.kind)  # type: ignore[arg-type]
    motion, offset = with_calibration(brisk(base) if sc.brisk else base)
    s = simulate_imu(
        motion,
        side=side,
        rate_hz=RATE,
        seed=100 + seed,
        pelvis=sc.pelvis,
        body=sc.body,
        manoeuvre_s=offset if sc.body is not None else None,
    )
    res = {"dgsclip": _rmse(_calibrated_angles(s, side, sc.pelvis), s, offset)}
    for name, fn in PEERS.items():
        filters = [_Replayed(*fn(s.gyro_dps, s.accel_g))]
        if sc.pelvis:
            assert s.pelvis_gyro_dps is not None and s.pelvis_accel_g is not None
            filters.append(_Replayed(*fn(s.pelvis_gyro_dps, s.pelvis_accel_g)))
        res[name] = _rmse(_calibrated_angles(s, side, sc.pelvis, filters), s, offset)
    return res


def _cost_cpython() -> dict[str, float]:
    """Best of 3 repetitions per implementation (µs per update, one sensor)."""
    n = 2000
    import imufusion
    from ahrs.filters import Madgwick

    rng = np.random.default_rng(0)
    gyro = rng.normal(0, 5, (n, 3))
    acc = np.tile([0.05, 0.99, 0.1], (n, 1))
    g = [np.asarray(x, dtype=float) for x in gyro]
    a = [np.asarray(x, dtype=float) for x in acc]

    def ours() -> None:
        p = Pipeline("left")
        for i in range(n):
            p.update(g[i], a[i], 0.01)

    def fusion() -> None:
        ahrs, b = imufusion.Ahrs(), imufusion.Bias()
        for i in range(n):
            ahrs.update_no_magnetometer(b.update(g[i]), a[i])

    def madgwick() -> None:
        mad = Madgwick(frequency=float(RATE), gain=MADGWICK_GAIN)
        q = np.array([1.0, 0, 0, 0])
        for i in range(n):
            q = mad.updateIMU(q, gyr=np.radians(g[i]), acc=a[i] * 9.80665)

    res = {}
    for name, fn in (
        ("dgsclip Pipeline (CPython)", ours),
        ("imufusion (C extension)", fusion),
        ("ahrs Madgwick (numpy)", madgwick),
    ):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        res[name] = best / n * 1e6
    return res


def run(quick: bool = False) -> str:
    seeds = range(2) if quick else range(6)
    rows, ratio_rows = [], []
    for sc in SCENARIOS:
        acc: dict[str, list[np.ndarray]] = {}
        for seed in seeds:
            for name, r in evaluate(sc, seed).items():
                acc.setdefault(name, []).append(r)
        agg = {k: np.sqrt(np.mean(np.square(v), axis=0)) for k, v in acc.items()}
        for name, r in agg.items():
            worst = np.max(acc[name], axis=0)
            rows.append(
                f"| {sc.name} | {name} | {r[0]:.2f} | {r[1]:.2f} | {r[2]:.2f} | {worst.max():.2f} |"
            )
        best = np.min([agg[k] for k in PEERS], axis=0)
        ours = agg["dgsclip"]
        ratio_rows.append(
            f"| {sc.name} | "
            + " | ".join(f"{ours[i] / best[i]:.2f}x" for i in range(3))
            + f" | {'yes' if ours.max() <= 2.0 else 'no'} |"
        )
    cost = _cost_cpython()
    lines = [
        "## Fusion and hip angles (clip firmware) vs peers run as documented",
        "",
        f"RMSE (deg) of ISB hip angles vs ground truth after calibration, over {len(seeds)}",
        "seeds per scenario (left/right alternating), 100 Hz. Static-pelvis scenarios: gyro",
        "noise 0.1 deg/s, turn-on bias up to 2 deg/s, bias random walk 0.01 deg/s/sqrt(s), accel",
        "noise 5 mg, mounting tilt <= 15 deg, yaw <= 10 deg. Body scenarios (edge_service.sim.body):",
        "per-sensor mounting 3-15 deg tilt + 10 deg yaw, gyro bias 1.5 deg/s, accel bias 20 mg per",
        "axis, linear acceleration of the clip's position; pelvis scenarios add the pelvis tilting",
        "4-8 % of the flexion during the calibration swings and swaying +-10 deg heading, +-5 deg",
        "tilt, +-3 deg obliquity during the manoeuvre; 'standing -> supine' pitches the whole body",
        "90 deg after the standing calibration. 'brisk' = every movement 4x faster (ramps of 1 s).",
        "Last column: the worst single run's worst axis.",
        "",
        f"Peers: {SETTINGS} Every filter gets the same start-up gyro offset (the mean over the",
        "neutral window) and goes through dgsclip's calibration and angle code. dgsclip's",
        "pelvis rows include its relative gyro-bias learner (dgsclip.relbias.RelBias: the bias",
        "difference of the two sensors learnt during hip holds, writing into dgsclip's own",
        "filter state); the peers keep their own bias handling (their state is internal).",
        "Seeds: these rows are seeds 0-5 (sim seeds 100-105); the learner's settings were",
        "chosen on development seeds 6-13 only.",
        "",
        "| scenario | filter | flexion | adduction | rotation | worst run |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        "dgsclip RMSE / best peer's RMSE per axis (< 1: dgsclip better); goal <= 2 deg per axis:",
        "",
        "| scenario | flexion | adduction | rotation | dgsclip <= 2 deg |",
        "|---|---:|---:|---:|---|",
        *ratio_rows,
        "",
        "Cost of one update on this host (best of 3; the clip's budget on the real instruction",
        "set is in m0budget.md):",
        "",
        "| implementation | µs / update |",
        "|---|---:|",
        *(f"| {k} | {v:.1f} |" for k, v in cost.items()),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))
