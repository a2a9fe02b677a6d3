"""Foundation: package metadata, CLIs and shared contracts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge_service.acquisition.frame import Frame
from edge_service.sim.motion import FAIR_PEAK, manoeuvre


def test_cli_bad_flag_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge_service.cli.edge", "--no-such-flag"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_clip_cli_help_lists_commands() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge_service.cli.clip", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for cmd in ("flash", "monitor", "replay", "virtual"):
        assert cmd in proc.stdout


def test_frame_rejects_non_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Frame(np.zeros((4, 4), np.float32), t=0.0, index=0, spacing_mm=(0.1, 0.1))


def test_fair_motion_reaches_peak_and_returns() -> None:
    m = manoeuvre("fair", repetitions=1)
    t, ang = m.sample(100.0)
    assert np.allclose(ang.max(axis=0), FAIR_PEAK, atol=1e-6)
    assert np.allclose(ang[0], 0) and np.allclose(ang[-1], 0)
    # Smooth: no jump bigger than what 100 Hz sampling of a 4 s cosine ramp allows.
    assert np.abs(np.diff(ang, axis=0)).max() < 1.0
    assert set(m.labels(t)) == {"neutral", "fair"}
