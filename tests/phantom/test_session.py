"""simulate_session / `dgs-edge simulate`: a complete, readable recording plus truth.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_service.clip.timeline import AngleTimeline
from edge_service.phantom import simulate_session
from edge_service.recording import open_recording


@pytest.mark.sim
def test_simulated_session_is_a_complete_recording(tmp_path: Path) -> None:
    out = simulate_session(
        tmp_path / "s",
        seed=3,
        side="right",
        nerve="swollen",
        calcification="yes",
        gliding="restricted",
        manoeuvre="fair",
        fps=2.0,
        t0=1_700_000_000.0,
        save_masks=True,
    )
    for name in ("session.json", "cine.dcm", "frames.csv", "imu.jsonl", "truth.json", "masks.npz"):
        assert (out / name).is_file(), name
    rec = open_recording(out)
    truth = json.loads((out / "truth.json").read_text())
    assert rec.n_frames == len(truth["frames"]) == 65  # 32 s FAIR at 2 fps
    assert rec.spacing_mm == pytest.approx(tuple(truth["spacing_mm"]))
    assert rec.times[0] == pytest.approx(1_700_000_000.0)
    first = next(iter(rec.frames()))
    assert first.pixels.shape == (480, 640)
    meta = json.loads((out / "session.json").read_text())
    assert meta["side"] == "right" and meta["protocol"] == "fair" and meta["complete"] is True
    imu = [json.loads(line) for line in (out / "imu.jsonl").read_text().splitlines()]
    assert len(imu) > 1000 and {"t", "seq", "flexion_deg", "rotation_deg"} <= set(imu[0])
    # The recorded IMU stream reads back through the link's own timeline loader, every line.
    tl = AngleTimeline.from_jsonl(out / "imu.jsonl")
    assert tl.skipped_lines == 0 and len(tl) == len(imu)
    assert all(isinstance(r["status"], int) for r in imu)
    assert truth["calcification"]["present"] and truth["gliding"]["restricted"]
    # Restricted gliding: the truth excursion over FAIR (35 deg IR) stays small.
    assert 0.3 < truth["gliding"]["excursion_mm"] < 2.5
    peak = max(truth["frames"], key=lambda f: f["angles_deg"][2])
    assert peak["nerve_displacement_mm"] == pytest.approx(truth["gliding"]["excursion_mm"], rel=0.3)


def test_cli_refuses_existing_recording_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "session.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "edge_service.cli.edge", "simulate", str(tmp_path), "--fps", "2"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "already holds a recording" in proc.stderr


def test_cli_rejects_bad_choice(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_service.cli.edge",
            "simulate",
            str(tmp_path),
            "--nerve",
            "huge",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
