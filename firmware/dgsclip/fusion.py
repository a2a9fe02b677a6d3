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
        # Accelerometer bias along gravity at the first rest (g): |a| - 1 there. Only that
        # component is observable at one pose, and only it is learnt, before calibration:
        # it does not tilt the neutral pose, but turns into tilt (flexion) error once the
        # axis is horizontal (thigh flexed 90 deg, pelvis supine).
        self.abias = array("f", (0.0, 0.0, 0.0))
        self._ei = array("f", (0.0, 0.0, 0.0))
        # Running means of the raw gyro and the accel over the current still run.
        self._gm = array("f", (0.0, 0.0, 0.0))
        self._am = array("f", (0.0, 0.0, 0.0))
        self._gsum = array("f", (0.0, 0.0, 0.0))  # raw rate summed over a neutral window
        self._n_sum = 0
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

    # -- start-up offset from the neutral calibration window ---------------------------
    def window_start(self):
        g = self._gsum
        g[0] = g[1] = g[2] = 0.0
        self._n_sum = 0

    def window_add(self, gx, gy, gz):
        g = self._gsum
        g[0] += gx
        g[1] += gy
        g[2] += gz
        self._n_sum += 1

    def window_seed_bias(self):
        """After an accepted neutral stand: if the stationary detector has seen no rest at
        all (a person who sways or trembles more than its band), take the window's mean raw
        rate, the start-up offset other AHRS libraries are given. Returns True if used."""
        n = self._n_sum
        if n == 0 or self.bias_s > 0.0:
            return False  # some rest was seen: the detector's estimate is better
        g = self._gsum
        b = self.bias
        b[0], b[1], b[2] = g[0] / n, g[1] / n, g[2] / n
        self.bias_s = self.bias_learn_s
        return True

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

    def update(self, gx, gy, gz, ax, ay, az, dt):
        """One filter step. Returns the status flags (FLAG_*).

        Written for MicroPython on FPU-less cores (ARMv6-M): every float result is a heap
        box and every division a soft-float call, so settings are read once into locals,
        |x| < t is a chained comparison instead of a call to abs(), normalisations multiply
        by one reciprocal, and the stationary detector is inlined (no method call).
        Measured in benchmarks/results/m0budget.md."""
        if not self._started:
            self._started = self._init_from_accel(ax, ay, az)
        if dt <= 0.0:
            return self.flags
        self.t_s += dt
        bias = self.bias
        bx, by, bz = bias[0], bias[1], bias[2]
        ab = self.abias
        ax -= ab[0]
        ay -= ab[1]
        az -= ab[2]
        an = math.sqrt(ax * ax + ay * ay + az * az)
        flags = 0
        # -- stationary detector on the raw rates ------------------------------------
        # Still = bias-corrected rate below still_gyro_dps, |a| near 1 g, and both the raw
        # rate and the accel within a narrow band of their means over the run: the band
        # tells a sensor at rest (rate constant = bias) from a slow rotation (a pelvis
        # swaying at a few deg/s), which the bias would otherwise absorb.
        thr = self.still_gyro_dps
        ath = self.still_accel_g
        still = False
        if (
            -thr < gx - bx < thr
            and -thr < gy - by < thr
            and -thr < gz - bz < thr
            and -ath < an - 1.0 < ath
        ):
            gm = self._gm
            am = self._am
            n = self._n_still
            band = self.still_band_dps
            aband = self.still_band_g
            if (
                n == 0
                or not -band <= gx - gm[0] <= band
                or not -band <= gy - gm[1] <= band
                or not -band <= gz - gm[2] <= band
                or not -aband <= ax - am[0] <= aband
                or not -aband <= ay - am[1] <= aband
                or not -aband <= az - am[2] <= aband
            ):
                # (Re)start a run at this sample.
                gm[0], gm[1], gm[2] = gx, gy, gz
                am[0], am[1], am[2] = ax, ay, az
                self._n_still = 1
                self.still_s = dt
            else:
                n += 1
                self._n_still = n
                k = 1.0 / n
                gm[0] += k * (gx - gm[0])
                gm[1] += k * (gy - gm[1])
                gm[2] += k * (gz - gm[2])
                am[0] += k * (ax - am[0])
                am[1] += k * (ay - am[1])
                am[2] += k * (az - am[2])
                st = self.still_s + dt
                self.still_s = st
                learnt = self.bias_s >= self.bias_learn_s
                # Once learnt, only a longer rest may move it: a slow sway (0.05-0.3 Hz)
                # stays within the band near its turning points, never for 1.5 s.
                still = st >= (self.still_track_s if learnt else self.still_time_s)
        else:
            self.still_s = 0.0
            self._n_still = 0
        if still:
            flags = FLAG_STATIONARY
            # Learn from samples of a confirmed still run only (its first still_time_s may
            # hold the slow tail of a movement): a plain mean while the bias is first learnt
            # (converges in the ~3 s neutral stand), then an EMA with bias_tau_s.
            bs = self.bias_s + dt
            self.bias_s = bs
            if bs < self.bias_learn_s:
                k = dt / bs
            else:
                k = dt / (self.bias_tau_s + dt)
            bx += k * (gx - bx)
            by += k * (gy - by)
            bz += k * (gz - bz)
            bias[0], bias[1], bias[2] = bx, by, bz
            if bs >= self.bias_learn_s and bs - dt < self.bias_learn_s:
                # Once, as the first learning ends: the run's mean is still uncorrected.
                am = self._am
                m0, m1, m2 = am[0], am[1], am[2]
                mn = math.sqrt(m0 * m0 + m1 * m1 + m2 * m2)
                e = (mn - 1.0) / mn
                ab = self.abias
                ab[0], ab[1], ab[2] = e * m0, e * m1, e * m2
        gx = (gx - bx) * DEG2RAD
        gy = (gy - by) * DEG2RAD
        gz = (gz - bz) * DEG2RAD
        q = self.q
        qw, qx, qy, qz = q[0], q[1], q[2], q[3]
        initialising = self.t_s < self.init_s
        if initialising:
            flags |= FLAG_INITIALISING
        rej = self.accel_reject_g
        if an > 1e-6 and (initialising or -rej <= an - 1.0 <= rej):
            inv = 1.0 / an
            ax *= inv
            ay *= inv
            az *= inv
            # Reference "up" seen from the body: third row of R(q)^T.
            vx = 2.0 * (qx * qz - qw * qy)
            vy = 2.0 * (qw * qx + qy * qz)
            vz = qw * qw - qx * qx - qy * qy + qz * qz
            kp = self.kp_init if initialising else self.kp
            ex = kp * (ay * vz - az * vy)
            ey = kp * (az * vx - ax * vz)
            ez = kp * (ax * vy - ay * vx)
            ki = self.ki
            if ki > 0.0:
                ei = self._ei
                kd = ki * dt / kp if kp > 0.0 else 0.0
                ei[0] += kd * ex
                ei[1] += kd * ey
                ei[2] += kd * ez
                gx += ei[0]
                gy += ei[1]
                gz += ei[2]
            gx += ex
            gy += ey
            gz += ez
        else:
            flags |= FLAG_ACCEL_REJECTED
            self.accel_rejections += 1
        h = 0.5 * dt
        gx *= h
        gy *= h
        gz *= h
        w = qw - qx * gx - qy * gy - qz * gz
        x = qx + qw * gx + qy * gz - qz * gy
        y = qy + qw * gy - qx * gz + qz * gx
        z = qz + qw * gz + qx * gy - qy * gx
        inv = 1.0 / math.sqrt(w * w + x * x + y * y + z * z)
        q[0] = w * inv
        q[1] = x * inv
        q[2] = y * inv
        q[3] = z * inv
        self.flags = flags
        return flags
