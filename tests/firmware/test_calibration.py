"""Sensor-to-segment calibration removes mounting misalignment; bad movements are refused."""

from __future__ import annotations

import json
from array import array

import numpy as np
import pytest
from dgsclip.calib import Calibration, CalibrationError
from dgsclip.pipeline import MODE_FUNCTIONAL, MODE_NEUTRAL, Pipeline

from edge_service.sim.imu import (
    CAL_FUNCTIONAL_S,
    CAL_NEUTRAL_S,
    ImuNoise,
    simulate_imu,
    with_calibration,
)
from edge_service.sim.motion import HipMotion, Segment, manoeuvre

RATE = 100


def run(s, side, calibrate=True, neutral=CAL_NEUTRAL_S, functional=CAL_FUNCTIONAL_S):
    p = Pipeline(side)
    out = []
    errors = []
    for i in range(len(s.t_s)):
        if calibrate and i == int(neutral[0] * RATE):
            p.begin_calibration(MODE_NEUTRAL, int((neutral[1] - neutral[0]) * RATE))
        if calibrate and i == int(functional[0] * RATE):
            p.begin_calibration(MODE_FUNCTIONAL, int((functional[1] - functional[0]) * RATE))
        p.update(s.gyro_dps[i], s.accel_g[i], 1.0 / RATE)
        if p.cal_done is not None:
            if p.cal_done[1]:
                errors.append(p.cal_done[1])
            p.cal_done = None
        out.append(list(p.angles))
    return np.array(out), p, errors


@pytest.mark.parametrize("side", ["left", "right"])
def test_calibration_removes_mounting_misalignment(side):
    motion, offset = with_calibration(manoeuvre("fair"))
    noise = ImuNoise(0, 0, 0, 0, tilt_max_deg=15, yaw_max_deg=10)
    s = simulate_imu(motion, side=side, seed=5, noise=noise)
    sel = s.t_s >= offset
    raw, _, _ = run(s, side, calibrate=False)
    cal, p, errors = run(s, side)
    assert not errors and p.cal.calibrated
    rmse_raw = np.sqrt(((raw[sel] - s.angles_deg[sel]) ** 2).mean(0))
    rmse_cal = np.sqrt(((cal[sel] - s.angles_deg[sel]) ** 2).mean(0))
    assert rmse_raw.max() > 3.0  # misalignment really hurts without calibration
    assert rmse_cal.max() < 0.7, rmse_cal
    # The recovered mounting (segment -> sensor) undoes the simulated one (sensor -> segment).
    from scipy.spatial.transform import Rotation

    got = Rotation.from_quat(list(p.cal.mount), scalar_first=True)
    assert (got * s.mount).magnitude() < np.radians(1.0)


def test_movement_during_neutral_is_refused():
    motion = manoeuvre("calibration")
    s = simulate_imu(motion, side="left", seed=1)
    _, p, errors = run(s, "left", neutral=(3.0, 6.0), functional=(20.0, 27.0))
    assert errors and "stand still" in errors[0]
    assert not p.cal.calibrated


def test_no_swings_is_refused():
    s = simulate_imu(manoeuvre("neutral"), side="right", seed=1)
    _, _p, errors = run(s, "right", neutral=(0.5, 2.5), functional=(3.0, 9.0))
    assert any("too little motion" in e for e in errors)


def test_sideways_swings_are_refused():
    side_swings = HipMotion(
        (0.0, 0.0, 0.0),
        (
            Segment(3.0, (0, 0, 0), "still"),
            *tuple(Segment(1.5, (0, a, 0), "swing") for a in (20, -20, 20, -20, 0) * 2),
        ),
    )
    s = simulate_imu(side_swings, side="right", seed=2)
    _, _, errors = run(s, "right", neutral=(0.5, 2.5), functional=(3.0, 17.0))
    assert any("sideways" in e for e in errors)


def test_calibration_survives_json_roundtrip_but_needs_a_new_neutral():
    c = Calibration()
    c.mount[:] = array("f", (0.9, 0.1, -0.3, 0.2))
    c.has_mount = c.has_neutral = True
    d = json.loads(json.dumps(c.to_dict()))
    c2 = Calibration()
    c2.load_dict(d)
    assert c2.has_mount and not c2.has_neutral and not c2.calibrated
    n = np.linalg.norm([0.9, 0.1, -0.3, 0.2])
    assert list(c2.mount) == pytest.approx([0.9 / n, 0.1 / n, -0.3 / n, 0.2 / n], abs=1e-5)


@pytest.mark.parametrize("bad", [{"version": 99}, {"version": 1, "mount": [1, 2]}, []])
def test_corrupt_calibration_file_is_a_typed_error(bad):
    with pytest.raises(CalibrationError):
        Calibration().load_dict(bad)
