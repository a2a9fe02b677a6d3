"""Pelvis sensor-to-segment alignment and the heading offset between the two filters.

Each Mahony filter has its own reference frame: z up, heading zero wherever its sensor
happened to point at start (no magnetometer). The thigh filter's frame A and the pelvis
filter's frame B therefore differ by an unknown heading Y (B = Y A). Hip angles need both
segments in one frame:

    pelvis segment in A = Y^-1 * q_pelvis * pelvis_mount

At the neutral pose the pelvis segment equals the thigh segment N (hip angles zero), so
Y^-1 = N * pelvis_mount^-1 * q_pelvis0^-1 once the pelvis mounting is known. Setting the
mounting to q_pelvis0^-1 * N instead (i.e. assuming Y = identity, what this replaced) is
exact only while the pelvis does not move: a pelvis tilt is then applied about an axis
turned by the heading offset (tens of degrees when the clips' headings differ), and a
posture change (standing -> supine) turns into tens of degrees of adduction/rotation.

The pelvis mounting comes from the pelvis sensor itself:
- y (up): gravity at the neutral pose, from the pelvis filter's orientation there;
- z (flexion axis): the pelvis tilts with the hip during the calibration swings (the
  pelvis-femoral rhythm, a few % of the flexion). The pelvis rate correlated with the
  thigh's flexion rate is that axis, positive in the sense of flexion; rates that do not
  follow the swings (sway, residual bias) average out of the correlation.
- If the pelvis did not follow the swings measurably, z falls back to the nominal mounting
  (sensor z to the patient's right, orthogonalised against up): the mounting convention's
  yaw tolerance (~10 deg) then bounds the error.
Preallocated arrays only; runs per sample only in add_*.
"""

import math
from array import array

from dgsclip import quat

MIN_PELVIS_CORR = 0.5  # correlation of pelvis rate with thigh flexion rate to trust the axis
MIN_PELVIS_SHARE = 0.01  # pelvis tilt rate / thigh flexion rate (1 %)


def _rotate_into(out, q, vx, vy, vz, inverse):
    """out = q v q^-1 (or q^-1 v q when inverse)."""
    w, x, y, z = q[0], q[1], q[2], q[3]
    if inverse:
        x, y, z = -x, -y, -z
    # t = 2 q_vec x v; v' = v + w t + q_vec x t
    tx = 2.0 * (y * vz - z * vy)
    ty = 2.0 * (z * vx - x * vz)
    tz = 2.0 * (x * vy - y * vx)
    out[0] = vx + w * tx + (y * tz - z * ty)
    out[1] = vy + w * ty + (z * tx - x * tz)
    out[2] = vz + w * tz + (x * ty - y * tx)


def _norm3(v):
    n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    if n > 1e-9:
        v[0] /= n
        v[1] /= n
        v[2] /= n
    return n


class PelvisAlign:
    def __init__(self):
        self.q_pelvis0 = array("f", (1.0, 0.0, 0.0, 0.0))  # pelvis filter at neutral
        self.frame = array("f", (1.0, 0.0, 0.0, 0.0))  # Y^-1: frame B -> frame A
        self._cross = array("f", [0.0] * 9)  # sum pelvis_rate (x) thigh_rate
        self._tt = array("f", [0.0] * 9)  # sum thigh_rate (x) thigh_rate
        self._pp = 0.0  # sum |pelvis rate|^2
        self._tmp = array("f", (1.0, 0.0, 0.0, 0.0))
        self._m = array("f", [0.0] * 9)
        self._y = array("f", (0.0, 1.0, 0.0))
        self._z = array("f", (0.0, 0.0, 1.0))
        self._v = array("f", (0.0, 0.0, 1.0))
        self.n_functional = 0
        self.has_neutral = False
        self.has_axis = False  # pelvis mounting from its own swing axis (else nominal)
        self.correlation = 0.0
        self.share = 0.0
        self.ready = False

    # -- neutral -------------------------------------------------------------------
    def add_neutral(self, q_pelvis):
        q0 = self.q_pelvis0
        q0[0], q0[1], q0[2], q0[3] = q_pelvis[0], q_pelvis[1], q_pelvis[2], q_pelvis[3]
        self.has_neutral = True

    # -- functional ----------------------------------------------------------------
    def start_functional(self):
        c = self._cross
        tt = self._tt
        for i in range(9):
            c[i] = 0.0
            tt[i] = 0.0
        self._pp = 0.0
        self.n_functional = 0

    def add_functional(self, px, py, pz, tx, ty, tz):
        """Bias-corrected pelvis and thigh rates (deg/s) of one swing sample."""
        c = self._cross
        c[0] += px * tx
        c[1] += px * ty
        c[2] += px * tz
        c[3] += py * tx
        c[4] += py * ty
        c[5] += py * tz
        c[6] += pz * tx
        c[7] += pz * ty
        c[8] += pz * tz
        tt = self._tt
        tt[0] += tx * tx
        tt[1] += tx * ty
        tt[2] += tx * tz
        tt[4] += ty * ty
        tt[5] += ty * tz
        tt[8] += tz * tz
        self._pp += px * px + py * py + pz * pz
        self.n_functional += 1

    def finish_functional(self, cal):
        """Pelvis mounting into cal.pelvis_mount (after the thigh's mounting is known)."""
        v = self._v  # thigh flexion axis in the thigh sensor frame = mount * z
        _rotate_into(v, cal.mount, 0.0, 0.0, 1.0, False)
        tt = self._tt
        # Thigh rate energy about its flexion axis: v^T (sum t t^T) v.
        lam = (
            tt[0] * v[0] * v[0]
            + tt[4] * v[1] * v[1]
            + tt[8] * v[2] * v[2]
            + 2.0 * (tt[1] * v[0] * v[1] + tt[2] * v[0] * v[2] + tt[5] * v[1] * v[2])
        )
        c = self._cross
        z = self._z
        for r in range(3):
            z[r] = c[3 * r] * v[0] + c[3 * r + 1] * v[1] + c[3 * r + 2] * v[2]
        mag = _norm3(z)
        self.share = mag / lam if lam > 0.0 else 0.0
        den = math.sqrt(lam * self._pp)
        self.correlation = mag / den if den > 0.0 else 0.0
        self.has_axis = self.correlation >= MIN_PELVIS_CORR and self.share >= MIN_PELVIS_SHARE
        self._mount(cal)

    def _mount(self, cal):
        y = self._y  # up in the pelvis sensor frame at neutral
        _rotate_into(y, self.q_pelvis0, 0.0, 0.0, 1.0, True)
        _norm3(y)
        z = self._z
        if not self.has_axis:
            z[0], z[1], z[2] = 0.0, 0.0, 1.0  # nominal: sensor z to the patient's right
        d = z[0] * y[0] + z[1] * y[1] + z[2] * y[2]
        z[0] -= d * y[0]
        z[1] -= d * y[1]
        z[2] -= d * y[2]
        _norm3(z)
        m = self._m  # columns = segment axes in the sensor frame
        m[0], m[3], m[6] = (
            y[1] * z[2] - y[2] * z[1],
            y[2] * z[0] - y[0] * z[2],
            y[0] * z[1] - y[1] * z[0],
        )
        m[1], m[4], m[7] = y[0], y[1], y[2]
        m[2], m[5], m[8] = z[0], z[1], z[2]
        quat.from_matrix_into(cal.pelvis_mount, m)

    # -- both ----------------------------------------------------------------------
    def update_frame(self, cal):
        """Y^-1 = N * pelvis_mount^-1 * q_pelvis0^-1 (needs neutral and a mounting)."""
        if not self.has_neutral:
            self.ready = False
            return
        t = self._tmp
        quat.mul_into(t, self.q_pelvis0, cal.pelvis_mount)  # pelvis segment at neutral, B
        n = cal.pelvis_ref
        t[1], t[2], t[3] = -t[1], -t[2], -t[3]  # conj(t)
        quat.mul_into(self.frame, n, t)
        f = self.frame
        quat.normalize(f)
        self.ready = True

    def segment_into(self, out, q_pelvis, cal):
        """out = pelvis segment in the thigh filter's frame."""
        t = self._tmp
        quat.mul_into(t, q_pelvis, cal.pelvis_mount)
        quat.mul_into(out, self.frame, t)
