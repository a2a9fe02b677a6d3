"""Simulated thigh (and pelvis) IMU from a scripted hip motion.

Ground truth: the pelvis is static and upright (segment axes x anterior, y up, z right);
the thigh segment is R_pelvis * Rz(flex) Rx(add') Ry(rot') (ISB JCS, design.md), with the
left leg mirrored (add' = -add, rot' = -rot). The sensor is mounted with a random
misalignment (tilt about x/z up to `tilt_max_deg`, yaw about the femur axis up to
`yaw_max_deg`). Gyro = body angular velocity (deg/s) by a central difference of the exact
orientation, plus white noise, a constant bias and a random-walk drift; accel = gravity
seen in the sensor frame (g) plus noise. Linear acceleration of the slow manoeuvres
(<0.05 g at the thigh clip) is neglected.

With `body=BodyConditions(...)` (edge_service.sim.body) the pelvis moves instead (tilt with
the calibration swings, wobble during the manoeuvre, optional posture change), each sensor
gets its own mounting, gyro and accelerometer bias, and the accelerometers see the linear
acceleration of the point they sit on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from edge_service.sim import body as _body
from edge_service.sim.motion import HipMotion, Segment, manoeuvre


@dataclass(frozen=True)
class ImuNoise:
    """Sensor error model; defaults are MPU-6050/LSM6DSOX datasheet-order values."""

    gyro_noise_dps: float = 0.1  # white noise, rms per sample at 100 Hz
    accel_noise_g: float = 0.005
    gyro_bias_max_dps: float = 2.0  # constant turn-on bias, uniform per axis
    gyro_drift_dps_per_sqrt_s: float = 0.01  # bias random walk
    tilt_max_deg: float = 15.0
    yaw_max_deg: float = 10.0


@dataclass
class ImuSamples:
    t_s: np.ndarray  # (N,) seconds from start
    gyro_dps: np.ndarray  # (N, 3) thigh
    accel_g: np.ndarray  # (N, 3)
    angles_deg: np.ndarray  # (N, 3) ground truth flexion, adduction, rotation
    mount: Rotation  # thigh segment -> sensor
    pelvis_gyro_dps: np.ndarray | None = None
    pelvis_accel_g: np.ndarray | None = None
    pelvis_mount: Rotation | None = None
    labels: list[str] = field(default_factory=list)
    # True gyro bias per sample (deg/s; body conditions only), to check the estimators.
    gyro_bias_dps: np.ndarray | None = None
    pelvis_gyro_bias_dps: np.ndarray | None = None


def hip_rotation(angles_deg: np.ndarray | Sequence[float], side: str) -> Rotation:
    """Rotation of the thigh segment relative to the pelvis for ISB angles (mirrored left)."""
    a = np.atleast_2d(np.asarray(angles_deg, dtype=float)).copy()
    if side == "left":
        a[:, 1:] *= -1.0
    elif side != "right":
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    return Rotation.from_euler("ZXY", a, degrees=True)


def random_mount(rng: np.random.Generator, tilt_max_deg: float, yaw_max_deg: float) -> Rotation:
    tilt = rng.uniform(-1.0, 1.0, 2) * tilt_max_deg / np.sqrt(2.0)
    yaw = rng.uniform(-1.0, 1.0) * yaw_max_deg
    return Rotation.from_euler("XZY", [tilt[0], tilt[1], yaw], degrees=True)


def _body_signals(
    orient: Callable[[np.ndarray], Rotation],
    t: np.ndarray,
    h: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    r_minus = orient(t - h / 2)
    r_plus = orient(t + h / 2)
    gyro = np.degrees((r_minus.inv() * r_plus).as_rotvec()) / h
    up_world = np.array([0.0, 1.0, 0.0])  # segment/world y is up; accel reads +1 g up
    accel = orient(t).inv().apply(up_world)
    return gyro, accel


def simulate_imu(
    motion: HipMotion,
    side: str = "left",
    rate_hz: float = 100.0,
    seed: int = 0,
    noise: ImuNoise | None = None,
    pelvis: bool = False,
    body: _body.BodyConditions | None = None,
    manoeuvre_s: float | None = None,
) -> ImuSamples:
    """Raw IMU samples for `motion` (deterministic for a seed).

    body: whole-body conditions (moving pelvis, per-sensor biases, linear acceleration);
    manoeuvre_s: when the manoeuvre starts after the calibration (default: right after
    the calibration manoeuvre of `with_calibration`)."""
    noise = noise or ImuNoise()
    rng = np.random.default_rng(seed)
    if body is not None:
        start = manoeuvre("calibration").duration_s if manoeuvre_s is None else manoeuvre_s
        return _simulate_body(motion, side, rate_hz, rng, noise, pelvis, body, start)
    t, truth = motion.sample(rate_hz)
    mount = random_mount(rng, noise.tilt_max_deg, noise.yaw_max_deg)

    def thigh(tt: np.ndarray) -> Rotation:
        return hip_rotation(motion.angles(tt), side) * mount

    def corrupt(gyro: np.ndarray, accel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(t)
        bias = rng.uniform(-1.0, 1.0, 3) * noise.gyro_bias_max_dps
        walk = np.cumsum(
            rng.normal(0.0, noise.gyro_drift_dps_per_sqrt_s / np.sqrt(rate_hz), (n, 3)), axis=0
        )
        g = gyro + bias + walk + rng.normal(0.0, noise.gyro_noise_dps, (n, 3))
        a = accel + rng.normal(0.0, noise.accel_noise_g, (n, 3))
        return g, a

    g, a = corrupt(*_body_signals(thigh, t))
    out = ImuSamples(t, g, a, truth, mount, labels=motion.labels(t))
    if pelvis:
        pmount = random_mount(rng, noise.tilt_max_deg, noise.yaw_max_deg)

        def pel(tt: np.ndarray) -> Rotation:
            return Rotation.from_quat(np.tile(pmount.as_quat(), (len(tt), 1)))

        out.pelvis_gyro_dps, out.pelvis_accel_g = corrupt(*_body_signals(pel, t))
        out.pelvis_mount = pmount
    return out


def _simulate_body(
    motion: HipMotion,
    side: str,
    rate_hz: float,
    rng: np.random.Generator,
    noise: ImuNoise,
    pelvis: bool,
    c: _body.BodyConditions,
    manoeuvre_s: float,
) -> ImuSamples:
    t, truth = motion.sample(rate_hz)
    n = len(t)
    m_thigh = _body.mount(rng, c)
    m_pelvis = _body.mount(rng, c)
    path = _body.PelvisPath(
        rng, c, lambda tt: motion.angles(tt)[:, 0], CAL_FUNCTIONAL_S, manoeuvre_s
    )
    hip_at = np.asarray(_body.HIP_FROM_PELVIS_M)

    def thigh(tt: np.ndarray) -> Rotation:
        return path(tt) * hip_rotation(motion.angles(tt), side) * m_thigh

    def thigh_pos(tt: np.ndarray) -> np.ndarray:
        seg = hip_rotation(motion.angles(tt), side).apply(_body.THIGH_CLIP_M)
        return path(tt).apply(hip_at + seg)

    def pel(tt: np.ndarray) -> Rotation:
        return path(tt) * m_pelvis

    def pel_pos(tt: np.ndarray) -> np.ndarray:
        return path(tt).apply(_body.PELVIS_CLIP_M)

    biases: list[np.ndarray] = []

    def signals(orient, pos) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        gyro, _ = _body_signals(orient, t)
        accel = _body.specific_force(orient(t), pos, t, c.linear_accel)
        g_bias = rng.uniform(-1.0, 1.0, 3) * c.gyro_bias_max_dps
        a_bias = rng.uniform(-1.0, 1.0, 3) * c.accel_bias_max_g
        walk = np.cumsum(
            rng.normal(0.0, noise.gyro_drift_dps_per_sqrt_s / np.sqrt(rate_hz), (n, 3)), axis=0
        )
        g = gyro + g_bias + walk + rng.normal(0.0, noise.gyro_noise_dps, (n, 3))
        a = accel + a_bias + rng.normal(0.0, noise.accel_noise_g, (n, 3))
        biases.append(g_bias + walk)
        return g, a

    g, a = signals(thigh, thigh_pos)
    out = ImuSamples(t, g, a, truth, m_thigh, labels=motion.labels(t), gyro_bias_dps=biases[0])
    if pelvis:
        out.pelvis_gyro_dps, out.pelvis_accel_g = signals(pel, pel_pos)
        out.pelvis_mount = m_pelvis
        out.pelvis_gyro_bias_dps = biases[1]
    return out


def with_calibration(motion: HipMotion) -> tuple[HipMotion, float]:
    """`motion` preceded by the clinician's calibration manoeuvre; returns (motion, offset_s)."""
    cal = manoeuvre("calibration")
    # Ramp from the calibration's final neutral pose into the motion's start pose.
    lead = (Segment(3.0, motion.start, "neutral"),) if any(motion.start) else ()
    segs = cal.segments + lead + motion.segments
    offset = cal.duration_s + sum(s.duration_s for s in lead)
    return HipMotion(cal.start, segs), offset


CAL_NEUTRAL_S = (0.5, 2.9)  # window of the calibration manoeuvre to use as neutral
CAL_FUNCTIONAL_S = (3.0, 27.0)  # the four swings
