"""Disk management: lossless compressed cine checked by dciodvfy and dcmtk, retention that
only deletes delivered sessions (never the newest or an undelivered one), recovery stages."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from edge_service.recording import RecordingWriter, SessionMeta, open_recording
from edge_service.recovery import DELIVERY, stage
from edge_service.storage import StorageSettings, apply_retention, disk_status

DCMTK_DECODER = {"jpegls": "dcmdjpls", "rle": "dcmdrle"}
TS = {
    "jpegls": "1.2.840.10008.1.2.4.80",
    "rle": "1.2.840.10008.1.2.5",
    "none": "1.2.840.10008.1.2.1",
}


def _frames(n: int = 12) -> list[np.ndarray]:
    from edge_service.phantom import PhantomConfig, PhantomSimulator
    from edge_service.sim.motion import manoeuvre

    sim = PhantomSimulator(PhantomConfig(), seed=2)
    return [
        pf.frame
        for _, pf in zip(range(n), sim.run(manoeuvre("fair"), fps=8, t0=1.7e9), strict=False)
    ]  # type: ignore[misc]


@pytest.fixture(scope="module")
def frames() -> list:  # type: ignore[type-arg]
    return _frames()


@pytest.mark.parametrize("compression", ["jpegls", "rle", "none"])
def test_cine_is_lossless_and_standard(tmp_path: Path, frames: list, compression: str) -> None:  # type: ignore[type-arg]
    out = tmp_path / "s"
    w = RecordingWriter(out, SessionMeta(side="left", protocol="fair"), compression=compression)  # type: ignore[arg-type]
    for f in frames:
        w.add_frame(f)
    w.close()
    cine = out / "cine.dcm"
    assert (
        pydicom.dcmread(cine, stop_before_pixels=True).file_meta.TransferSyntaxUID
        == TS[compression]
    )
    # Bit-exact replay through our reader (pydicom + pyjpegls / RLE decoders).
    back = [f.pixels for f in open_recording(out).frames()]
    assert len(back) == len(frames)
    assert all(np.array_equal(a, b.pixels) for a, b in zip(back, frames, strict=True))
    assert not (out / "cine.frags").exists() and not (out / "frames.raw").exists()
    # Owner-only: a recording is health data.
    assert cine.stat().st_mode & 0o777 == 0o600 and out.stat().st_mode & 0o777 == 0o700
    if shutil.which("dciodvfy"):
        v = subprocess.run(["dciodvfy", str(cine)], capture_output=True, text=True)
        errors = [ln for ln in (v.stdout + v.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, errors
    if compression != "none" and shutil.which(DCMTK_DECODER[compression]):
        dec = tmp_path / "dec.dcm"
        r = subprocess.run(
            [DCMTK_DECODER[compression], str(cine), str(dec)], capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        ds = pydicom.dcmread(dec)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # dcmtk decoded it
        assert np.array_equal(ds.pixel_array, np.stack([f.pixels for f in frames]))
    if compression == "jpegls":
        raw = len(frames) * frames[0].pixels.size
        assert cine.stat().st_size < raw / 2  # phantom B-mode: ~3x, see benchmarks/results/soak.md


def _session(root: Path, name: str, *, delivered: bool, age_days: float = 0.0) -> Path:
    p = root / name
    p.mkdir(parents=True)
    meta = SessionMeta(side="left", protocol="fair", session_id=name)
    (p / "session.json").write_text(__import__("json").dumps(meta.to_dict()))
    (p / "cine.dcm").write_bytes(b"x" * 1000)
    (p / "result.json").write_text("{}")
    if delivered:
        (p / DELIVERY).write_text("{}")
    t = time.time() - age_days * 86400
    os.utime(p, (t, t))
    return p


def test_retention_by_age_keeps_newest_and_undelivered(tmp_path: Path) -> None:
    old_done = _session(tmp_path, "a", delivered=True, age_days=100)
    old_pending = _session(tmp_path, "b", delivered=False, age_days=100)
    queued = _session(tmp_path, "c", delivered=True, age_days=100)  # still in the outbox
    newest = _session(tmp_path, "d", delivered=True, age_days=100)
    pending = {"c"}
    s = StorageSettings(min_free_mb=0, max_age_days=30, target_free_mb=0)
    deleted = apply_retention(
        [old_done, old_pending, queued, newest],
        delivered=lambda p: stage(p, pending) == "delivered",
        settings=s,
        disk_path=tmp_path,
    )
    assert deleted == [old_done]
    assert old_pending.exists() and queued.exists() and newest.exists()


def test_retention_by_space_deletes_oldest_delivered_first(tmp_path: Path) -> None:
    dirs = [_session(tmp_path, n, delivered=True) for n in ("a", "b", "c")]
    free = disk_status(tmp_path, StorageSettings()).free_mb
    # A target above what is free: everything delivered but the newest goes, oldest first.
    s = StorageSettings(min_free_mb=0, target_free_mb=free + 10**6)
    deleted = apply_retention(dirs, delivered=lambda p: True, settings=s, disk_path=tmp_path)
    assert deleted == dirs[:2] and dirs[2].exists()
    # Enough space: nothing is deleted.
    more = [_session(tmp_path, n, delivered=True) for n in ("e", "f")]
    s = StorageSettings(min_free_mb=0, target_free_mb=0)
    assert apply_retention(more, delivered=lambda p: True, settings=s, disk_path=tmp_path) == []


def test_stages(tmp_path: Path) -> None:
    p = _session(tmp_path, "s1", delivered=False)
    assert stage(p) == "analysed"
    (p / DELIVERY).write_text("{}")
    assert stage(p, {"s1"}) == "queued" and stage(p, set()) == "delivered"
    (p / "parked.json").write_text("{}")
    assert stage(p, set()) == "parked"


@pytest.mark.parametrize("shape", [(5, 5), (480, 640)])
def test_incompressible_frames_fall_back_to_rle(
    tmp_path: Path, shape: tuple[int, int], caplog
) -> None:  # type: ignore[no-untyped-def]
    from edge_service.acquisition.frame import Frame

    rng = np.random.default_rng(1)
    fr = [Frame(rng.integers(0, 256, shape, dtype=np.uint8), 1.0 + i, i, None) for i in range(3)]
    out = tmp_path / "s"
    with RecordingWriter(out, SessionMeta(side="left", protocol="fair")) as w:
        for f in fr:
            w.add_frame(f)
    ts = pydicom.dcmread(out / "cine.dcm", stop_before_pixels=True).file_meta.TransferSyntaxUID
    # Tiny frames: RLE; full-size noise: JPEG-LS copes (output ~7 % over raw).
    assert ts == (TS["rle"] if shape == (5, 5) else TS["jpegls"])
    back = [f.pixels for f in open_recording(out).frames()]
    assert all(np.array_equal(a, b.pixels) for a, b in zip(back, fr, strict=True))
    assert "Traceback" not in caplog.text
