"""ClipLink over real ptys through pyserial, against a scripted clip on the master end."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
import serial
from dgsclip import protocol as P

from edge_service.clip.link import Alarm, ClipLink, CommandFailed, CommandTimeout, detect_port
from edge_service.clip.settings import ClipLinkSettings
from edge_service.clip.timeline import AngleTimeline, ImuJsonlWriter
from edge_service.errors import DeviceError
from tests.clip.scripted_clip import ScriptedClip
from tests.harness.serialpty import PtyPort, wait_until

FAST = ClipLinkSettings(
    command_timeout_s=0.3,
    command_retries=2,
    reconnect_initial_s=0.02,
    reconnect_max_s=0.2,
    handshake_timeout_s=1.0,  # 0.4 s flaked on the shared host under full-suite load
)


def test_info_start_stream_into_timeline_and_jsonl(pty_port: PtyPort, tmp_path: Path) -> None:
    tl = AngleTimeline(capacity=10_000)
    out = tmp_path / "imu.jsonl"
    with (
        ScriptedClip(pty_port) as clip,
        ImuJsonlWriter(out) as w,
        ClipLink(FAST, port=pty_port.path, timeline=tl, writer=w) as link,
    ):
        info = link.get_info()
        assert (info.fw_version, info.device_id, info.imus) == (
            "0.1.0-test",
            "e6614103",
            ["mpu6050"],
        )
        link.start()
        wait_until(lambda: len(tl) >= 50, what="50 samples")
        link.stop()
        st = link.get_status()
        assert st.state == 0 and st.samples == clip.sent_samples
        stats = json.loads(json.dumps(link.stats_dict()))  # publishable as MQTT status
        assert stats["state"] == "open" and stats["samples"] == len(tl)
        assert stats["decoder"]["crc_errors"] == 0 and stats["clock"]["resets"] == 0
    assert link.decoder.stats.crc_errors == 0 and link.decoder.stats.seq_gaps == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == len(tl) >= 50
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert {"t", "seq", "t_dev", "flexion_deg", "adduction_deg", "rotation_deg", "status"} <= rows[
        0
    ].keys()
    assert rows[0]["adduction_deg"] == 5.0 and rows[0]["rotation_deg"] == -8.0
    # Host times are device times mapped by the clock fit: close to wall clock, increasing.
    ts = [r["t"] for r in rows]
    assert all(b >= a for a, b in itertools.pairwise(ts))
    assert abs(ts[-1] - time.time()) < 5.0
    # The recording loads back as a timeline with the same samples.
    back = AngleTimeline.from_jsonl(out)
    assert len(back) == len(rows) and back.skipped_lines == 0


def test_exclusive_open(pty_port: PtyPort) -> None:
    with ScriptedClip(pty_port), ClipLink(FAST, port=pty_port.path) as link:
        link.get_info()
        with pytest.raises(DeviceError, match=r"in use|cannot open"):
            ClipLink(FAST, port=pty_port.path).open()
        with pytest.raises(serial.SerialException):
            serial.Serial(pty_port.path, exclusive=True)


def test_missing_port_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="cannot open"):
        ClipLink(FAST, port=str(tmp_path / "nope")).open()


def test_retry_with_same_id_after_lost_command(pty_port: PtyPort) -> None:
    with (
        ScriptedClip(pty_port, ignore_commands=1) as clip,
        ClipLink(FAST, port=pty_port.path) as link,
    ):
        link.set_rate(200)
        assert clip.rate_hz == 200
        assert link.stats.retries == 1 and link.stats.timeouts == 0
        ids = [c[0] for c in clip.received]
        assert len(ids) == 2 and ids[0] == ids[1]  # the retry re-used the command id
        assert clip.received[1][3] is True  # and the clip saw it as a repeat


def test_nak_raises_with_reason(pty_port: PtyPort) -> None:
    with ScriptedClip(pty_port), ClipLink(FAST, port=pty_port.path) as link:
        with pytest.raises(CommandFailed, match=r"bad_argument \(rate must be 50..200 Hz\)"):
            link.set_rate(1000)
        assert link.stats.naks == 1
        link.set_config({"side": "right"})
        assert link.get_config()["side"] == "right"


def test_timeout_after_retries(pty_port: PtyPort) -> None:
    with ScriptedClip(pty_port, mute=True) as clip, ClipLink(FAST, port=pty_port.path) as link:
        t0 = time.monotonic()
        with pytest.raises(CommandTimeout, match="3 tries"):
            link.start()
        assert time.monotonic() - t0 >= 0.9  # 3 attempts x 0.3 s
        wait_until(lambda: len(clip.received) == 3, what="3 attempts at the clip")
        assert len({c[0] for c in clip.received}) == 1
        assert link.stats.timeouts == 1 and link.stats.retries == 2


def test_calibration_waits_for_completion(pty_port: PtyPort) -> None:
    with ScriptedClip(pty_port) as clip, ClipLink(FAST, port=pty_port.path) as link:
        t0 = time.monotonic()
        result = link.calibrate_neutral(0.5)  # longer than the command timeout
        assert time.monotonic() - t0 >= 0.45
        assert json.loads(result) == {"ok": True, "cal_state": P.CAL_NEUTRAL}
        link.calibrate_functional(0.1)
        assert clip.cal_state == P.CAL_FULL


def test_unplug_replug_reconnects_and_resumes(pty_port: PtyPort) -> None:
    tl = AngleTimeline(capacity=10_000)
    with (
        ScriptedClip(pty_port, stream=True) as clip,
        ClipLink(FAST, port=pty_port.path, timeline=tl) as link,
    ):
        wait_until(lambda: len(tl) >= 20, what="samples before unplug")
        pty_port.unplug()
        wait_until(lambda: not link.connected, what="link notices the unplug")
        assert link.stats.state == "reconnecting"
        with pytest.raises(CommandTimeout):
            link.command(P.CMD_INFO, timeout_s=0.1, retries=0)
        n_before = len(tl)
        pty_port.replug()
        wait_until(lambda: link.connected, what="reconnect")
        wait_until(lambda: len(tl) >= n_before + 20, what="samples after replug")
        assert link.get_info().device_id == "e6614103"
        assert link.stats.connects == 2 and link.stats.disconnects == 1
        assert link.clock.resets >= 1
        assert clip.sent_samples > 0
    # The gap while unplugged is unknown, never interpolated.
    win = tl.window(tl.t_first or 0, tl.t_last or 0)
    gaps = [(a, b) for a, b in itertools.pairwise(win.t) if b - a > tl.max_gap_s]
    assert gaps, "unplug left no gap?"
    a, b = gaps[0]
    assert tl.angles_at((a + b) / 2) is None


def test_reboot_is_detected_and_clock_refits(pty_port: PtyPort) -> None:
    tl = AngleTimeline(capacity=10_000)
    with (
        ScriptedClip(pty_port, stream=True, tick_start=500_000_000) as clip,
        ClipLink(FAST, port=pty_port.path, timeline=tl) as link,
    ):
        wait_until(lambda: len(tl) >= 30, what="samples")
        gen = link.clock.generation
        clip.reboot()
        wait_until(lambda: link.decoder.stats.reboots == 1, what="reboot seen")
        n = len(tl)
        wait_until(lambda: len(tl) >= n + 30, what="samples after reboot")
        assert link.clock.generation == gen + 1
        # Host times stay continuous although the device ticks jumped back by ~500 s.
        assert abs((tl.t_last or 0) - time.time()) < 2.0


def test_auto_detect_by_handshake(pty_port_factory) -> None:  # type: ignore[no-untyped-def]
    silent = pty_port_factory("ttySILENT")
    real = pty_port_factory("ttyCLIP")
    with ScriptedClip(silent, mute=True), ScriptedClip(real):
        assert detect_port(FAST, candidates=[silent.path, real.path]) == real.path
        with pytest.raises(DeviceError, match="no clip answered"):
            detect_port(FAST, candidates=[silent.path])
    with pytest.raises(DeviceError, match="no clip found"):
        detect_port(FAST, candidates=[])


def test_raw_repl_escape_reaches_clip(pty_port: PtyPort) -> None:
    with ScriptedClip(pty_port, stream=True) as clip:
        with serial.Serial(pty_port.path, timeout=0.1) as ser:
            ser.write(b"\x00\r\x03")  # what mpremote sends on connect
            wait_until(lambda: clip.in_repl, what="clip leaves to the REPL")
            buf = b""

            def banner() -> bool:
                nonlocal buf
                buf += ser.read(ser.in_waiting or 1)
                return b">>> " in buf

            wait_until(banner, what="REPL prompt")
        assert not clip.streaming


def test_disk_full_recording_keeps_the_stream(pty_port: PtyPort) -> None:
    tl = AngleTimeline(capacity=10_000)
    writer = ImuJsonlWriter("/dev/full")  # every flush fails with ENOSPC, a real fault
    with (
        ScriptedClip(pty_port, stream=True),
        ClipLink(FAST, port=pty_port.path, timeline=tl, writer=writer) as link,
    ):
        # The reader appends to the timeline before it writes the line: poll for both.
        wait_until(
            lambda: len(tl) >= 30 and link.stats.writer_errors >= 30,
            what="samples despite the failing recorder, each write error counted",
        )
        assert link.get_info().device_id == "e6614103"


def test_firmware_traceback_is_logged(pty_port: PtyPort, caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedClip(pty_port, mute=True), ClipLink(FAST, port=pty_port.path) as link:
        caplog.set_level("WARNING", logger="dgsclip.device")
        pty_port.write(b"Traceback (most recent call last):\r\nMemoryError: \r\n>>> ")
        wait_until(lambda: link.decoder.stats.stray_text == 1, what="stray text noticed")
        wait_until(lambda: "MemoryError" in caplog.text, what="traceback logged")


def test_incompatible_firmware_is_refused_clearly(pty_port: PtyPort) -> None:
    from edge_service.clip.decoder import IncompatibleVersion

    def v2(frame: bytes) -> bytes:
        raw = bytearray(P.MAX_FRAME)
        n = P.cobs_decode_into(frame, len(frame) - 1, raw)
        raw[0] = 0x20  # protocol 2.0, valid CRC
        c = P.crc16(raw, n - 2)
        raw[n - 2], raw[n - 1] = c & 0xFF, c >> 8
        out = bytearray(P.MAX_ENCODED)
        k = P.cobs_encode_into(raw, n, out)
        return bytes(out[:k]) + b"\x00"

    e = P.Encoder()
    frames = [bytes(e.sample(None, i * 10_000, 0, 0, 0, (16384, 0, 0, 0), 0)) for i in range(6)]
    alarms: list[Alarm] = []
    with ClipLink(FAST, port=pty_port.path) as link:
        link.on_alarm(alarms.append)
        pty_port.write(frames[0] + v2(frames[1]) + v2(frames[2]))
        wait_until(lambda: link.decoder.stats.version_errors == 2, what="the two v2 frames")
        assert link.stats.samples == 1 and link.stats.state == "incompatible"
        assert link.stats_dict()["alarms"] == ["incompatible_protocol"]
        with pytest.raises(IncompatibleVersion, match=r"protocol 2\.0.*dgs-clip flash"):
            link.get_info()
        # Compatible frames again (the clip was reflashed / the v2 frame was a one-off):
        # the link recovers by itself, commands are sent again.
        pty_port.write(frames[3] + frames[4])
        wait_until(lambda: link.stats.samples == 3, what="v1 samples after the v2 ones")
        assert link.incompatible is None and link.stats.state == "open"
        assert link.stats_dict()["alarms"] == []
        with pytest.raises(CommandTimeout):  # sent (nobody answers here), not refused
            link.command(P.CMD_INFO, timeout_s=0.05, retries=0)
        assert link.stats.incompatible_frames == 2
    assert [(a.code, a.cleared) for a in alarms] == [
        ("incompatible_protocol", False),
        ("incompatible_protocol", True),
    ]


def test_incompatible_frame_then_replug_with_good_firmware_recovers(pty_port: PtyPort) -> None:
    raw = bytearray(P.MAX_FRAME)
    good = bytes(P.Encoder().sample(None, 0, 0, 0, 0, (16384, 0, 0, 0), 0))
    n = P.cobs_decode_into(good, len(good) - 1, raw)
    raw[0] = 0x21
    c = P.crc16(raw, n - 2)
    raw[n - 2], raw[n - 1] = c & 0xFF, c >> 8
    out = bytearray(P.MAX_ENCODED)
    v2 = bytes(out[: P.cobs_encode_into(raw, n, out)]) + b"\x00"
    with ClipLink(FAST, port=pty_port.path) as link:
        pty_port.write(v2)
        wait_until(lambda: link.incompatible is not None, what="refused frame")
        pty_port.unplug()
        wait_until(lambda: not link.connected, what="unplug seen")
        pty_port.replug()
        wait_until(lambda: link.connected, what="reconnect")
        assert link.incompatible is None  # a replugged clip gets a fresh chance
        with ScriptedClip(pty_port):
            assert link.get_info().device_id == "e6614103"


def test_implausible_samples_are_counted_and_dropped(pty_port: PtyPort) -> None:
    tl = AngleTimeline(capacity=100)
    e = P.Encoder()
    q1 = (16384, 0, 0, 0)
    frames = [  # bytes() at once: each encoder call reuses the buffer
        bytes(e.sample(None, 0, 1000, 0, 0, q1, 0)),  # good
        bytes(e.sample(None, 10_000, 25000, 0, 0, q1, 0)),  # 250 deg flexion
        bytes(e.sample(None, 20_000, 0, -18001, 0, q1, 0)),  # -180.01 deg
        bytes(e.sample(None, 30_000, 0, 0, 0, (16384, 16384, 0, 0), 0)),  # |q| = 1.41
        bytes(e.sample(None, 40_000, 0, 0, 0, q1, 0, 0, 0, (0, 0, 0, 0))),  # pelvis |q| = 0
        bytes(e.sample(None, 50_000, -17000, 4000, 9000, (11585, 0, 11585, 0), 0)),  # good
    ]
    with ClipLink(FAST, port=pty_port.path, timeline=tl) as link:
        pty_port.write(b"".join(bytes(f) for f in frames))
        wait_until(lambda: link.stats.implausible_samples == 4, what="4 implausible samples")
        wait_until(lambda: len(tl) == 2, what="the 2 good samples")
        d = link.stats_dict()
        assert d["data_quality"]["implausible_samples"] == 4
        assert [a["code"] for a in d["alarm_log"]] == ["implausible_samples"] * 3  # 1, 2, 4
    assert link.decoder.stats.crc_errors == 0


def test_reboot_mid_stream_restarts_streaming_with_an_alarm(pty_port: PtyPort) -> None:
    tl = AngleTimeline(capacity=10_000)
    alarms: list[Alarm] = []
    with (
        ScriptedClip(pty_port) as clip,
        ClipLink(FAST, port=pty_port.path, timeline=tl) as link,
    ):
        clip.cal_state = P.CAL_FULL
        link.on_alarm(alarms.append)
        link.set_rate(200)
        link.start()
        wait_until(lambda: len(tl) >= 30, what="samples")
        clip.rate_hz = 100  # the reboot forgets the rate; the link must restore it
        clip.reboot(idle=True, cause=P.RESET_HARD)  # a brown-out: back idle
        wait_until(lambda: link.stats.stream_restarts == 1, what="start re-sent")
        n = len(tl)
        wait_until(lambda: len(tl) >= n + 30, what="samples after the reboot")
        assert clip.streaming and clip.rate_hz == 200
        d = link.stats_dict()
        assert d["clip_reboots"] == 1 and d["data_quality"]["clip_reboots"] == 1
        assert d["clip"]["reset_cause"] == "hard_reset" and d["clip"]["boot_id"] == 2
        assert d["alarms"] == []  # came back calibrated; nothing left active
        rebooted = [a for a in alarms if a.code == "clip_rebooted"]
        assert len(rebooted) == 1 and rebooted[0].details["reset_cause"] == "hard_reset"
        # A second reboot without calibration raises the condition alarm.
        clip.cal_state = P.CAL_NONE
        clip.reboot(idle=True, cause=P.RESET_WATCHDOG)
        wait_until(lambda: link.stats.stream_restarts == 2, what="second restart")
        assert "clip_uncalibrated" in link.stats_dict()["alarms"]
        assert link.stats.clip_reboots == 2
