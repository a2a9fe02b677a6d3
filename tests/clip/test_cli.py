"""dgs-clip info / monitor / calibrate against a scripted clip on a real pty."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dgsclip import protocol as P

from edge_service.cli.clip import main
from tests.clip.scripted_clip import ScriptedClip
from tests.harness.serialpty import PtyPort


def test_info_json(pty_port: PtyPort, capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedClip(pty_port):
        assert main(["info", "--port", pty_port.path, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fw_version"] == "0.1.0-test" and doc["imu_models"] == "mpu6050"
    assert doc["status"]["state"] == 0


def test_info_text(pty_port: PtyPort, capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedClip(pty_port):
        assert main(["info", "-p", pty_port.path]) == 0
    out = capsys.readouterr().out
    assert "device id       e6614103" in out and "calibration     none" in out


def test_monitor_records_jsonl_for_n_seconds(
    pty_port: PtyPort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "imu.jsonl"
    with ScriptedClip(pty_port) as clip:
        rc = main(
            ["monitor", "--port", pty_port.path, "--seconds", "1.2", "--plain", "--jsonl", str(out)]
        )
        assert rc == 0
        assert not clip.streaming  # monitor stopped the stream on exit
    text = capsys.readouterr().out
    assert "flexion=" in text and "recorded to" in text
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) >= 60  # ~100 Hz for 1.2 s, minus start-up
    assert rows[-1]["seq"] > rows[0]["seq"]


def test_calibrate_yes(pty_port: PtyPort, capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedClip(pty_port) as clip:
        rc = main(
            [
                "calibrate",
                "-p",
                pty_port.path,
                "--yes",
                "--neutral-s",
                "0.2",
                "--functional-s",
                "0.2",
            ]
        )
        assert rc == 0 and clip.cal_state == P.CAL_FULL
    assert "calibration on the clip: neutral + functional" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--port", str(tmp_path / "ttyNONE")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open" in err


def test_mute_clip_times_out_cleanly(pty_port: PtyPort, capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedClip(pty_port, mute=True):
        assert main(["info", "-p", pty_port.path, "--timeout", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing answered on" in err and "dgs-clip flash" in err


@pytest.mark.sim
def test_info_against_a_board_without_firmware_says_to_flash_it(
    mpwasm: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_service.sim.replboard import ReplBoard

    with ReplBoard() as board:  # real MicroPython REPL, no dgs-clip firmware on it
        assert main(["info", "-p", board.port, "--timeout", "0.3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "without the clip firmware running" in err
    assert f"dgs-clip flash --port {board.port}" in err


def test_monitor_failure_leaves_no_empty_recording(tmp_path: Path) -> None:
    rec = tmp_path / "imu.jsonl"
    assert main(["monitor", "-p", str(tmp_path / "ttyNONE"), "--jsonl", str(rec)]) == 2
    assert not rec.exists()
