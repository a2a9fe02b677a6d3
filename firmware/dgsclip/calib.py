"""Sensor-to-segment calibration: static neutral pose + functional hip-flexion swings.

Procedure (design.md): stand still in neutral ~3 s, then 3-4 slow leg swings (+-30 deg,
first movement flexion).
- Neutral: the mean accelerometer direction is the femur's y axis (up) in the sensor frame;
  the fused orientation then is the neutral pose (hip angles zero), which with one clip is
  also the static pelvis reference.
- Functional: the principal axis of the bias-corrected angular velocity during the swings is
  the flexion axis z (power iteration on the 3x3 scatter matrix; no numpy on the clip). The
  first swing is flexion, i.e. positive about +z, which fixes the sign.
The mounting rotation (segment -> sensor) is then [x y z] with z orthogonalised against y.
Without the functional step a 10 deg mounting yaw leaks several degrees of flexion into
adduction/rotation; that cross-talk is what the functional axis removes.
"""

import math
from array import array

from dgsclip import quat

CAL_VERSION = 1
MIN_NEUTRAL_SAMPLES = 20
MIN_FUNCTIONAL_SAMPLES = 50
SWING_DPS = 15.0  # samples slower than this do not vote for the flexion axis
MAX_NEUTRAL_ACCEL_SPREAD_G = 0.08
MIN_AXIS_Z = 0.7  # cos(45 deg): functional axis vs the clip's nominal z axis
# Standing neutral per the mounting convention (design.md: sensor y up along the femur):
# gravity must be within this angle of sensor +y. Mounting tilt is <= 15 deg, so 30 deg
# accepts every good mounting and refuses a held flexion/abduction of more than ~20 deg.
NEUTRAL_MAX_TILT_DEG = 30.0


class CalibrationError(Exception):
    """The calibration movement was not good enough; the message says what to redo."""


def _norm3(v):
    n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    if n < 1e-9:
        return 0.0
    v[0] /= n
    v[1] /= n
    v[2] /= n
    return n


class Calibration:
    """Stored calibration: mounting quaternions and the static pelvis reference."""

    def __init__(self):
        self.mount = array("f", (1.0, 0.0, 0.0, 0.0))  # thigh segment -> thigh sensor
        self.pelvis_mount = array("f", (1.0, 0.0, 0.0, 0.0))  # pelvis segment -> sensor
        # Pelvis segment in the fusion's reference frame (z up). Until calibrated: upright
        # with zero heading, i.e. +90 deg about x maps segment y (up) to reference z.
        self.pelvis_ref = array("f", (0.70710678, 0.70710678, 0.0, 0.0))
        self.has_mount = False
        self.has_neutral = False
        # Neutral reference with the thigh segment's heading removed (tilt only), and the
        # sensor "up" at neutral: stored so a reboot resumes calibrated (see restore_heading).
        self.ref_tilt = array("f", (0.70710678, 0.70710678, 0.0, 0.0))
        self.up = array("f", (0.0, 1.0, 0.0))
        self.has_ref = False
        self.restore_pending = False
        self.axis_angle_deg = 0.0  # angle between functional axis and up (ideal 90)
        self.planarity = 0.0  # share of swing energy about the axis (ideal 1)
        # Bumped whenever the quaternions above change outside a Pipeline calibration step:
        # the Pipeline keeps fixed-point copies of them (dgsclip.pipeline._sync_cal).
        self.ver = 0

    @property
    def calibrated(self):
        return self.has_mount and self.has_neutral

    def to_dict(self):
        return {
            "version": CAL_VERSION,
            "mount": [round(v, 6) for v in self.mount],
            "pelvis_mount": [round(v, 6) for v in self.pelvis_mount],
            "has_mount": self.has_mount,
            "ref_tilt": [round(v, 6) for v in self.ref_tilt] if self.has_ref else None,
            "up": [round(v, 6) for v in self.up] if self.has_ref else None,
            "axis_angle_deg": round(self.axis_angle_deg, 2),
            "planarity": round(self.planarity, 4),
        }

    def load_dict(self, d):
        """Restore a stored calibration. The neutral reference lives in the fusion's
        reference frame, whose heading restarts at every boot: it is stored without the
        thigh's heading (`ref_tilt`) and re-anchored to the thigh's heading of the first
        fused sample after boot (restore_heading). That assumes the hip rotation at that
        moment equals the one at calibration (standing, or a clip reboot mid-session with
        the leg roughly where it was); flexion and adduction do not depend on it."""
        if not isinstance(d, dict) or d.get("version") != CAL_VERSION:
            raise CalibrationError("calibration file has an unknown version; recalibrate")
        self.ver += 1
        for key in ("mount", "pelvis_mount"):
            v = d.get(key)
            if not isinstance(v, list) or len(v) != 4:
                raise CalibrationError("calibration file field %r is malformed; recalibrate" % key)
            dst = getattr(self, key)
            for i in range(4):
                dst[i] = float(v[i])
            quat.normalize(dst)
        self.has_mount = bool(d.get("has_mount", False))
        self.axis_angle_deg = float(d.get("axis_angle_deg", 0.0))
        self.planarity = float(d.get("planarity", 0.0))
        self.has_neutral = False
        self.has_ref = False
        self.restore_pending = False
        rt = d.get("ref_tilt")
        up = d.get("up")
        if rt is not None or up is not None:
            if not isinstance(rt, list) or len(rt) != 4 or not isinstance(up, list) or len(up) != 3:
                raise CalibrationError(
                    "calibration file field 'ref_tilt' is malformed; recalibrate"
                )
            for i in range(4):
                self.ref_tilt[i] = float(rt[i])
            for i in range(3):
                self.up[i] = float(up[i])
            quat.normalize(self.ref_tilt)
            self.has_ref = True
            self.restore_pending = self.has_mount

    def restore_heading(self, q_thigh_seg):
        """pelvis_ref = yaw(heading of the thigh segment now) * ref_tilt; neutral is back."""
        c, s_ = _heading_half(q_thigh_seg)
        quat.mul_into(self.pelvis_ref, _yaw(c, s_), self.ref_tilt)
        self.has_neutral = True
        self.restore_pending = False
        self.ver += 1

    def store_reference(self, up):
        """Keep the tilt-only neutral reference and sensor up (after pelvis_ref was set)."""
        c, s_ = _heading_half(self.pelvis_ref)
        quat.mul_into(self.ref_tilt, _yaw(c, -s_), self.pelvis_ref)
        for i in range(3):
            self.up[i] = up[i]
        self.has_ref = True


def _heading_half(q):
    """(cos, sin) of half the heading of q's x axis (anterior) about reference +z."""
    w, x, y, z = q[0], q[1], q[2], q[3]
    hx = 1.0 - 2.0 * (y * y + z * z)
    hy = 2.0 * (x * y + w * z)
    psi = math.atan2(hy, hx)
    return math.cos(psi * 0.5), math.sin(psi * 0.5)


def _yaw(c, s):
    return array("f", (c, 0.0, 0.0, s))


class Calibrator:
    """Accumulates calibration samples; finish_*() writes into a Calibration."""

    def __init__(self):
        self._acc = array("f", (0.0, 0.0, 0.0))
        self._acc2 = array("f", (0.0, 0.0, 0.0))
        self._q_thigh = array("f", (1.0, 0.0, 0.0, 0.0))
        self._q_pelvis = array("f", (1.0, 0.0, 0.0, 0.0))
        self._up = array("f", (0.0, 1.0, 0.0))
        self._scatter = array("f", [0.0] * 9)
        self._first = array("f", (0.0, 0.0, 0.0))
        self._tmp = array("f", (1.0, 0.0, 0.0, 0.0))
        self._tmp2 = array("f", (1.0, 0.0, 0.0, 0.0))
        self._m = array("f", [0.0] * 9)
        self.n_neutral = 0
        self.n_functional = 0
        self.has_up = False
        self.has_pelvis = False

    # -- neutral -------------------------------------------------------------------
    def start_neutral(self):
        for i in range(3):
            self._acc[i] = 0.0
            self._acc2[i] = 0.0
        self.n_neutral = 0

    def add_neutral(self, ax, ay, az, q_thigh, q_pelvis=None):
        a = self._acc
        a2 = self._acc2
        a[0] += ax
        a[1] += ay
        a[2] += az
        a2[0] += ax * ax
        a2[1] += ay * ay
        a2[2] += az * az
        self.n_neutral += 1
        for i in range(4):
            self._q_thigh[i] = q_thigh[i]
        if q_pelvis is not None:
            for i in range(4):
                self._q_pelvis[i] = q_pelvis[i]
        self.has_pelvis = q_pelvis is not None

    def finish_neutral(self, cal):
        n = self.n_neutral
        if n < MIN_NEUTRAL_SAMPLES:
            raise CalibrationError("neutral: only %d samples; stand still in neutral for ~3 s" % n)
        spread = 0.0
        for i in range(3):
            m = self._acc[i] / n
            self._up[i] = m
            var = self._acc2[i] / n - m * m
            spread += var if var > 0.0 else 0.0
        if math.sqrt(spread) > MAX_NEUTRAL_ACCEL_SPREAD_G:
            raise CalibrationError("neutral: the leg moved; stand still in neutral and retry")
        if _norm3(self._up) < 0.5:
            raise CalibrationError("neutral: no gravity seen; is the IMU working?")
        tilt = math.degrees(math.acos(max(-1.0, min(1.0, self._up[1]))))
        if tilt > NEUTRAL_MAX_TILT_DEG:
            raise CalibrationError(
                "neutral: the thigh is %d deg from upright (the clip's y axis must point up "
                "along the femur, within %d deg); stand upright with the leg straight and retry"
                % (int(tilt + 0.5), int(NEUTRAL_MAX_TILT_DEG))
            )
        self.has_up = True
        cal.has_neutral = True
        if cal.has_mount:
            self._update_reference(cal)

    def restored(self, up):
        """A stored neutral was restored after boot: functional may run again."""
        for i in range(3):
            self._up[i] = up[i]
        self.has_up = True

    # -- functional ----------------------------------------------------------------
    def start_functional(self):
        for i in range(9):
            self._scatter[i] = 0.0
        self._first[0] = self._first[1] = self._first[2] = 0.0
        self.n_functional = 0

    def add_functional(self, gx, gy, gz):
        """Bias-corrected angular velocity of the thigh sensor (deg/s)."""
        if gx * gx + gy * gy + gz * gz < SWING_DPS * SWING_DPS:
            return
        f = self._first
        if self.n_functional == 0:
            f[0], f[1], f[2] = gx, gy, gz
        s = self._scatter
        s[0] += gx * gx
        s[1] += gx * gy
        s[2] += gx * gz
        s[4] += gy * gy
        s[5] += gy * gz
        s[8] += gz * gz
        self.n_functional += 1

    def finish_functional(self, cal):
        if not self.has_up:
            raise CalibrationError("functional: run calibrate_neutral first")
        if self.n_functional < MIN_FUNCTIONAL_SAMPLES:
            raise CalibrationError(
                "functional: too little motion; swing the leg forward and back 3-4 times (+-30 deg)"
            )
        s = self._scatter
        s[3], s[6], s[7] = s[1], s[2], s[5]
        v = array("f", self._first)
        _norm3(v)
        w = array("f", (0.0, 0.0, 0.0))
        lam = 0.0
        for _ in range(50):
            for r in range(3):
                w[r] = s[3 * r] * v[0] + s[3 * r + 1] * v[1] + s[3 * r + 2] * v[2]
            lam = _norm3(w)
            v[0], v[1], v[2] = w[0], w[1], w[2]
        # First movement is flexion: positive rotation about +z.
        f = self._first
        if v[0] * f[0] + v[1] * f[1] + v[2] * f[2] < 0.0:
            v[0], v[1], v[2] = -v[0], -v[1], -v[2]
        trace = s[0] + s[4] + s[8]
        cal.planarity = lam / trace if trace > 0.0 else 0.0
        y = self._up
        d = v[0] * y[0] + v[1] * y[1] + v[2] * y[2]
        cal.axis_angle_deg = math.degrees(math.acos(max(-1.0, min(1.0, d))))
        # The clip is mounted with z roughly to the patient's right (<= 15 deg tilt, 10 deg
        # yaw), so a real flexion axis is near sensor z and far from vertical.
        if abs(d) > 0.5 or abs(v[2]) < MIN_AXIS_Z:
            raise CalibrationError(
                "functional: swing axis is %d deg from vertical and %d deg from the clip's z; "
                "swing forward/back (not sideways) with the clip's z axis to the patient's right"
                % (int(cal.axis_angle_deg), int(math.degrees(math.acos(min(1.0, abs(v[2]))))))
            )
        z = array("f", (v[0] - d * y[0], v[1] - d * y[1], v[2] - d * y[2]))
        _norm3(z)
        x = array(
            "f", (y[1] * z[2] - y[2] * z[1], y[2] * z[0] - y[0] * z[2], y[0] * z[1] - y[1] * z[0])
        )
        m = self._m  # columns = segment axes in the sensor frame
        m[0], m[1], m[2] = x[0], y[0], z[0]
        m[3], m[4], m[5] = x[1], y[1], z[1]
        m[6], m[7], m[8] = x[2], y[2], z[2]
        quat.from_matrix_into(cal.mount, m)
        cal.has_mount = True
        if cal.has_neutral:
            self._update_reference(cal)

    def _update_reference(self, cal):
        # Thigh segment at neutral = pelvis segment (hip angles zero at neutral).
        quat.mul_into(cal.pelvis_ref, self._q_thigh, cal.mount)
        # The pelvis sensor's mounting and frame offset: dgsclip.pelvis.PelvisAlign.
        cal.store_reference(self._up)
