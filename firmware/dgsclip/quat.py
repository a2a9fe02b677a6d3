"""Quaternion helpers on preallocated float arrays (w, x, y, z); no allocation per call.

Convention: a quaternion q rotates vectors from the body (sensor/segment) frame into the
reference frame: v_ref = q * v_body * conj(q).
"""

import math


def normalize(q):
    n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    if n > 0.0:
        inv = 1.0 / n
        q[0] *= inv
        q[1] *= inv
        q[2] *= inv
        q[3] *= inv


def mul_into(out, a, b):
    """out = a * b (out must not alias a or b)."""
    aw, ax, ay, az = a[0], a[1], a[2], a[3]
    bw, bx, by, bz = b[0], b[1], b[2], b[3]
    out[0] = aw * bw - ax * bx - ay * by - az * bz
    out[1] = aw * bx + ax * bw + ay * bz - az * by
    out[2] = aw * by - ax * bz + ay * bw + az * bx
    out[3] = aw * bz + ax * by - ay * bx + az * bw


def conj_mul_into(out, a, b):
    """out = conj(a) * b (relative rotation of b seen from a)."""
    aw, ax, ay, az = a[0], -a[1], -a[2], -a[3]
    bw, bx, by, bz = b[0], b[1], b[2], b[3]
    out[0] = aw * bw - ax * bx - ay * by - az * bz
    out[1] = aw * bx + ax * bw + ay * bz - az * by
    out[2] = aw * by - ax * bz + ay * bw + az * bx
    out[3] = aw * bz + ax * by - ay * bx + az * bw


def from_matrix_into(out, m):
    """Quaternion of a row-major 3x3 rotation matrix m (9 floats). Shepperd's method."""
    m00, m01, m02 = m[0], m[1], m[2]
    m10, m11, m12 = m[3], m[4], m[5]
    m20, m21, m22 = m[6], m[7], m[8]
    tr = m00 + m11 + m22
    if tr > 0.0:
        s = math.sqrt(tr + 1.0) * 2.0
        out[0] = 0.25 * s
        out[1] = (m21 - m12) / s
        out[2] = (m02 - m20) / s
        out[3] = (m10 - m01) / s
    elif m00 > m11 and m00 > m22:
        s = math.sqrt(1.0 + m00 - m11 - m22) * 2.0
        out[0] = (m21 - m12) / s
        out[1] = 0.25 * s
        out[2] = (m01 + m10) / s
        out[3] = (m02 + m20) / s
    elif m11 > m22:
        s = math.sqrt(1.0 + m11 - m00 - m22) * 2.0
        out[0] = (m02 - m20) / s
        out[1] = (m01 + m10) / s
        out[2] = 0.25 * s
        out[3] = (m12 + m21) / s
    else:
        s = math.sqrt(1.0 + m22 - m00 - m11) * 2.0
        out[0] = (m10 - m01) / s
        out[1] = (m02 + m20) / s
        out[2] = (m12 + m21) / s
        out[3] = 0.25 * s
    if out[0] < 0.0:  # keep w >= 0 so stored calibrations compare equal
        out[0], out[1], out[2], out[3] = -out[0], -out[1], -out[2], -out[3]
    normalize(out)
