"""Fusion and hip angles against analytic cases and scipy's rotation decompositions."""

from __future__ import annotations

from array import array

import numpy as np
import pytest
from dgsclip import quat
from dgsclip.compat import TICKS_PERIOD, ticks_add, ticks_diff
from dgsclip.fusion import FLAG_ACCEL_REJECTED, FLAG_STATIONARY, Mahony
from dgsclip.hip import HipAngles, angles_into
from scipy.spatial.transform import Rotation

from edge_service.sim.imu import hip_rotation


def q_of(r: Rotation) -> array:
    return array("f", r.as_quat(scalar_first=True))


def test_hip_decomposition_matches_scipy_zxy():
    rng = np.random.default_rng(1)
    out = array("f", [0.0] * 3)
    for ang in rng.uniform([-60, -40, -50], [120, 40, 50], (200, 3)):
        r = Rotation.from_euler("ZXY", ang, degrees=True)
        angles_into(out, q_of(r), False)
        assert list(out) == pytest.approx(list(ang), abs=1e-3)


@pytest.mark.parametrize("side", ["left", "right"])
def test_positive_means_the_same_on_both_sides(side):
    """Flexion brings the knee forward, adduction medially, IR turns the front medially."""
    out = array("f", [0.0] * 3)
    medial = 1.0 if side == "left" else -1.0  # z points to the patient's right
    angles_into(out, q_of(hip_rotation([0, 20, 0], side)[0]), side == "left")
    femur_up = hip_rotation([0, 20, 0], side)[0].apply([0, 1, 0])
    assert out[1] == pytest.approx(20, abs=1e-3) and femur_up[2] * medial < 0  # knee medial
    front = hip_rotation([0, 0, 30], side)[0].apply([1, 0, 0])
    angles_into(out, q_of(hip_rotation([0, 0, 30], side)[0]), side == "left")
    assert out[2] == pytest.approx(30, abs=1e-3) and front[2] * medial > 0
    knee_dir = hip_rotation([40, 0, 0], side)[0].apply([0, -1, 0])
    angles_into(out, q_of(hip_rotation([40, 0, 0], side)[0]), side == "left")
    assert out[0] == pytest.approx(40, abs=1e-3) and knee_dir[0] > 0  # knee forward


def test_hip_angles_are_relative_to_the_pelvis():
    pelvis = Rotation.from_euler("xyz", [10, -25, 5], degrees=True)
    thigh = pelvis * hip_rotation([70, 10, 30], "right")[0]
    h = HipAngles("right")
    assert list(h.compute(q_of(pelvis), q_of(thigh))) == pytest.approx([70, 10, 30], abs=1e-3)


def test_static_tilt_converges_to_gravity():
    r = Rotation.from_euler("xy", [25, -40], degrees=True)  # body -> reference (z up)
    acc = r.inv().apply([0, 0, 1])
    f = Mahony()
    for _ in range(300):
        f.update(0, 0, 0, *acc, 0.01)
    est = Rotation.from_quat(list(f.q), scalar_first=True)
    assert np.allclose(est.inv().apply([0, 0, 1]), acc, atol=2e-3)


def test_constant_rate_integrates_analytically():
    f = Mahony(kp=0.0, kp_init=0.0, still_gyro_dps=0.0)
    f.update(0, 0, 0, 0, 0, 1, 0.0)  # initialise level
    for _ in range(200):  # 90 deg/s about body z for 1 s
        f.update(0, 0, 90.0, 0, 0, 1, 0.005)
    yaw = Rotation.from_quat(list(f.q), scalar_first=True).as_euler("ZYX", degrees=True)[0]
    assert yaw == pytest.approx(90.0, abs=0.05)


def test_gyro_bias_is_learnt_while_still_and_stops_heading_drift():
    f = Mahony()
    bias = (1.2, -0.8, 1.5)
    for _ in range(400):  # 4 s still
        flags = f.update(*bias, 0, 0, 1, 0.01)
    assert flags & FLAG_STATIONARY
    assert list(f.bias) == pytest.approx(bias, abs=0.02)
    q0 = array("f", f.q)
    for _ in range(1000):
        f.update(*bias, 0, 0, 1, 0.01)
    rel = array("f", [0.0] * 4)
    quat.conj_mul_into(rel, q0, f.q)
    assert 2 * np.degrees(np.arccos(min(1.0, abs(rel[0])))) < 0.2


def test_accelerometer_rejected_during_fast_motion():
    f = Mahony()
    for _ in range(200):
        f.update(0, 0, 0, 0, 0, 1, 0.01)
    flags = f.update(100, 0, 0, 0.8, 0, 1.3, 0.01)  # |a| = 1.5 g: not gravity
    assert flags & FLAG_ACCEL_REJECTED and f.accel_rejections == 1


def test_fusion_update_allocates_nothing_but_floats():
    # State lives in preallocated arrays: the same objects before and after.
    f = Mahony()
    ids = (id(f.q), id(f.bias))
    for _ in range(10):
        f.update(1, 2, 3, 0, 0, 1, 0.01)
    assert (id(f.q), id(f.bias)) == ids


def test_ticks_diff_across_the_30_bit_wrap():
    a = TICKS_PERIOD - 3000
    b = ticks_add(a, 10000)
    assert b == 7000
    assert ticks_diff(b, a) == 10000 and ticks_diff(a, b) == -10000
