"""Virtual clip over a real pty (pyserial), offline virtual_samples, and the CLI commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import serial
from dgsclip import protocol as P

from edge_service.cli.clip import main as clip_main
from edge_service.clip.decoder import FrameDecoder
from edge_service.clip.messages import Ack, Hello, Sample
from edge_service.sim.imu import CAL_FUNCTIONAL_S, CAL_NEUTRAL_S, simulate_imu, with_calibration
from edge_service.sim.motion import manoeuvre
from edge_service.virtualclip import start_virtual_clip, virtual_samples


def _read_until(port: serial.Serial, dec: FrameDecoder, pred, timeout_s: float = 10.0):
    got = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got += dec.feed(port.read(4096))
        if pred(got):
            return got
    raise AssertionError(f"timed out; got {len(got)} messages: {got[:5]}")


@pytest.mark.sim
@pytest.mark.parametrize("imu", ["mpu6050", "lsm6ds"])
def test_virtual_clip_speaks_the_protocol_over_a_pty(imu):
    clip = start_virtual_clip(manoeuvre("fair"), side="right", seed=3, imu=imu)
    try:
        with serial.Serial(clip.port, 115200, timeout=0.05) as port:
            dec = FrameDecoder()
            port.write(P.encode_command(1, P.CMD_INFO))
            msgs = _read_until(port, dec, lambda m: any(isinstance(x, Ack) for x in m))
            ack = next(x for x in msgs if isinstance(x, Ack))
            info = ack.info()
            assert info.cal_state == P.CAL_FULL and info.imu_models == (
                "mpu6050" if imu == "mpu6050" else "lsm6dsox"
            )
            port.write(P.encode_command(2, P.CMD_START))
            msgs = _read_until(
                port, dec, lambda m: sum(isinstance(x, Sample) for x in m) >= 50, timeout_s=10
            )
            s = [x for x in msgs if isinstance(x, Sample)]
            assert all(x.calibrated for x in s)
            assert any(isinstance(x, Hello) for x in msgs)  # start re-announces the clip
            # Real-time pacing: 50 samples took ~0.5 s of device time.
            span = ((s[49].t_us - s[0].t_us) % P.TICKS_PERIOD) / 1e6
            assert span == pytest.approx(0.49, abs=0.02)
            # Garbage on the line is dropped and counted, the clip keeps answering.
            port.write(b"\x00\x55\xaa\x13\x00" + P.encode_command(3, P.CMD_GET_STATUS))
            msgs = _read_until(
                port, dec, lambda m: any(isinstance(x, Ack) and x.cmd_id == 3 for x in m)
            )
            st = next(x for x in msgs if isinstance(x, Ack) and x.cmd_id == 3).clip_status()
            assert st.cmd_errors >= 1 and st.state == P.STATE_STREAMING
        assert clip.error is None
    finally:
        clip.stop()


@pytest.mark.sim
def test_virtual_samples_track_the_scripted_motion():
    motion = manoeuvre("piriformis", repetitions=1)
    recs = virtual_samples(motion, side="left", t0=1_700_000_000.0, seed=7)
    assert set(recs[0]) == {
        "t",
        "seq",
        "t_dev",
        "flexion_deg",
        "adduction_deg",
        "rotation_deg",
        "status",
        "quat",
    }
    t = np.array([r["t"] for r in recs]) - 1_700_000_000.0
    assert t[0] == 0.0 and t[-1] == pytest.approx(motion.duration_s, abs=0.02)
    got = np.array([[r["flexion_deg"], r["adduction_deg"], r["rotation_deg"]] for r in recs])
    rmse = np.sqrt(((got - motion.angles(t)) ** 2).mean(0))
    assert rmse.max() < 2.0, rmse
    assert all(isinstance(r["status"], int) and r["status"] & P.FLAG_CALIBRATED for r in recs)
    assert np.all(np.diff([r["seq"] for r in recs]) >= 1)
    # Same seed, same samples (recordings replay bit-exactly).
    again = virtual_samples(motion, side="left", t0=1_700_000_000.0, seed=7)
    assert again == recs


def _raw_csv(path, side, pelvis=False):
    motion, offset = with_calibration(manoeuvre("fair", repetitions=1))
    s = simulate_imu(motion, side=side, seed=9, pelvis=pelvis)
    cols = [s.t_s[:, None], s.gyro_dps, s.accel_g]
    header = "t_s,gx,gy,gz,ax,ay,az"
    if pelvis:
        assert s.pelvis_gyro_dps is not None and s.pelvis_accel_g is not None
        cols += [s.pelvis_gyro_dps, s.pelvis_accel_g]
        header += ",pgx,pgy,pgz,pax,pay,paz"
    np.savetxt(path, np.hstack(cols), delimiter=",", header=header, comments="", fmt="%.5f")
    return s, offset


@pytest.mark.parametrize("side,pelvis", [("left", False), ("right", True)])
def test_replay_runs_the_firmware_on_a_raw_csv(tmp_path, side, pelvis, capsys):
    raw = tmp_path / "raw.csv"
    s, offset = _raw_csv(raw, side, pelvis)
    out = tmp_path / "angles.jsonl"
    n = f"{CAL_NEUTRAL_S[0]}:{CAL_NEUTRAL_S[1]}"
    f = f"{CAL_FUNCTIONAL_S[0]}:{CAL_FUNCTIONAL_S[1]}"
    rc = clip_main(
        ["replay", str(raw), "--out", str(out), "--side", side, "--neutral", n, "--functional", f]
    )
    assert rc == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == len(s.t_s) and set(recs[0]) == {
        "t",
        "flexion_deg",
        "adduction_deg",
        "rotation_deg",
    }
    got = np.array([[r["flexion_deg"], r["adduction_deg"], r["rotation_deg"]] for r in recs])
    sel = s.t_s >= offset
    rmse = np.sqrt(((got[sel] - s.angles_deg[sel]) ** 2).mean(0))
    assert rmse.max() < 2.0, rmse


def _replay_argv(raw, out, neutral, functional, side="left"):
    return [
        "replay", str(raw), "--out", str(out), "--side", side,
        "--neutral", neutral, "--functional", functional,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "content,args,msg",
    [
        ("t_s,gx,gy\n0,1,2\n", [], "missing column(s) gz, ax, ay, az"),
        ("t_s,gx,gy,gz,ax,ay,az\n0,1,2,3,x,0,1\n0.01,0,0,0,0,1,0\n", [], "not a number row"),
        ("t_s,gx,gy,gz,ax,ay,az\n", [], "no samples"),
        (None, ["--neutral", "3:1"], "T1 must be after T0"),
        (None, ["--functional", "abc"], "must be T0:T1"),
        (None, ["--neutral", "100:101"], "--neutral 100:101 contains no samples"),
    ],
)
def test_replay_bad_input_is_one_clear_line(tmp_path, capsys, content, args, msg):
    raw = tmp_path / "raw.csv"
    if content is None:
        _raw_csv(raw, "left")
    else:
        raw.write_text(content)
    argv = _replay_argv(raw, tmp_path / "o.jsonl", "0.5:2.9", "3:27")
    for i in range(0, len(args), 2):
        argv[argv.index(args[i]) + 1] = args[i + 1]
    assert clip_main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_replay_refuses_a_neutral_window_with_movement(tmp_path, capsys):
    raw = tmp_path / "raw.csv"
    _raw_csv(raw, "left")
    assert clip_main(_replay_argv(raw, tmp_path / "o.jsonl", "3:6", "6:27")) == 2
    assert "stand still" in capsys.readouterr().err


def test_flash_missing_port_is_one_line(capsys):
    assert clip_main(["flash", "--port", "/dev/ttyDGS-none"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("dgs-clip: error: port /dev/ttyDGS-none does not exist")
        and err.count("\n") == 1
    )


def test_flash_rejects_an_invalid_config_before_touching_the_clip(tmp_path, capsys):
    import os

    cfg = tmp_path / "dgsclip.json"
    cfg.write_text('{"rate_hz": 1000}')
    m, s = os.openpty()  # a port that exists but must not be used
    try:
        assert clip_main(["flash", "--port", os.ttyname(s), "--config", str(cfg)]) == 2
    finally:
        os.close(m)
        os.close(s)
    assert "rate_hz must be in 50..200" in capsys.readouterr().err


@pytest.mark.sim
def test_dgs_clip_virtual_prints_the_pty_path_first():
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_service.cli.clip", "virtual", "--autostart", "--seed", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("/dev/pts/")
        with serial.Serial(first, timeout=0.05) as port:
            msgs = _read_until(
                port, FrameDecoder(), lambda m: any(isinstance(x, Sample) for x in m)
            )
        assert any(isinstance(x, Sample) and x.calibrated for x in msgs)
    finally:
        proc.terminate()
        proc.wait(10)


def test_two_imus_thigh_against_pelvis(tmp_path):
    """Pelvis IMU found at the second address; samples carry both quaternions."""
    from edge_service.virtualclip import _build

    motion = manoeuvre("fair", repetitions=1)
    app, clock, io, offset = _build(motion, "right", 100, 5, True, str(tmp_path), "lsm6ds")
    assert app.pelvis_imu is not None and app.pelvis_imu.name == "mpu6500"
    io.at(offset, P.encode_command(9, P.CMD_START))
    while clock.elapsed_us() < (offset + motion.duration_s) * 1e6:
        app.step()
    msgs = FrameDecoder().feed(bytes(io.out))
    hello = next(m for m in msgs if isinstance(m, Hello))
    assert hello.info.imu_count == 2 and hello.info.imu_models == "lsm6dsox,mpu6500"
    s = [m for m in msgs if isinstance(m, Sample)]
    assert s and all(m.pelvis_quat is not None and "pelvis_present" in m.status for m in s)
    t = np.array([((m.t_us - s[0].t_us) % P.TICKS_PERIOD) / 1e6 for m in s])
    got = np.array([[m.flexion_deg, m.adduction_deg, m.rotation_deg] for m in s])
    rmse = np.sqrt(((got - motion.angles(t)) ** 2).mean(0))
    assert rmse.max() < 2.0, rmse
