"""Relative gyro bias of the thigh and pelvis sensors (thigh + pelvis mode only).

Its own module, imported only when a pelvis IMU is used: code loaded into RAM costs every
mode (heap layout, allocation speed; measured on the Cortex-M0 harness).
"""

import math
from array import array

from dgsclip.pelvis import _rotate_into

# -- relative gyro bias (thigh vs pelvis) ---------------------------------------------
# With the pelvis swaying, the thigh sways with it: neither sensor is ever at rest after
# the neutral stand, so neither stationary detector can track its gyro bias, and each
# filter's heading (gyro only) drifts on its own. The hip angles depend only on the
# RELATIVE orientation, and that is observable: while the hip is held (thigh still
# relative to the pelvis), both sensors turn with the same angular velocity, so
#     r = (g_thigh - b_thigh) - R (g_pelvis - b_pelvis),   R = q_thigh^-1 F q_pelvis
# (R: pelvis sensor frame -> thigh sensor frame, F: the pelvis filter's frame -> the
# thigh filter's) is the error of the bias DIFFERENCE. A hold is detected on r itself
# (below REL_THR_DPS and within REL_BAND_DPS of its run's mean for REL_CONFIRM_S, like
# the stationary detector but on the relative rate, so a sway does not break it); the
# confirmed part's mean is moved into the two bias estimates (REL_THIGH_SHARE of it into
# the thigh's, the rest rotated into the pelvis's), which stops the relative heading
# drift. The common part of both biases stays unobservable, and harmless: both frames
# then turn together.
# Cost on the clip: the sampler's hot path only counts µs and, every REL_PERIOD_US,
# copies the two raw rates and quaternions (ints) into `snap` (take()); the float work
# (process()) runs in the main loop, outside the heap lock, at that low rate.
REL_PERIOD_US = 50000  # snapshot period (20 Hz)
REL_THR_DPS = 2.0  # |r| below: candidate hold
REL_BAND_DPS = 0.5  # r within this of its run's mean (per axis)
REL_MAX_DPS = 30.0  # pelvis rate above: rotation errors of R leak too much into r
REL_CONFIRM_S = 0.5  # a run counts after this long (its start may be a movement's tail)
REL_CHUNK_S = 1.0  # apply what a hold taught every this much confirmed time
REL_TAU_S = 0.3  # a chunk of T seconds moves the estimate by T / (T + tau)
REL_THIGH_SHARE = 0.5  # share of a correction given to the thigh's bias
# Heading already lost before the first hold (the ~25 s of calibration swings, no hold
# in them): once REL_BRIDGE_S of holds have taught the bias difference, its change since
# the neutral stand (where both biases were learnt) is known at both ends; the best
# estimate of a drifting (random-walk / temperature) bias in between is the straight
# line (Brownian bridge), so the filters integrated half the change over the gap. That
# relative heading is turned out of the pelvis frame F once, capped at REL_BRIDGE_MAX_DEG.
# Only holds near the neutral pose feed it: there R is what the calibration measured;
# in other poses the mountings' residual errors turn the sway into a false difference,
# which the gap (~25 s) would multiply.
REL_BRIDGE_S = 2.0
REL_BRIDGE_POSE_CD = 1500  # hip within 15 deg of neutral on every axis (centidegrees)
REL_BRIDGE_MAX_DPS = 10.0  # and the pelvis turning slower than this (R errors x rate)
# The drift the bridge removes ends when the learner first corrects the biases (T1): it
# is estimated from holds within REL_BRIDGE_WINDOW_S after that, or not at all.
REL_BRIDGE_WINDOW_S = 8.0
REL_BRIDGE_MAX_DEG = 5.0

_QF = 1.0 / (1 << 28)
_GAP_CAP_US = 1000000000  # ~17 min: an older anchor gets no bridge
_GF = 1.0 / 32768.0  # raw gyro unit -> deg/s
_BF = 1.0 / 524288.0  # fxcore bias unit (2**-19 deg/s) -> deg/s


def _qmulf(o, a0, a1, a2, a3, b0, b1, b2, b3):
    o[0] = a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3
    o[1] = a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2
    o[2] = a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1
    o[3] = a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0


class RelBias:
    """Learns the gyro bias difference of the thigh and pelvis sensors during hip holds."""

    POSE_CD = REL_BRIDGE_POSE_CD  # for Pipeline.slow (no module import there)

    def __init__(self):
        # 0-2 thigh raw gyro, 3-5 pelvis raw gyro (2**-15 deg/s), 6-9 thigh and 10-13
        # pelvis quaternions (Q28), 14 µs covered, 15 pending (set by take, cleared by
        # process).
        self.snap = array("i", [0] * 16)
        self.us = 0  # µs since the last snapshot (the hot path adds dt)
        self._q = array("f", (1.0, 0.0, 0.0, 0.0))
        self._r = array("f", (1.0, 0.0, 0.0, 0.0))
        self._v = array("f", (0.0, 0.0, 0.0))
        self._run = array("f", [0.0] * 3)  # sum of r over the current run
        self._csum = array("f", [0.0] * 3)  # sum of r over its confirmed part
        self.enabled = True
        self.reset()
        self.n_applied = 0  # chunks moved into the biases (diagnostics)
        self._b0 = array("i", [0] * 6)  # both biases at the anchor (fxcore units)
        self._q0 = array("i", (1 << 28, 0, 0, 0))  # thigh filter at the anchor (Q28)
        self._gap_us = 0  # µs since the anchor (an int: nothing allocated while idle)
        self._bconf = 0.0  # confirmed hold time since the anchor
        self._dsum = array("f", (0.0, 0.0, 0.0))  # bias-difference changes, summed
        self._dn = 0
        self._t1 = -1.0  # gap at the first correction after the anchor
        self.bridge_pending = False
        self.bridge_deg = 0.0  # heading turned out of the frame by the bridge (diagnostics)
        self.applied = array("f", (0.0, 0.0, 0.0))  # total correction (thigh frame, deg/s)

    def reset(self):
        self._n = 0
        self._t = 0.0
        self._cn = 0
        self._ct = 0.0
        self._clean = True  # every sample of the current chunk fit for the bridge
        for i in range(3):
            self._run[i] = 0.0
            self._csum[i] = 0.0

    def anchor(self, thigh_s, pelvis_s):
        """At an accepted neutral stand: both biases were just learnt at rest."""
        if not self.enabled:
            return
        b = self._b0
        for i in range(3):
            b[i] = thigh_s[4 + i]
            b[3 + i] = pelvis_s[4 + i]
        q0 = self._q0
        for i in range(4):
            q0[i] = thigh_s[i]
        self._gap_us = 0
        self._bconf = 0.0
        d = self._dsum
        d[0] = d[1] = d[2] = 0.0
        self._dn = 0
        self._t1 = -1.0
        self.bridge_pending = True

    def take(self, G, PG, ts, ps):
        """Hot path, every REL_PERIOD_US (ints only, allocates nothing)."""
        s = self.snap
        s[0] = G[0]
        s[1] = G[1]
        s[2] = G[2]
        s[3] = PG[0]
        s[4] = PG[1]
        s[5] = PG[2]
        s[6] = ts[0]
        s[7] = ts[1]
        s[8] = ts[2]
        s[9] = ts[3]
        s[10] = ps[0]
        s[11] = ps[1]
        s[12] = ps[2]
        s[13] = ps[3]
        s[14] = self.us
        s[15] = 1
        self.us = 0

    def idle(self):
        """process() while the learner cannot run (not calibrated, a calibration step):
        consume the snapshot, count the time (ints only: allocates nothing)."""
        s = self.snap
        s[15] = 0
        if self._gap_us < _GAP_CAP_US:
            self._gap_us += s[14]
        if self._n:
            self.reset()
        return False

    def process(self, thigh_s, pelvis_s, frame, active, neutral=True):
        """Main loop, low rate (floats). thigh_s / pelvis_s: the filters' fixed-point
        states (biases updated in place); frame: PelvisAlign.frame; active: calibrated, the
        frame known, no calibration step running; neutral: the hip within REL_BRIDGE_POSE_CD
        of neutral (only such holds feed the bridge). Returns True when the biases changed."""
        s = self.snap
        if not s[15]:
            return False
        s[15] = 0
        us = s[14]
        if self._gap_us < _GAP_CAP_US:  # stays a small int on a 32-bit port
            self._gap_us += us
        if not active or not self.enabled:
            if self._n:
                self.reset()
            return False
        dt = us * 1e-6
        # Bias-corrected rates (deg/s) in each sensor's frame.
        tx = s[0] * _GF - thigh_s[4] * _BF
        ty = s[1] * _GF - thigh_s[5] * _BF
        tz = s[2] * _GF - thigh_s[6] * _BF
        px = s[3] * _GF - pelvis_s[4] * _BF
        py = s[4] * _GF - pelvis_s[5] * _BF
        pz = s[5] * _GF - pelvis_s[6] * _BF
        if px * px + py * py + pz * pz > REL_MAX_DPS * REL_MAX_DPS:
            self.reset()
            return False
        # R = conj(q_thigh) * F * q_pelvis
        q = self._q
        _qmulf(
            q,
            frame[0],
            frame[1],
            frame[2],
            frame[3],
            s[10] * _QF,
            s[11] * _QF,
            s[12] * _QF,
            s[13] * _QF,
        )
        r = self._r
        _qmulf(r, s[6] * _QF, -s[7] * _QF, -s[8] * _QF, -s[9] * _QF, q[0], q[1], q[2], q[3])
        v = self._v
        _rotate_into(v, r, px, py, pz, False)
        rx = tx - v[0]
        ry = ty - v[1]
        rz = tz - v[2]
        if rx * rx + ry * ry + rz * rz > REL_THR_DPS * REL_THR_DPS:
            self._end_run(thigh_s, pelvis_s, r)
            return False
        run = self._run
        n = self._n
        if n > 0:
            k = 1.0 / n
            if (
                abs(rx - run[0] * k) > REL_BAND_DPS
                or abs(ry - run[1] * k) > REL_BAND_DPS
                or abs(rz - run[2] * k) > REL_BAND_DPS
            ):
                self._end_run(thigh_s, pelvis_s, r)
        run[0] += rx
        run[1] += ry
        run[2] += rz
        self._n += 1
        self._t += dt
        if self._t < REL_CONFIRM_S:
            return False
        c = self._csum
        c[0] += rx
        c[1] += ry
        c[2] += rz
        self._cn += 1
        self._ct += dt
        if neutral and px * px + py * py + pz * pz < REL_BRIDGE_MAX_DPS * REL_BRIDGE_MAX_DPS:
            self._bconf += dt
        else:
            self._clean = False
        if self._ct >= REL_CHUNK_S:
            clean = self._clean
            self._apply(thigh_s, pelvis_s, r)
            if self.bridge_pending:
                gap = self._gap_us * 1e-6
                if gap > self._t1 + REL_BRIDGE_WINDOW_S or self._gap_us >= _GAP_CAP_US:
                    self.bridge_pending = False  # too late: the biases have moved since
                elif clean:
                    self._bridge_add(thigh_s, pelvis_s, r)
                    if self._bconf >= REL_BRIDGE_S:
                        self._bridge(frame)
            return True
        return False

    def _bridge_add(self, thigh_s, pelvis_s, r):
        """Sum the estimated change of the bias difference since the anchor (thigh
        frame) after each chunk: the bridge uses their mean, not one chunk's estimate."""
        b = self._b0
        v = self._v
        _rotate_into(
            v,
            r,
            (pelvis_s[4] - b[3]) * _BF,
            (pelvis_s[5] - b[4]) * _BF,
            (pelvis_s[6] - b[5]) * _BF,
            False,
        )
        d = self._dsum
        d[0] += (thigh_s[4] - b[0]) * _BF - v[0]
        d[1] += (thigh_s[5] - b[1]) * _BF - v[1]
        d[2] += (thigh_s[6] - b[2]) * _BF - v[2]
        self._dn += 1

    def _bridge(self, frame):
        """Turn the relative heading lost since the anchor out of the frame F."""
        self.bridge_pending = False
        v = self._v
        d = self._dsum
        # c: the integral of the bias-difference error over the gap (deg, thigh frame).
        h = 0.5 * self._t1 / self._dn
        cx = d[0] * h
        cy = d[1] * h
        cz = d[2] * h
        # The error grew while the leg swung about the neutral pose: its heading part is
        # the vertical component with the thigh as it stood at the anchor.
        q0 = self._q0
        q = self._q
        q[0], q[1], q[2], q[3] = q0[0] * _QF, q0[1] * _QF, q0[2] * _QF, q0[3] * _QF
        _rotate_into(v, q, cx, cy, cz, False)
        d = v[2]  # about the thigh filter's vertical: the only part the accels leave
        if d > REL_BRIDGE_MAX_DEG:
            d = REL_BRIDGE_MAX_DEG
        elif d < -REL_BRIDGE_MAX_DEG:
            d = -REL_BRIDGE_MAX_DEG
        self.bridge_deg = d
        # F <- Rz(d) F: the pelvis turned by the same heading error as the thigh.
        a = 0.5 * d * 0.017453292519943295
        cw = math.cos(a)
        sz = math.sin(a)
        f0, f1, f2, f3 = frame[0], frame[1], frame[2], frame[3]
        frame[0] = cw * f0 - sz * f3
        frame[1] = cw * f1 - sz * f2
        frame[2] = cw * f2 + sz * f1
        frame[3] = cw * f3 + sz * f0

    def _end_run(self, thigh_s, pelvis_s, r):
        if self._ct > 0.0:
            self._apply(thigh_s, pelvis_s, r)
        self.reset()

    def _apply(self, thigh_s, pelvis_s, r):
        """Move the confirmed part's mean residual into the biases."""
        if self.bridge_pending and self._t1 < 0.0:
            self._t1 = self._gap_us * 1e-6  # the first correction: the drift the bridge sees ends
        c = self._csum
        w = self._ct / (self._ct + REL_TAU_S) / self._cn
        mx, my, mz = c[0] * w, c[1] * w, c[2] * w
        a = REL_THIGH_SHARE
        # Thigh: b_t += a m (its frame); pelvis: b_p -= (1 - a) R^-1 m.
        thigh_s[4] += int(round(a * mx * 524288.0))
        thigh_s[5] += int(round(a * my * 524288.0))
        thigh_s[6] += int(round(a * mz * 524288.0))
        v = self._v
        b = 1.0 - a
        _rotate_into(v, r, mx, my, mz, True)
        pelvis_s[4] -= int(round(b * v[0] * 524288.0))
        pelvis_s[5] -= int(round(b * v[1] * 524288.0))
        pelvis_s[6] -= int(round(b * v[2] * 524288.0))
        # The run's later samples no longer carry this part: keep its band reference.
        n = self._n
        run = self._run
        run[0] -= mx * n
        run[1] -= my * n
        run[2] -= mz * n
        ap = self.applied
        ap[0] += mx
        ap[1] += my
        ap[2] += mz
        self.n_applied += 1
        c[0] = c[1] = c[2] = 0.0
        self._cn = 0
        self._ct = 0.0
        self._clean = True
        return True
