"""Real probe / capture card on V4L2 (opt in: --hil, DGS_PROBE_DEVICE=/dev/videoN).

Optional: DGS_PROBE_DEPTH_MM (the scanner's depth preset) and DGS_PROBE_CROP=x0,y0,x1,y1
(the B-mode region on the captured screen) to check the calibration path end to end.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from edge_service.acquisition.frame import Roi
from edge_service.acquisition.live import LiveSource
from edge_service.recording import RecordingWriter, SessionMeta, open_recording

pytestmark = pytest.mark.hil


def _crop() -> Roi | None:
    text = os.environ.get("DGS_PROBE_CROP")
    return Roi(*(int(v) for v in text.split(","))) if text else None


def _depth() -> float | None:
    text = os.environ.get("DGS_PROBE_DEPTH_MM")
    return float(text) if text else None


def test_probe_streams_live_frames(probe_device: str) -> None:
    with LiveSource(probe_device, crop=_crop(), depth_mm=_depth(), stall_timeout_s=3.0) as src:
        frames = []
        t_end = time.monotonic() + 10
        for f in src:
            frames.append(f)
            if len(frames) >= 60 or time.monotonic() > t_end:
                break
    assert len(frames) >= 30, "a probe should deliver at least 3 fps"
    ts = [f.t for f in frames]
    assert ts == sorted(ts) and abs(ts[-1] - time.time()) < 5
    # A live B-mode image is speckle, not a constant test pattern.
    assert max(float(np.std(f.pixels)) for f in frames) > 2.0
    if _depth() is not None:
        _dx, dy = src.info.spacing_mm or (0, 0)
        assert dy == pytest.approx(_depth() / frames[0].pixels.shape[0])  # type: ignore[operator]


def test_probe_session_recording(probe_device: str, tmp_path: Path) -> None:
    meta = SessionMeta(side="left", protocol="neutral", probe={"device": probe_device})
    with (
        LiveSource(probe_device, crop=_crop(), depth_mm=_depth()) as src,
        RecordingWriter(tmp_path / "s", meta) as w,
    ):
        for f in src:
            w.add_frame(f)
            if w.n_frames >= 90:
                break
    rec = open_recording(tmp_path / "s")
    assert rec.complete and rec.n_frames == 90
