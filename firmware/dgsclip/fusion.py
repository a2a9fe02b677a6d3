"""Mahony AHRS (6-axis) with stationary gyro-bias estimation and accelerometer rejection.

Axis conventions: the filter works in the sensor frame the driver reports (after the
mounting remap of the board, see drivers). The reference frame is gravity-aligned with
+z up; heading (rotation about +z) starts at zero and is only kept by the gyroscope, which
is why the bias is re-estimated whenever the clip is still.

Units: gyroscope in deg/s, accelerometer in g, dt in seconds (from time.ticks_diff on the
clip, never host time). All state lives in preallocated arrays: update() allocates no
lists, tuples or dicts, so it can run in the sampling loop without feeding the GC
(boxed floats aside on ports without float-in-pointer representation).
"""

import math
from array import array

DEG2RAD = 0.017453292519943295

# Status flag bits: the same values as the protocol's SAMPLE flags (docs/protocol.md);
# FLAG_INITIALISING is internal (above the 8 bits the protocol defines, masked off there).
FLAG_STATIONARY = 0x0002
FLAG_ACCEL_REJECTED = 0x0004
FLAG_INITIALISING = 0x0100


class Mahony:
    """Mahony complementary filter.

    Settings (units in the names):
      kp: proportional gain on the accelerometer error (1/s); kp_init used for init_s after
          start so the initial tilt converges quickly (like x-io Fusion's ramped gain).
      ki: integral gain (1/s^2); 0 because the stationary estimator owns the bias.
      accel_reject_g: skip the accelerometer correction when | |a| - 1 g | exceeds this
          (fast motion: the accelerometer no longer measures gravity only).
      still_gyro_dps / still_accel_g / still_time_s: stationary detector thresholds.
      bias_tau_s: time constant of the bias low-pass while stationary.
    """

    def __init__(
        self,
        kp=0.5,
        ki=0.0,
        kp_init=10.0,
        init_s=1.0,
        accel_reject_g=0.1,
        still_gyro_dps=3.0,
        still_accel_g=0.03,
        still_time_s=0.5,
        bias_tau_s=2.0,
        still_band_dps=0.5,
        still_band_g=0.02,
        bias_learn_s=2.0,
        still_track_s=1.5,
    ):
        self.kp = kp
        self.ki = ki
        self.kp_init = kp_init
        self.init_s = init_s
        self.accel_reject_g = accel_reject_g
        self.still_gyro_dps = still_gyro_dps
        self.still_accel_g = still_accel_g
        self.still_time_s = still_time_s
        self.bias_tau_s = bias_tau_s
        self.still_band_dps = still_band_dps
        self.still_band_g = still_band_g
        self.bias_learn_s = bias_learn_s
        self.still_track_s = still_track_s
        self.q = array("f", (1.0, 0.0, 0.0, 0.0))
        self.bias = array("f", (0.0, 0.0, 0.0))  # deg/s
        self._ei = array("f", (0.0, 0.0, 0.0))
        # Running means of the raw gyro and the accel over the current still run.
        self._gm = array("f", (0.0, 0.0, 0.0))
        self._am = array("f", (0.0, 0.0, 0.0))
        self.reset()

    def reset(self):
        q = self.q
        q[0], q[1], q[2], q[3] = 1.0, 0.0, 0.0, 0.0
        self._ei[0] = self._ei[1] = self._ei[2] = 0.0
        self.t_s = 0.0
        self.still_s = 0.0
        self._n_still = 0  # samples in the current still run
        self.bias_s = 0.0  # total still time the bias has been learnt from
        self.flags = FLAG_INITIALISING
        self.accel_rejections = 0
        self._started = False

    def _init_from_accel(self, ax, ay, az):
        # Shortest rotation taking body "up" (the measured accel) to reference +z.
        n = math.sqrt(ax * ax + ay * ay + az * az)
        if n < 1e-6:
            return False
        ax /= n
        ay /= n
        az /= n
        # axis = a x z = (ay, -ax, 0); q rotates body->ref, so rotate a onto z.
        w = 1.0 + az
        q = self.q
        if w < 1e-6:  # upside down: 180 deg about x
            q[0], q[1], q[2], q[3] = 0.0, 1.0, 0.0, 0.0
        else:
            q[0], q[1], q[2], q[3] = w, ay, -ax, 0.0
            n = math.sqrt(w * w + ay * ay + ax * ax)
            q[0] /= n
            q[1] /= n
            q[2] /= n
        return True

    def _still(self, gx, gy, gz, ax, ay, az, an, dt):
        """Stationary detector on raw rates: True once still for still_time_s.

        Still = bias-corrected rate below still_gyro_dps, |a| near 1 g, and both the raw
        rate and the accel staying within a narrow band of their means over the run. The
        band is what tells a sensor at rest (rate constant = bias) from a slow rotation
        (a pelvis swaying at a few deg/s): without it the bias would absorb the rotation."""
        b = self.bias
        thr = self.still_gyro_dps
        if (
            abs(gx - b[0]) >= thr
            or abs(gy - b[1]) >= thr
            or abs(gz - b[2]) >= thr
            or abs(an - 1.0) >= self.still_accel_g
        ):
            self.still_s = 0.0
            self._n_still = 0
            return False
        gm = self._gm
        am = self._am
        n = self._n_still
        band = self.still_band_dps
        aband = self.still_band_g
        if n == 0 or (
            abs(gx - gm[0]) > band
            or abs(gy - gm[1]) > band
            or abs(gz - gm[2]) > band
            or abs(ax - am[0]) > aband
            or abs(ay - am[1]) > aband
            or abs(az - am[2]) > aband
        ):
            # (Re)start a run at this sample.
            gm[0], gm[1], gm[2] = gx, gy, gz
            am[0], am[1], am[2] = ax, ay, az
            self._n_still = 1
            self.still_s = dt
            return False
        n += 1
        self._n_still = n
        k = 1.0 / n
        gm[0] += k * (gx - gm[0])
        gm[1] += k * (gy - gm[1])
        gm[2] += k * (gz - gm[2])
        am[0] += k * (ax - am[0])
        am[1] += k * (ay - am[1])
        am[2] += k * (az - am[2])
        self.still_s += dt
        if self.bias_s < self.bias_learn_s:
            return self.still_s >= self.still_time_s
        # Once learnt, only a longer rest may move it: a slow sway (0.05-0.3 Hz) stays
        # within the band for a fraction of a second near its turning points, never 1.5 s.
        return self.still_s >= self.still_track_s

    def update(self, gx, gy, gz, ax, ay, az, dt):
        """One filter step. Returns the status flags (FLAG_*)."""
        if not self._started:
            self._started = self._init_from_accel(ax, ay, az)
        if dt <= 0.0:
            return self.flags
        self.t_s += dt
        bias = self.bias
        an = math.sqrt(ax * ax + ay * ay + az * az)
        flags = 0
        if self._still(gx, gy, gz, ax, ay, az, an, dt):
            flags |= FLAG_STATIONARY
            # Learn from samples of a confirmed still run only (the run's first still_time_s
            # may hold the slow tail of a movement): a plain mean while the bias is first
            # learnt (converges in the ~3 s neutral stand), then an EMA with bias_tau_s.
            self.bias_s += dt
            if self.bias_s < self.bias_learn_s:
                k = dt / self.bias_s
            else:
                k = dt / (self.bias_tau_s + dt)
            bias[0] += k * (gx - bias[0])
            bias[1] += k * (gy - bias[1])
            bias[2] += k * (gz - bias[2])
        gx -= bias[0]
        gy -= bias[1]
        gz -= bias[2]
        gx *= DEG2RAD
        gy *= DEG2RAD
        gz *= DEG2RAD
        q = self.q
        qw, qx, qy, qz = q[0], q[1], q[2], q[3]
        initialising = self.t_s < self.init_s
        if initialising:
            flags |= FLAG_INITIALISING
        if an > 1e-6 and (initialising or abs(an - 1.0) <= self.accel_reject_g):
            ax /= an
            ay /= an
            az /= an
            # Reference "up" seen from the body: third row of R(q)^T.
            vx = 2.0 * (qx * qz - qw * qy)
            vy = 2.0 * (qw * qx + qy * qz)
            vz = qw * qw - qx * qx - qy * qy + qz * qz
            ex = ay * vz - az * vy
            ey = az * vx - ax * vz
            ez = ax * vy - ay * vx
            kp = self.kp_init if initialising else self.kp
            if self.ki > 0.0:
                ei = self._ei
                ei[0] += self.ki * ex * dt
                ei[1] += self.ki * ey * dt
                ei[2] += self.ki * ez * dt
                gx += ei[0]
                gy += ei[1]
                gz += ei[2]
            gx += kp * ex
            gy += kp * ey
            gz += kp * ez
        else:
            flags |= FLAG_ACCEL_REJECTED
            self.accel_rejections += 1
        h = 0.5 * dt
        q[0] = qw + h * (-qx * gx - qy * gy - qz * gz)
        q[1] = qx + h * (qw * gx + qy * gz - qz * gy)
        q[2] = qy + h * (qw * gy - qx * gz + qz * gx)
        q[3] = qz + h * (qw * gz + qx * gy - qy * gx)
        n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
        q[0] /= n
        q[1] /= n
        q[2] /= n
        q[3] /= n
        self.flags = flags
        return flags
