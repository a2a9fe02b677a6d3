"""Reboots and faults of the firmware App in virtual time: a brown-out mid-session resumes
with the stored calibration and says why it rebooted; neutral refused off-pose; a dead
I2C bus backs off, stops feeding the watchdog and ends in a counted reset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from dgsclip import protocol as P
from dgsclip.app import App
from dgsclip.storage import DirFS

from edge_service.clip.decoder import FrameDecoder
from edge_service.clip.messages import Ack, Hello, Sample, Status
from edge_service.sim.motion import manoeuvre
from edge_service.virtualclip import TICKS_START_US, ScriptedIO, _build

from .conftest import Rig, u16


def test_brownout_mid_session_resumes_calibrated_with_reset_cause(tmp_path: Path) -> None:
    motion = manoeuvre("fair", repetitions=2)
    app, clock, io, offset = _build(motion, "left", 100, 4, False, str(tmp_path), "mpu6050")
    io.at(offset, P.encode_command(3, P.CMD_START))
    while clock.elapsed_us() < (offset + 1.0) * 1e6:
        app.step()
    assert app.pipe.cal.calibrated
    boot1 = app.boot_id
    # Brown-out: RAM gone, same flash, same IMU and clock; the clip boots idle.
    io2 = ScriptedIO(clock)
    app2 = App(app.imu, io2, clock, DirFS(str(tmp_path)), cfg=app.cfg, reset_cause=P.RESET_HARD)
    t_boot = clock.elapsed_us() / 1e6
    io2.at(t_boot + 0.3, P.encode_command(1, P.CMD_START))  # the host link re-sends start
    while clock.elapsed_us() < (offset + motion.duration_s) * 1e6:
        app2.step()
    io2.at(clock.elapsed_us() / 1e6, P.encode_command(2, P.CMD_GET_STATUS))
    app2.step()
    msgs = FrameDecoder().feed(bytes(io2.out))
    hello = next(m for m in msgs if isinstance(m, Hello))
    assert hello.info.reset_cause == P.RESET_HARD and hello.info.boot_id == boot1 + 1
    assert hello.info.cal_state == P.CAL_FULL  # stored calibration, announced at boot
    s = [m for m in msgs if isinstance(m, Sample)]
    cal = [m for m in s if m.calibrated]
    assert len(cal) > len(s) - 150  # calibrated again within the fusion's 1 s start-up
    # Device time since the motion started, from the sample's own timestamp.
    rel = np.array([((m.t_us - TICKS_START_US) % P.TICKS_PERIOD) / 1e6 - offset for m in cal])
    truth = motion.angles(rel)
    got = np.array([[m.flexion_deg, m.adduction_deg, m.rotation_deg] for m in cal])
    rmse = np.sqrt(((got - truth) ** 2).mean(0))
    assert rmse.max() < 2.0, rmse
    ack = next(m for m in msgs if isinstance(m, Ack) and m.cmd_id == 2)
    st = ack.clip_status()
    assert st.boot_id == boot1 + 1 and st.reset_cause == P.RESET_HARD


def test_neutral_is_refused_away_from_standing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    flexed = Rig(tmp_path / "a", source=lambda: ((0.0, 0.0, 0.0), (0.866, 0.5, 0.0)))
    flexed.send(1, P.CMD_CALIBRATE_NEUTRAL, u16(500))
    (nak,) = [m for m in flexed.run_for(1.5) if isinstance(m, Ack)]
    assert not nak.ok and nak.code == P.ERR_FAILED
    assert "60 deg from upright" in nak.text(), nak.text()
    assert not flexed.app.pipe.cal.has_neutral
    upright = Rig(tmp_path / "b")  # 6 deg tilt: a normal mounting
    upright.send(1, P.CMD_CALIBRATE_NEUTRAL, u16(500))
    (ack,) = [m for m in upright.run_for(1.5) if isinstance(m, Ack)]
    assert ack.ok and json.loads(ack.payload)["step"] == "neutral"


def test_dead_bus_backs_off_stops_the_watchdog_and_resets_counted(tmp_path: Path) -> None:
    r = Rig(tmp_path, wdt_timeout_ms=2000)
    fed: list[int] = []
    resets: list[int] = []

    class Wdt:
        def feed(self) -> None:
            fed.append(r.clock.elapsed_us())

    r.app.wdt = Wdt()
    r.app.reset = lambda: resets.append(r.clock.elapsed_us())
    r.send(1, P.CMD_START)
    r.run_for(0.5)
    assert len(fed) > 20  # every pass of the loop (it sleeps <= 20 ms when idle)
    r.bus.absent = True  # SDA stuck / IMU gone: every transfer fails
    dead_at = r.clock.elapsed_us()
    transfers = r.bus.transfers
    r.run_for(1.5)
    # Backs off (not ~8 failed transfers per loop iteration: 2 per 20..500 ms back-off step)
    # and the watchdog is starved once the last sample is half its timeout (1 s) old.
    assert r.bus.transfers - transfers < 60
    assert 0.9e6 < fed[-1] - dead_at <= 1.0e6
    assert len(resets) == 1 and 0.98e6 <= resets[0] - dead_at < 1.01e6
    assert not r.app.running
    rec = json.loads((tmp_path / "dgsclip_boot.json").read_text())
    assert rec["app_resets"] == 1 and "no IMU sample" in rec["last"]
    # The next boot reports it: resets counted across boots.
    r2 = Rig(tmp_path)
    r2.send(2, P.CMD_GET_STATUS)
    (ack,) = [m for m in r2.run_for(0.1) if isinstance(m, Ack)]
    assert ack.clip_status().resets == 1
    msgs = r2.messages()
    assert not [m for m in msgs if isinstance(m, Status)]
