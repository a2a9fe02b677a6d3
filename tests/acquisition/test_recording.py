"""Session recordings: round trip, DICOM validity, crash safety with a real kill -9."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from edge_service.acquisition.frame import Frame, Roi
from edge_service.errors import InputError
from edge_service.recording import RecordingWriter, SessionMeta, open_recording
from tests.acquisition import _writer_child
from tests.acquisition.conftest import dciodvfy


def _meta(**kw: object) -> SessionMeta:
    base: dict[str, object] = {
        "side": "left",
        "protocol": "fair",
        "probe": {"model": "C3-5", "depth_mm": 80},
        "clip": {"id": "clip-1"},
        "spacing_mm": (0.2, 0.25),
    }
    base.update(kw)
    return SessionMeta(**base)  # type: ignore[arg-type]


def test_round_trip_bit_exact(tmp_path: Path, frames: list[Frame], roi: Roi) -> None:
    meta = _meta(roi=roi)
    with RecordingWriter(tmp_path / "s", meta) as w:
        for f in frames:
            w.add_frame(f)
        w.add_imu({"t": 1.0, "seq": 0, "flexion_deg": np.float32(12.5), "adduction_deg": 1.0})
        w.add_imu({"t": 1.01, "seq": 1, "flexion_deg": 13.0, "adduction_deg": 1.5})
    rec = open_recording(tmp_path / "s")
    assert rec.complete and not rec.recovered
    assert rec.n_frames == len(frames)
    assert rec.spacing_mm == pytest.approx((0.2, 0.25))
    assert rec.roi == roi
    got = list(rec.frames())
    assert [g.index for g in got] == list(range(len(frames)))
    for a, b in zip(frames, got, strict=True):
        assert np.array_equal(a.pixels, b.pixels)
        assert b.t == a.t  # exact: frames.csv stores repr(float)
        assert b.spacing_mm == pytest.approx((0.2, 0.25))
    imu = rec.imu_samples()
    assert [s["seq"] for s in imu] == [0, 1] and imu[0]["flexion_deg"] == 12.5
    assert not (tmp_path / "s" / "frames.raw").exists()
    js = json.loads((tmp_path / "s" / "session.json").read_text())
    assert js["side"] == "left" and js["protocol"] == "fair" and js["complete"] is True
    assert js["n_frames"] == len(frames) and js["probe"]["model"] == "C3-5"


def test_cine_is_valid_us_multiframe(tmp_path: Path, frames: list[Frame], roi: Roi) -> None:
    meta = _meta(roi=roi)
    with RecordingWriter(tmp_path / "s", meta) as w:
        for f in frames:
            w.add_frame(f)
    cine = tmp_path / "s" / "cine.dcm"
    report = dciodvfy(cine)
    assert "USMultiFrameImage" in report
    assert "Error" not in report, report
    ds = pydicom.dcmread(cine)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"
    assert int(ds.NumberOfFrames) == len(frames)
    assert ds.PatientID == meta.patient_id and ds.PatientID.startswith("DGS-")
    assert ds.PatientBirthDate == "" and ds.Laterality == "L"
    reg = ds.SequenceOfUltrasoundRegions[0]
    assert reg.PhysicalUnitsXDirection == 3 and float(reg.PhysicalDeltaX) == pytest.approx(0.02)
    assert (reg.RegionLocationMinX0, reg.RegionLocationMaxX1) == (roi.x0, roi.x1 - 1)
    ftv = [float(v) for v in ds.FrameTimeVector]
    want = [0.0] + [(b.t - a.t) * 1000 for a, b in itertools.pairwise(frames)]
    assert ftv == pytest.approx(want, abs=1e-3)
    assert np.array_equal(ds.pixel_array, np.stack([f.pixels for f in frames]))


def test_dcmdump_reads_cine(tmp_path: Path, frames: list[Frame]) -> None:
    with RecordingWriter(tmp_path / "s", _meta()) as w:
        for f in frames:
            w.add_frame(f)
    res = subprocess.run(
        ["dcmdump", "-q", "+P", "NumberOfFrames", str(tmp_path / "s" / "cine.dcm")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert f"[{len(frames)}]" in res.stdout


def test_writer_takes_spacing_from_frames_when_meta_has_none(tmp_path: Path) -> None:
    f = Frame(np.zeros((10, 20), np.uint8), 5.0, 0, (0.1, 0.2), Roi(1, 1, 19, 9))
    with RecordingWriter(tmp_path / "s", _meta(spacing_mm=None)) as w:
        w.add_frame(f)
    rec = open_recording(tmp_path / "s")
    assert rec.spacing_mm == pytest.approx((0.1, 0.2)) and rec.roi == Roi(1, 1, 19, 9)


def test_uncalibrated_recording_has_no_spacing(tmp_path: Path, frames: list[Frame]) -> None:
    with RecordingWriter(tmp_path / "s", _meta(spacing_mm=None)) as w:
        w.add_frame(frames[0])
    rec = open_recording(tmp_path / "s")
    assert rec.spacing_mm is None
    assert "SequenceOfUltrasoundRegions" not in pydicom.dcmread(tmp_path / "s" / "cine.dcm")


def test_writer_refuses_bad_input(tmp_path: Path, frames: list[Frame]) -> None:
    with pytest.raises(InputError, match="side"):
        _meta(side="middle")
    w = RecordingWriter(tmp_path / "s", _meta())
    w.add_frame(frames[0])
    with pytest.raises(InputError, match="size"):
        w.add_frame(Frame(np.zeros((5, 5), np.uint8), 1.0, 1, None))
    with pytest.raises(InputError, match="'t'"):
        w.add_imu({"seq": 1})
    w.close()
    with pytest.raises(InputError, match="closed"):
        w.add_frame(frames[1])
    with pytest.raises(InputError, match="already holds"):
        RecordingWriter(tmp_path / "s", _meta())
    # The refused frame did not corrupt what was recorded.
    assert open_recording(tmp_path / "s").n_frames == 1


def test_open_recording_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        open_recording(tmp_path / "nope")
    with pytest.raises(InputError, match=r"no session\.json"):
        open_recording(tmp_path)
    (tmp_path / "session.json").write_text("{not json")
    with pytest.raises(InputError, match=r"corrupt session\.json"):
        open_recording(tmp_path)


def test_kill_9_leaves_readable_recording(tmp_path: Path) -> None:
    out = tmp_path / "s"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.acquisition._writer_child", str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    last = -1
    deadline = time.monotonic() + 60
    while last < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        last = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert last >= 40, "writer child did not get going"

    rec = open_recording(out)
    assert rec.recovered and not rec.complete
    assert not (out / "cine.dcm").exists()
    n = rec.n_frames
    assert n >= last + 1  # every frame reported complete survived
    for f in rec.frames():
        assert np.array_equal(f.pixels, _writer_child.pixels(f.index))
        assert f.t == 1_700_000_000.0 + f.index / 60
        assert f.spacing_mm == pytest.approx((0.3, 0.3))
    assert len(rec.imu_samples()) >= last + 1

    rec.repair()
    again = open_recording(out)
    assert again.complete and again.n_frames == n
    assert "Error" not in dciodvfy(out / "cine.dcm")
    assert all(np.array_equal(f.pixels, _writer_child.pixels(f.index)) for f in again.frames())


def test_torn_journal_tail_is_dropped(tmp_path: Path, frames: list[Frame]) -> None:
    out = tmp_path / "s"
    w = RecordingWriter(out, _meta(), keep_journal=True)
    for f in frames[:5]:
        w.add_frame(f)
    # Simulate a crash: no close(); chop the last record in half, corrupt nothing else.
    j = out / "frames.raw"
    size = j.stat().st_size
    os.truncate(j, size - 100)
    with open(out / "imu.jsonl", "ab") as fh:
        fh.write(b'{"t": 1.0, "se')
    rec = open_recording(out)
    assert rec.recovered and rec.n_frames == 4
    assert rec.imu_samples() == []
    got = list(rec.frames())
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(frames, got, strict=False))


def test_vendor_cine_in_session_dir(tmp_path: Path) -> None:
    """A session whose cine.dcm came from a scanner (no frames.csv) opens with its own times."""
    from pydicom.data import get_testdata_file

    src = Path(str(get_testdata_file("examples_ybr_color.dcm")))
    d = tmp_path / "s"
    d.mkdir()
    (d / "cine.dcm").write_bytes(src.read_bytes())
    (d / "session.json").write_text(json.dumps(_meta(spacing_mm=None).to_dict()))
    rec = open_recording(d)
    assert rec.n_frames == 30
    assert rec.spacing_mm is not None and rec.spacing_mm[0] == pytest.approx(0.5104970559)
    ts = [f.t for f in rec.frames()]
    assert len(ts) == 30 and np.allclose(np.diff(ts), 1 / 30.0003, rtol=1e-3)


def test_session_json_versioning(tmp_path: Path) -> None:
    d = _meta().to_dict()
    d["future_field"] = {"x": 1}  # a newer minor writer: kept, not dropped
    (tmp_path / "session.json").write_text(json.dumps(d))
    rec = open_recording(tmp_path)
    assert rec.meta.extra["future_field"] == {"x": 1} and rec.n_frames == 0
    d["format"] = "dgs.session/2"
    (tmp_path / "session.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match="unsupported recording version"):
        open_recording(tmp_path)
    d["format"] = "dgs.session/1"
    del d["side"]
    (tmp_path / "session.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match="missing"):
        open_recording(tmp_path)


def test_complete_recording_without_cine_is_an_error(tmp_path: Path, frames: list[Frame]) -> None:
    with RecordingWriter(tmp_path / "s", _meta()) as w:
        w.add_frame(frames[0])
    (tmp_path / "s" / "cine.dcm").unlink()
    with pytest.raises(InputError, match=r"cine\.dcm is missing"):
        open_recording(tmp_path / "s")


def test_frames_and_imu_from_two_threads(tmp_path: Path) -> None:
    import threading

    w = RecordingWriter(tmp_path / "s", _meta(), fsync_every_s=0.0)
    px = np.zeros((32, 32), np.uint8)

    def imu() -> None:
        for i in range(300):
            w.add_imu({"t": float(i), "seq": i, "flexion_deg": 0.0})

    th = threading.Thread(target=imu)
    th.start()
    for i in range(100):
        w.add_frame(Frame(px, float(i), i, None))
    th.join()
    w.close()
    rec = open_recording(tmp_path / "s")
    assert rec.n_frames == 100 and [s["seq"] for s in rec.imu_samples()] == list(range(300))


def test_odd_pixel_count_is_padded_and_valid(tmp_path: Path) -> None:
    fr = [
        Frame(np.random.default_rng(i).integers(0, 256, (5, 5), dtype=np.uint8), 1.0 + i, i, None)
        for i in range(3)
    ]
    with RecordingWriter(tmp_path / "s", _meta()) as w:
        for f in fr:
            w.add_frame(f)
    assert "Error" not in dciodvfy(tmp_path / "s" / "cine.dcm")
    got = list(open_recording(tmp_path / "s").frames())
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(fr, got, strict=True))


@pytest.mark.parametrize("name", ["examples_ybr_color.dcm", "OBXXXX1A_rle_2frame.dcm"])
def test_import_vendor_cine(tmp_path: Path, name: str) -> None:
    from pydicom.data import get_testdata_file

    from edge_service.acquisition.dicom import DicomSource
    from edge_service.recording import import_cine

    src_path = Path(str(get_testdata_file(name)))
    out = import_cine(src_path, tmp_path / "s", _meta(spacing_mm=None))
    assert (out / "cine.dcm").read_bytes() == src_path.read_bytes()  # evidence kept as is
    rec = open_recording(out)
    ref = DicomSource(src_path)
    assert rec.complete and rec.n_frames == ref.info.n_frames
    assert rec.spacing_mm == ref.info.spacing_mm and rec.roi == ref.info.roi
    assert rec.meta.source["vendor"] == ref.info.vendor
    got, want = list(rec.frames()), list(ref.frames())
    assert [g.t for g in got] == [w.t for w in want]
    assert all(np.array_equal(g.pixels, w.pixels) for g, w in zip(got, want, strict=True))


def test_import_refuses_unreadable_file(tmp_path: Path) -> None:
    from edge_service.recording import import_cine

    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 200)
    with pytest.raises(InputError):
        import_cine(bad, tmp_path / "s", _meta())
    assert not (tmp_path / "s").exists()


def test_crash_between_cine_and_session_json(tmp_path: Path, frames: list[Frame]) -> None:
    """Killed after cine.dcm was renamed into place but before session.json was marked."""
    out = tmp_path / "s"
    with RecordingWriter(out, _meta(), keep_journal=True) as w:
        for f in frames:
            w.add_frame(f)
    js = json.loads((out / "session.json").read_text())
    js["complete"] = False
    (out / "session.json").write_text(json.dumps(js))
    rec = open_recording(out)
    assert rec.complete and not rec.recovered and rec.n_frames == len(frames)


def test_numpy_timestamps_stored_as_plain_floats(tmp_path: Path) -> None:
    t = np.float64(1_700_000_000.123456)
    with RecordingWriter(tmp_path / "s", _meta()) as w:
        w.add_frame(Frame(np.zeros((4, 4), np.uint8), t, 0, None))  # type: ignore[arg-type]
    assert (tmp_path / "s" / "frames.csv").read_text().splitlines()[1] == f"0,{float(t)!r}"
    assert next(open_recording(tmp_path / "s").frames()).t == float(t)


def test_numpy_values_in_meta_are_serialised(tmp_path: Path) -> None:
    meta = _meta(
        probe={"depth_mm": np.float32(80.0), "gain": np.int64(3)}, roi=Roi(*np.array([1, 2, 3, 4]))
    )
    with RecordingWriter(tmp_path / "s", meta) as w:
        w.add_frame(Frame(np.zeros((4, 4), np.uint8), 1.0, 0, None))
    rec = open_recording(tmp_path / "s")
    assert rec.meta.probe == {"depth_mm": 80.0, "gain": 3} and rec.roi == Roi(1, 2, 3, 4)
