"""Whole-body conditions for the IMU simulator: a moving pelvis, posture changes, sensor
errors per sensor and the linear acceleration of the clips.

The default simulator (edge_service.sim.imu without `body`) keeps the pelvis fixed and
upright. These conditions are what a real examination adds (issue 15):

- during the calibration swings the pelvis tilts with the hip by 4-8 % of the flexion
  angle (posterior tilt with flexion: same sense as the femur);
- during the manoeuvre it wobbles up to +-10 deg heading (about its long axis), +-5 deg tilt
  and +-3 deg obliquity, slowly (0.05-0.4 Hz, a patient shifting on the couch);
- an optional posture change (standing -> supine: the whole body pitches back 90 deg)
  between the calibration and the manoeuvre;
- each sensor has its own mounting (3-15 deg tilt, +-10 deg yaw), gyro bias (+-1.5 deg/s)
  and accelerometer bias (+-20 mg per axis);
- the accelerometers see the linear acceleration of the point they sit on (thigh clip
  20 cm down the femur, pelvis clip on the sacrum), not gravity only.

Ground truth stays the hip angles of the HipMotion (thigh relative to the pelvis), so every
degree of pelvis motion that leaks into the output is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

G = 9.80665
# Sensor positions (m) in their segment frames (x anterior, y up, z right): the thigh clip
# on the anterolateral thigh 20 cm below the hip centre, the pelvis clip on the sacrum.
THIGH_CLIP_M = (0.05, -0.20, 0.04)
PELVIS_CLIP_M = (-0.10, 0.05, 0.0)
HIP_FROM_PELVIS_M = (0.0, -0.08, 0.09)


@dataclass(frozen=True)
class BodyConditions:
    cal_tilt_frac: tuple[float, float] = (0.04, 0.08)
    wobble_deg: tuple[float, float, float] = (10.0, 5.0, 3.0)  # heading, tilt, obliquity
    wobble_hz: tuple[float, float] = (0.05, 0.4)
    posture_deg: float = 0.0  # pitch of the whole body after calibration (90 = supine)
    posture_s: float = 3.5  # within the manoeuvre's opening neutral rest (4 s)
    tilt_deg: tuple[float, float] = (3.0, 15.0)  # mounting tilt magnitude range
    yaw_max_deg: float = 10.0
    gyro_bias_max_dps: float = 1.5
    accel_bias_max_g: float = 0.020
    linear_accel: bool = True


def mount(rng: np.random.Generator, c: BodyConditions) -> Rotation:
    """Segment -> sensor: a tilt of 3-15 deg about a random horizontal axis, then yaw."""
    mag = rng.uniform(*c.tilt_deg)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    tilt = Rotation.from_rotvec(np.radians(mag) * np.array([np.cos(phi), 0.0, np.sin(phi)]))
    yaw = Rotation.from_euler("Y", rng.uniform(-1.0, 1.0) * c.yaw_max_deg, degrees=True)
    return tilt * yaw


class PelvisPath:
    """Pelvis orientation in the world (y up) over time, for one random draw."""

    def __init__(
        self,
        rng: np.random.Generator,
        c: BodyConditions,
        flexion_of: object,
        swings_s: tuple[float, float],
        manoeuvre_s: float,
    ) -> None:
        self.c = c
        self.flexion_of = flexion_of  # t -> hip flexion (deg), for the tilt during swings
        self.swings_s = swings_s
        self.t_man = manoeuvre_s
        self.frac = rng.uniform(*c.cal_tilt_frac)
        # Three slow sinusoids per axis; the sum is scaled to the stated peak.
        self.freq = rng.uniform(*c.wobble_hz, (3, 3))
        self.phase = rng.uniform(0.0, 2.0 * np.pi, (3, 3))
        tt = np.linspace(0.0, 600.0, 60001)
        peaks = [
            np.abs(
                np.sin(2 * np.pi * self.freq[k][:, None] * tt + self.phase[k][:, None]).sum(0)
            ).max()
            for k in range(3)
        ]
        self.amp = np.asarray(c.wobble_deg) / np.asarray(peaks)

    def _euler(self, t: np.ndarray) -> np.ndarray:
        """(N, 3) heading (about pelvis y), tilt (about z), obliquity (about x), deg."""
        out = np.zeros((t.size, 3))
        a, b = self.swings_s
        swing = (t >= a) & (t < b)
        out[swing, 1] = self.frac * np.asarray(self.flexion_of(t[swing]))  # type: ignore[operator]
        # Wobble only during the manoeuvre, faded in over 2 s (no step in the signals).
        ramp = np.clip((t - self.t_man) / 2.0, 0.0, 1.0)
        for k in range(3):
            w = np.sin(2 * np.pi * self.freq[k][:, None] * t + self.phase[k][:, None]).sum(0)
            out[:, k] += ramp * self.amp[k] * w
        return out

    def posture(self, t: np.ndarray) -> Rotation:
        """Whole-body pitch (about world z) ramped in over the manoeuvre's first posture_s."""
        u = np.clip((t - self.t_man) / self.c.posture_s, 0.0, 1.0)
        s = 0.5 - 0.5 * np.cos(np.pi * u)
        return Rotation.from_euler("Z", (self.c.posture_deg * s)[:, None], degrees=True)

    def __call__(self, t: np.ndarray) -> Rotation:
        e = self._euler(np.atleast_1d(t))
        return self.posture(np.atleast_1d(t)) * Rotation.from_euler("YZX", e, degrees=True)


def specific_force(
    orient: Rotation, pos_of: object, t: np.ndarray, linear: bool, h: float = 2e-3
) -> np.ndarray:
    """Accelerometer reading (g, sensor frame): gravity reaction + linear acceleration."""
    up = np.array([0.0, 1.0, 0.0])
    f = np.tile(up, (t.size, 1))
    if linear:
        p0 = pos_of(t)  # type: ignore[operator]
        pm = pos_of(t - h)  # type: ignore[operator]
        pp = pos_of(t + h)  # type: ignore[operator]
        f = f + (pp - 2.0 * p0 + pm) / (h * h) / G
    return orient.inv().apply(f)
