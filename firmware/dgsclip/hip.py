"""ISB joint-coordinate-system hip angles (Wu et al. 2002) from segment orientations.

Segment axes (both legs, design.md): x anterior, y up along the femur / pelvis, z to the
patient's right. The hip rotation R = R_pelvis^T R_thigh is decomposed as the JCS sequence
flexion about the pelvis z axis, adduction about the floating axis, internal rotation about
the femur y axis, i.e. intrinsic Z-X'-Y'' Cardan angles: R = Rz(flex) Rx(add) Ry(rot).
For the right leg these are positive for flexion, adduction and internal rotation; the left
leg is mirrored (adduction and rotation change sign) so positive means the same on both.
"""

import math
from array import array

from dgsclip import quat

RAD2DEG = 57.29577951308232


def angles_into(out, q, mirror):
    """out[0..2] = flexion, adduction, internal rotation (deg) of the hip rotation q."""
    w, x, y, z = q[0], q[1], q[2], q[3]
    r01 = 2.0 * (x * y - w * z)
    r11 = 1.0 - 2.0 * (x * x + z * z)
    r20 = 2.0 * (x * z - w * y)
    r21 = 2.0 * (y * z + w * x)
    r22 = 1.0 - 2.0 * (x * x + y * y)
    if r21 > 1.0:
        r21 = 1.0
    elif r21 < -1.0:
        r21 = -1.0
    flex = math.atan2(-r01, r11) * RAD2DEG
    add = math.asin(r21) * RAD2DEG
    rot = math.atan2(-r20, r22) * RAD2DEG
    if mirror:
        add = -add
        rot = -rot
    out[0] = flex
    out[1] = add
    out[2] = rot


class HipAngles:
    """Hip angles from the thigh and pelvis *segment* orientations (reference frame)."""

    def __init__(self, side="right"):
        self.set_side(side)
        self.out = array("f", (0.0, 0.0, 0.0))
        self._rel = array("f", (1.0, 0.0, 0.0, 0.0))

    def set_side(self, side):
        if side not in ("left", "right"):
            raise ValueError("side must be 'left' or 'right', got %r" % (side,))
        self.side = side
        self.mirror = side == "left"

    def compute(self, q_pelvis_seg, q_thigh_seg):
        quat.conj_mul_into(self._rel, q_pelvis_seg, q_thigh_seg)
        angles_into(self.out, self._rel, self.mirror)
        return self.out
