"""`dgs-edge inspect` on a DICOM file, a video, a folder and a session recording."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from edge_service.acquisition.frame import Frame, Roi
from edge_service.cli.edge import main
from edge_service.recording import RecordingWriter, SessionMeta


def _inspect(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["inspect", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_inspect_multiframe_dicom_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _inspect(capsys, str(get_testdata_file("color3d_jpeg_baseline.dcm")), "--json")
    assert rc == 0
    info = json.loads(out)
    assert info["n_frames"] == 120 and (info["width"], info["height"]) == (640, 480)
    assert info["spacing_mm"] == pytest.approx([0.5104970559, 0.5104970559])
    assert info["roi"] == [84, 31, 596, 415] and info["spacing_origin"] == "us-regions"
    assert "1.2.840.10008.1.2.4.50" in info["transfer_syntax"]
    assert info["vendor"] and info["fps_hz"] == pytest.approx(30.0, rel=1e-3)
    assert info["mm_measurements"] is True


def test_inspect_text_without_spacing(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _inspect(capsys, str(get_testdata_file("US1_J2KR.dcm")))
    assert rc == 0
    assert "mm measurements refused" in out and "JPEG 2000" in out and "G.E. Medical" in out
    rc, out, _ = _inspect(capsys, str(get_testdata_file("US1_J2KR.dcm")), "--spacing", "0.2,0.3")
    assert "0.2 x 0.3 mm/px (user)" in out


def test_inspect_session_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = SessionMeta(
        side="right", protocol="piriformis", spacing_mm=(0.2, 0.2), roi=Roi(1, 2, 30, 20)
    )
    with RecordingWriter(tmp_path / "s", meta) as w:
        for i in range(3):
            w.add_frame(Frame(np.full((24, 32), i, np.uint8), 10.0 + i / 20, i, None))
        w.add_imu({"t": 10.0, "seq": 0, "flexion_deg": 0.0})
    rc, out, _ = _inspect(capsys, str(tmp_path / "s"), "--json")
    info = json.loads(out)
    assert rc == 0 and info["kind"] == "recording" and info["n_frames"] == 3
    assert info["extra"]["side"] == "right" and info["extra"]["imu_samples"] == 1
    assert info["roi"] == [1, 2, 30, 20] and info["fps_hz"] == pytest.approx(20.0)


def test_inspect_video_and_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vw = cv2.VideoWriter(
        str(tmp_path / "v.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 25, (32, 24), False
    )
    for i in range(4):
        vw.write(np.full((24, 32), i * 30, np.uint8))
    vw.release()
    rc, out, _ = _inspect(capsys, str(tmp_path / "v.avi"), "--json", "--count")
    info = json.loads(out)
    assert rc == 0 and info["kind"] == "video" and info["n_frames"] == 4
    assert info["fps_hz"] == pytest.approx(25.0) and info["transfer_syntax"] == "MJPG"
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "0.png"), np.zeros((5, 6), np.uint8))
    rc, out, _ = _inspect(capsys, str(d), "--json")
    assert json.loads(out)["kind"] == "folder"


def test_inspect_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "junk.dcm"
    bad.write_bytes(b"junk" * 100)
    rc, out, err = _inspect(capsys, str(bad))
    assert rc == 2 and out == "" and err.count("\n") == 1 and "not a DICOM file" in err
    rc, _, err = _inspect(capsys, str(tmp_path / "nothing"))
    assert rc == 2 and "no such file" in err
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(bad), "--spacing", "abc"])
    assert exc.value.code == 2


def test_inspect_unfinished_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = RecordingWriter(
        tmp_path / "s", SessionMeta(side="left", protocol="fair", spacing_mm=(0.3, 0.3))
    )
    for i in range(4):
        w.add_frame(Frame(np.full((8, 10), i, np.uint8), 1.0 + i, i, None))
    rc, out, _ = _inspect(capsys, str(tmp_path / "s"), "--json")  # as if the writer had died
    info = json.loads(out)
    assert rc == 0 and info["n_frames"] == 4 and info["extra"]["recovered"] is True
    assert info["extra"]["complete"] is False and "unfinished" in info["transfer_syntax"]
    assert (info["width"], info["height"]) == (10, 8) and info["spacing_mm"] == [0.3, 0.3]
    w.close()


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("dgs-edge")
    return subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=120)


def test_spacing_contradicting_the_file_is_the_same_error_as_detect() -> None:
    """Through the installed CLI: `inspect --spacing` that contradicts the file's own
    calibration fails like `detect` (exit 2, the same one line); --spacing-override lets the
    user's value win in both; a value agreeing within 1 % is not a conflict."""
    path = str(get_testdata_file("OBXXXX1A.dcm"))  # its own 0.262 mm/px tissue region
    ins = _cli("inspect", path, "--spacing", "0.5,0.5")
    det = _cli("detect", path, "--spacing", "0.5,0.5")
    assert ins.returncode == det.returncode == 2
    assert ins.stdout == det.stdout == ""
    ins_err, det_err = ins.stderr.strip().splitlines(), det.stderr.strip().splitlines()
    assert len(ins_err) == len(det_err) == 1 and ins_err == det_err
    assert "--spacing 0.5,0.5 contradicts the file's own calibration 0.2623,0.2623" in ins_err[0]
    assert "--spacing-override" in ins_err[0] and "Traceback" not in ins.stderr
    # The override: the user's spacing is used (origin "user"), a warning says so.
    ok = _cli("inspect", path, "--json", "--spacing", "0.5,0.5", "--spacing-override")
    assert ok.returncode == 0, ok.stderr
    info = json.loads(ok.stdout)
    assert info["spacing_mm"] == [0.5, 0.5] and info["spacing_origin"] == "user"
    det_ok = _cli("detect", path, "--json", "--spacing", "0.5,0.5", "--spacing-override")
    assert det_ok.returncode == 0, det_ok.stderr
    rec = json.loads(det_ok.stdout.splitlines()[0])
    assert rec["spacing_mm"] == [0.5, 0.5] and rec["spacing_origin"] == "user"
    # Agreeing within 1 %: the file's calibration, no error.
    same = _cli("inspect", path, "--json", "--spacing", "0.2630,0.2630")
    assert same.returncode == 0 and json.loads(same.stdout)["spacing_origin"] == "us-regions"
    # The override alone is a usage error (one line), not silently ignored.
    alone = _cli("inspect", path, "--spacing-override")
    assert alone.returncode == 2 and len(alone.stderr.strip().splitlines()) == 1
