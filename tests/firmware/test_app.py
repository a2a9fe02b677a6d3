"""The firmware main loop in virtual time: commands, ACK/NAK, faults, overruns, ticks wrap."""

from __future__ import annotations

import itertools
import json

import pytest
from dgsclip import protocol as P

from edge_service.clip.messages import Ack, Hello, Log, Sample, Status

from .conftest import Rig, u16


def acks(msgs):
    return [m for m in msgs if isinstance(m, Ack)]


def samples(msgs):
    return [m for m in msgs if isinstance(m, Sample)]


def test_boot_says_hello_and_stays_idle(rig):
    msgs = rig.run_for(0.5)
    assert isinstance(msgs[0], Hello) and msgs[0].info.fw_version
    assert not samples(msgs)


def test_start_streams_at_the_configured_rate_across_the_tick_wrap(rig):
    rig.send(1, P.CMD_START)
    msgs = rig.run_for(8.0)  # SimClock starts 5 s before the 30-bit wrap
    assert acks(msgs)[0].ok and acks(msgs)[0].cmd_id == 1
    s = samples(msgs)
    assert len(s) == pytest.approx(800, abs=2)
    dts = [((b.t_us - a.t_us) % P.TICKS_PERIOD) for a, b in itertools.pairwise(s)]
    assert set(dts) == {10_000}  # exactly the period, wrap included
    assert any(b.t_us < a.t_us for a, b in itertools.pairwise(s))  # it did wrap
    assert "stationary" in s[-1].status and s[-1].overruns == 0
    assert any(isinstance(m, Status) for m in msgs)


def test_info_status_stop_and_set_rate(rig):
    rig.send(1, P.CMD_INFO)
    rig.send(2, P.CMD_START)
    rig.send(3, P.CMD_SET_RATE, u16(200), at_s=1.0)
    rig.send(4, P.CMD_GET_STATUS, at_s=2.0)
    rig.send(5, P.CMD_STOP, at_s=2.0)
    msgs = rig.run_for(3.0)
    a = {m.cmd_id: m for m in acks(msgs)}
    assert all(m.ok for m in a.values()) and set(a) == {1, 2, 3, 4, 5}
    assert a[1].info().rate_hz == 100
    st = a[4].clip_status()
    assert st.rate_hz == 200 and st.samples > 250
    s = samples(msgs)
    late = [x for x in s if ((x.t_us - s[0].t_us) % P.TICKS_PERIOD) > 1_100_000]
    assert late and all(
        ((b.t_us - a_.t_us) % P.TICKS_PERIOD) == 5000 for a_, b in itertools.pairwise(late)
    )
    assert not [m for m in samples(rig.run_for(0.5))]  # stopped


@pytest.mark.parametrize(
    "cmd,args,code",
    [
        (P.CMD_SET_RATE, u16(20), P.ERR_BAD_ARGUMENT),
        (P.CMD_SET_RATE, b"", P.ERR_BAD_ARGUMENT),
        (P.CMD_SET_CONFIG, b'{"rate_hz": 500}', P.ERR_BAD_ARGUMENT),
        (P.CMD_SET_CONFIG, b'{"nope": 1}', P.ERR_BAD_ARGUMENT),
        (P.CMD_SET_CONFIG, b"{not json", P.ERR_BAD_ARGUMENT),
        (0x7F, b"", P.ERR_UNKNOWN_COMMAND),
    ],
)
def test_bad_commands_are_naked_with_a_reason(rig, cmd, args, code):
    rig.send(7, cmd, args)
    (nak,) = acks(rig.run_for(0.2))
    assert not nak.ok and nak.code == code and nak.cmd_id == 7
    assert rig.app.cfg["rate_hz"] == 100


def test_set_config_is_validated_persisted_and_applied(rig, tmp_path):
    rig.send(1, P.CMD_SET_CONFIG, json.dumps({"side": "right", "kp": 1}).encode())
    rig.send(2, P.CMD_GET_CONFIG)
    a = acks(rig.run_for(0.2))
    page0 = json.loads(a[1].payload)
    assert a[0].ok and page0["page"] == 0 and page0["pages"] > 1
    got = {}
    for page in range(page0["pages"]):
        rig.send(10 + page, P.CMD_GET_CONFIG, bytes([page]))
        (ack,) = acks(rig.run_for(0.05))
        got.update(json.loads(ack.payload))
    assert got["side"] == "right" and got["kp"] == 1.0 and "wdt_timeout_ms" in got
    assert json.loads((tmp_path / "dgsclip.json").read_text())["kp"] == 1.0
    assert rig.app.pipe.hip.side == "right" and rig.app.pipe.thigh.kp == 1.0


def test_bad_config_file_falls_back_to_defaults_and_logs(tmp_path):
    (tmp_path / "dgsclip.json").write_text('{"rate_hz": 9999}')
    from dgsclip.app import App
    from dgsclip.drivers import detect
    from dgsclip.storage import DirFS

    from edge_service.clip.decoder import FrameDecoder
    from edge_service.sim.fake_i2c import FakeI2C, FakeMPU6050
    from edge_service.virtualclip import ScriptedIO, SimClock

    clock = SimClock()
    io = ScriptedIO(clock)
    app = App(detect(FakeI2C([FakeMPU6050()])), io, clock, DirFS(str(tmp_path)))
    assert app.rate_hz == 100
    logs = [m for m in FrameDecoder().feed(bytes(io.out)) if isinstance(m, Log)]
    assert logs and "rate_hz" in logs[0].text and logs[0].level == 30


def test_host_retry_gets_the_same_reply_without_executing_twice(rig):
    rig.send(9, P.CMD_SET_CONFIG, b'{"kp": 2}')
    rig.run_for(0.1)
    rig.app.cfg["kp"] = 3.0  # would be overwritten if the retry executed again
    rig.send(9, P.CMD_SET_CONFIG, b'{"kp": 2}')
    rig.run_for(0.1)
    # The byte-identical re-sent reply is what the host's duplicate filter sees; decode raw.
    from edge_service.clip.decoder import FrameDecoder

    a = acks(FrameDecoder(track_sequence=False).feed(bytes(rig.io.out)))
    assert [x.cmd_id for x in a] == [9, 9] and a[1] == a[0] and rig.app.cfg["kp"] == 3.0


def test_self_test_reports_imu(rig):
    rig.send(1, P.CMD_SELF_TEST)
    (a,) = acks(rig.run_for(0.5))
    rep = json.loads(a.payload)
    assert a.ok and rep["imu"] == "mpu6050" and rep["reads_ok"] == 20


def test_self_test_fails_when_the_imu_is_unplugged(rig):
    rig.bus.absent = True
    rig.send(1, P.CMD_SELF_TEST)
    (a,) = acks(rig.run_for(0.5))
    assert a.code == P.ERR_FAILED and json.loads(a.payload)["reads_ok"] == 0


def test_i2c_faults_while_streaming_are_flagged_counted_and_survived(rig):
    rig.send(1, P.CMD_START)
    rig.run_for(1.0)
    rig.bus.fail_reads = 1  # glitch: retried inside the driver
    s1 = samples(rig.run_for(0.05))
    assert "i2c_error" in s1[0].status and s1[0].i2c_errors == 1
    rig.bus.absent = True  # unplugged for 0.3 s
    gap = samples(rig.run_for(0.3))
    assert gap == []
    rig.bus.absent = False
    after = samples(rig.run_for(0.5))
    assert after and "i2c_error" in after[0].status and after[0].i2c_errors > 1
    assert "i2c_error" not in after[-1].status
    assert rig.app.running


def test_a_loop_stall_loses_no_sample_with_the_imu_fifo(rig):
    rig.send(1, P.CMD_START)
    before = samples(rig.run_for(0.5))
    rig.clock._virtual_us += 55_000  # a 55 ms stall (e.g. a flash write)
    s = before + samples(rig.run_for(0.2))
    dts = {((b.t_us - a.t_us) % P.TICKS_PERIOD) for a, b in itertools.pairwise(s)}
    assert dts == {10_000}  # the FIFO kept every sample, each at its own time
    assert all(x.overruns == 0 and "overrun" not in x.status for x in s)


def test_overrun_is_counted_when_the_loop_stalls_without_fifo(tmp_path):
    rig = Rig(tmp_path, fifo=False)
    rig.send(1, P.CMD_START)
    rig.run_for(0.5)
    rig.clock._virtual_us += 55_000  # a 55 ms stall (e.g. a flash write)
    s = samples(rig.run_for(0.2))
    assert "overrun" in s[0].status and s[0].overruns == 5
    assert "overrun" not in s[-1].status


def test_imu_fifo_overflow_is_counted_and_the_stream_resumes_whole(rig):
    rig.send(1, P.CMD_START)
    rig.run_for(0.3)
    rig.clock._virtual_us += 1_500_000  # longer than the MPU's 1024-byte FIFO (850 ms)
    s = samples(rig.run_for(0.3))
    assert rig.imu.fifo_overflows == 1 and rig.dev.fifo_lost > 0
    assert "overrun" in s[0].status and s[0].overruns == 1
    dts = {((b.t_us - a.t_us) % P.TICKS_PERIOD) for a, b in itertools.pairwise(s[1:])}
    assert dts == {10_000}


def test_watchdog_is_fed_by_the_loop(tmp_path):
    class Wdt:
        fed = 0

        def feed(self):
            Wdt.fed += 1

    r = Rig(tmp_path)
    r.app.wdt = Wdt()
    r.run_for(0.5)
    # The idle loop sleeps at most IDLE_MAX_US (20 ms) between passes, each feeds it.
    from dgsclip.app import IDLE_MAX_US

    assert Wdt.fed >= 500_000 // IDLE_MAX_US - 1


def test_exit_repl_framed_and_raw_escape(rig):
    rig.send(5, P.CMD_EXIT_REPL)
    a = acks(rig.run_for(0.1))
    assert a and a[0].ok and not rig.app.running
    rig.app.running = True
    rig.io.at(0, b"\x00\r\x03")  # what mpremote sends first
    rig.run_for(0.1)
    assert not rig.app.running


def test_calibration_commands_over_the_protocol(tmp_path):
    from edge_service.sim.imu import simulate_imu
    from edge_service.sim.motion import manoeuvre
    from edge_service.virtualclip import SimSource

    s = simulate_imu(manoeuvre("calibration"), side="left", seed=4)
    r = Rig.__new__(Rig)
    Rig.__init__(r, tmp_path, source=None)
    src = SimSource(s, 100, r.clock, loop_from=0)
    r.dev.source = src.thigh
    r.send(1, P.CMD_CALIBRATE_FUNCTIONAL, at_s=0.1)  # before neutral: refused
    r.send(2, P.CMD_CALIBRATE_NEUTRAL, u16(2000), at_s=0.6)
    r.send(3, P.CMD_CALIBRATE_NEUTRAL, at_s=0.7)  # busy
    r.send(4, P.CMD_CALIBRATE_FUNCTIONAL, u16(24000), at_s=3.0)
    msgs = r.run_for(28.0)
    a = {m.cmd_id: m for m in acks(msgs)}
    assert a[1].code == P.ERR_BAD_STATE and b"calibrate_neutral first" in a[1].payload
    assert a[3].code == P.ERR_BUSY
    assert a[2].ok and a[4].ok
    res = json.loads(a[4].payload)
    assert res["calibrated"] and 80 < res["axis_angle_deg"] < 100 and res["planarity"] > 0.95
    saved = json.loads((tmp_path / "dgsclip_cal.json").read_text())
    assert saved["has_mount"]
    r.send(5, P.CMD_INFO)
    (info,) = acks(r.run_for(0.1))
    assert info.info().cal_state == P.CAL_FULL
