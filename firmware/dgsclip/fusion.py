"""Mahony AHRS (6-axis) with stationary gyro-bias estimation and accelerometer rejection.

Axis conventions: the filter works in the sensor frame the driver reports (after the
mounting remap of the board, see drivers). The reference frame is gravity-aligned with
+z up; heading (rotation about +z) starts at zero and is only kept by the gyroscope, which
is why the bias is re-estimated whenever the clip is still.

The per-sample step is fixed-point (dgsclip.fxmahony.mahony_step: integers only, viper
machine code where the port has a native emitter), so that the sampling path allocates
nothing; this class holds its state and settings, does the rare float work (start-up tilt
from gravity, the accel bias once, the neutral-window offset) and offers a float interface
for replay and tests: update() takes gyroscope deg/s, accelerometer g and dt in seconds,
update_fx() the fixed-point units of fxcore (what the drivers deliver on the clip).
"""

import math
from array import array

from dgsclip import fxcore as fx

DEG2RAD = 0.017453292519943295

# Status flag bits: the same values as the protocol's SAMPLE flags (docs/protocol.md);
# FLAG_INITIALISING is internal (above the 8 bits the protocol defines, masked off there).
FLAG_STATIONARY = 0x0002
FLAG_ACCEL_REJECTED = 0x0004
FLAG_INITIALISING = 0x0100


class Mahony:
    """Mahony complementary filter with stationary gyro-bias estimation.

    Settings (units in the names):
      kp: proportional gain on the accelerometer error (1/s); kp_init used for init_s after
          start so the initial tilt converges quickly (like x-io Fusion's ramped gain).
      ki: integral gain; only 0 (the stationary estimator owns the bias; config allows 0).
      accel_reject_g: skip the accelerometer correction when | |a| - 1 g | exceeds this
          (fast motion: the accelerometer no longer measures gravity only).
      still_gyro_dps / still_accel_g / still_time_s: stationary detector thresholds.
      still_band_dps / still_band_g: the raw rate and the accel must stay this close to
          their means over the still run: that tells a sensor at rest (rate constant = the
          bias) from a slow rotation (a pelvis swaying at a few deg/s), which the bias would
          otherwise absorb.
      bias_learn_s: the bias is first the plain mean of this much confirmed rest (the ~3 s
          neutral stand); then a low-pass with bias_tau_s, moved only by rests of at least
          still_track_s (a slow sway stays within the band near its turning points, never
          for 1.5 s). Learning uses only the confirmed part of a run (after still_time_s):
          its start may hold the slow tail of a movement.
    The accelerometer bias along gravity at the first rest (|a| - 1 g there) is removed
    once the first learning ends: only that component is observable at one pose; it does
    not tilt the neutral pose but turns into tilt (flexion) error once the axis is
    horizontal (thigh flexed 90 deg, pelvis supine).
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
        self.S = array("i", bytes(4 * fx.S_SIZE))  # S[0:4] is the Q28 quaternion
        self.C = array("i", bytes(4 * fx.C_SIZE))
        self.set(
            kp=kp,
            ki=ki,
            kp_init=kp_init,
            init_s=init_s,
            accel_reject_g=accel_reject_g,
            still_gyro_dps=still_gyro_dps,
            still_accel_g=still_accel_g,
            still_time_s=still_time_s,
            bias_tau_s=bias_tau_s,
            still_band_dps=still_band_dps,
            still_band_g=still_band_g,
            bias_learn_s=bias_learn_s,
            still_track_s=still_track_s,
        )
        k = fx.load()
        self._step = k[0]
        self.native = k[3]
        # Float views for replay, calibration and tests (refreshed by update() and sync()).
        self.q = array("f", (1.0, 0.0, 0.0, 0.0))
        self.bias = array("f", (0.0, 0.0, 0.0))  # deg/s
        self.abias = array("f", (0.0, 0.0, 0.0))  # g
        self._g = array("i", (0, 0, 0))
        self._a = array("i", (0, 0, 0))
        self._gsum = [0, 0, 0]  # raw rate (gyro units) summed over a neutral window
        self._n_sum = 0
        self.reset()

    def set(self, **settings):
        """Change settings (the names of __init__'s arguments); the state is kept."""
        for k, v in settings.items():
            if not hasattr(self, k) and k not in _SETTINGS:
                raise ValueError("unknown fusion setting %r" % k)
            setattr(self, k, v)
        if self.ki != 0.0:
            raise ValueError("ki must be 0: the stationary estimator owns the gyro bias")
        c = self.C
        c[fx.C_THR] = _u(self.still_gyro_dps)
        c[fx.C_ATH] = _u(self.still_accel_g)
        c[fx.C_BAND] = _u(self.still_band_dps)
        c[fx.C_ABAND] = _u(self.still_band_g)
        c[fx.C_STILL_US] = _us(self.still_time_s)
        c[fx.C_TRACK_US] = _us(self.still_track_s)
        c[fx.C_LEARN_US] = _us(self.bias_learn_s)
        c[fx.C_TAU_US] = _us(self.bias_tau_s)
        c[fx.C_INIT_US] = _us(self.init_s)
        c[fx.C_KP] = int(round(self.kp * 536.870912))  # x dt_us >> 2 = kp dt / 2 in Q28
        c[fx.C_KP_INIT] = int(round(self.kp_init * 536.870912))
        c[fx.C_REJECT] = _u(self.accel_reject_g)

    def reset(self):
        s = self.S
        for i in range(fx.S_SIZE):
            s[i] = 0
        s[0] = fx.ONE
        self._started = False
        self.sync()

    # -- state as numbers ------------------------------------------------------------
    @property
    def flags(self):
        return self.S[fx.S_FLAGS]

    @property
    def accel_rejections(self):
        return self.S[fx.S_REJECT]

    @property
    def t_s(self):
        return self.S[fx.S_T] * 1e-6

    @property
    def still_s(self):
        return self.S[fx.S_STILL] * 1e-6

    @property
    def bias_s(self):
        return self.S[fx.S_LEARNT] * 1e-6

    def sync(self):
        """Refresh the float views q, bias, abias from the fixed-point state."""
        s = self.S
        q = self.q
        for i in range(4):
            q[i] = s[i] * (1.0 / fx.ONE)
        for i in range(3):
            self.bias[i] = s[fx.S_BIAS + i] * (1.0 / 524288.0)
            self.abias[i] = s[fx.S_ABIAS + i] * (1.0 / fx.G1)

    def set_bias(self, bx, by, bz):
        s = self.S
        s[fx.S_BIAS] = int(round(bx * 524288.0))
        s[fx.S_BIAS + 1] = int(round(by * 524288.0))
        s[fx.S_BIAS + 2] = int(round(bz * 524288.0))
        self.sync()

    # -- start-up offset from the neutral calibration window ---------------------------
    def window_start(self):
        g = self._gsum
        g[0] = g[1] = g[2] = 0
        self._n_sum = 0

    def window_add_fx(self, G):
        g = self._gsum
        g[0] += G[0]
        g[1] += G[1]
        g[2] += G[2]
        self._n_sum += 1

    def window_add(self, gx, gy, gz):
        g = self._g
        g[0], g[1], g[2] = _u(gx), _u(gy), _u(gz)
        self.window_add_fx(g)

    def window_seed_bias(self):
        """After an accepted neutral stand: if the stationary detector has seen no rest at
        all (a person who sways or trembles more than its band), take the window's mean raw
        rate, the start-up offset other AHRS libraries are given. Returns True if used."""
        n = self._n_sum
        s = self.S
        if n == 0 or s[fx.S_LEARNT] > 0:
            return False  # some rest was seen: the detector's estimate is better
        g = self._gsum
        for i in range(3):
            s[fx.S_BIAS + i] = (g[i] << 4) // n
        s[fx.S_LEARNT] = self.C[fx.C_LEARN_US]
        self.sync()
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
        s = self.S
        if w < 1e-6:  # upside down: 180 deg about x
            s[0], s[1], s[2], s[3] = 0, fx.ONE, 0, 0
        else:
            n = math.sqrt(w * w + ay * ay + ax * ax)
            s[0] = int(round(w / n * fx.ONE))
            s[1] = int(round(ay / n * fx.ONE))
            s[2] = int(round(-ax / n * fx.ONE))
            s[3] = 0
        return True

    def _learnt(self):
        """Once, as the first learning ends: the accel bias along gravity from the run's
        mean (still uncorrected at that point)."""
        s = self.S
        n = s[fx.S_N]
        if n <= 0:
            return
        m0 = s[fx.S_ASUM] / n
        m1 = s[fx.S_ASUM + 1] / n
        m2 = s[fx.S_ASUM + 2] / n
        mn = math.sqrt(m0 * m0 + m1 * m1 + m2 * m2)
        if mn <= 0.0:
            return
        e = (mn - fx.G1) / mn
        s[fx.S_ABIAS] = int(round(e * m0))
        s[fx.S_ABIAS + 1] = int(round(e * m1))
        s[fx.S_ABIAS + 2] = int(round(e * m2))

    @property
    def settled(self):
        """True when the next update_fx does no float work (allocates nothing): started,
        and no pending once-only step (the accel bias at the end of the first learning)."""
        return self._started and not self.S[fx.S_EVENT]

    def update_fx(self, G, A, dt_us):
        """One filter step on fixed-point input (gyro 2**-15 deg/s, accel 2**-15 g, dt in
        µs). Returns the flags (FLAG_*). Allocates nothing while `settled`."""
        s = self.S
        if not self._started:
            self._started = self._init_from_accel(A[0] / fx.G1, A[1] / fx.G1, A[2] / fx.G1)
        if s[22]:  # fx.S_EVENT (a literal: no module lookups per sample)
            # The first learning ended on the previous sample: its run's sums are still
            # those of the rest it ended in (one sample later than the step itself).
            s[22] = 0
            self._learnt()
        return self._step(s, G, A, self.C, dt_us)

    def update(self, gx, gy, gz, ax, ay, az, dt):
        """One filter step on floats (deg/s, g, s). Returns the status flags (FLAG_*)."""
        g = self._g
        a = self._a
        g[0], g[1], g[2] = _u(gx), _u(gy), _u(gz)
        a[0], a[1], a[2] = _u(ax), _u(ay), _u(az)
        flags = self.update_fx(g, a, int(round(dt * 1e6)))
        if self.S[fx.S_EVENT]:
            self.S[fx.S_EVENT] = 0
            self._learnt()
        self.sync()
        return flags


_SETTINGS = (
    "kp",
    "ki",
    "kp_init",
    "init_s",
    "accel_reject_g",
    "still_gyro_dps",
    "still_accel_g",
    "still_time_s",
    "bias_tau_s",
    "still_band_dps",
    "still_band_g",
    "bias_learn_s",
    "still_track_s",
)


def _u(x):
    """deg/s or g -> the fixed-point unit 2**-15 (rounded)."""
    return int(round(x * 32768.0))


def _us(t_s):
    return int(round(t_s * 1e6))
