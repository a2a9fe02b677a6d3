"""run_session under faults: a frozen probe image is reported (and cleared), frames kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_service.acquisition.frame import Frame
from edge_service.pipeline import run_session
from edge_service.recording import SessionMeta, open_recording


def test_frozen_probe_image_raises_and_clears(tmp_path: Path) -> None:
    from edge_service.detector import Detector

    rng = np.random.default_rng(0)
    still = rng.integers(0, 255, (120, 160), dtype=np.uint8)

    def frames() -> Any:
        t = 1.7e9
        for i in range(60):
            # 0-9 live, 10-44 the same image (3.5 s at 10 fps), then live again
            px = still if 10 <= i < 45 else rng.integers(0, 255, (120, 160), dtype=np.uint8)
            yield Frame(px, t + i / 10, i, (0.2, 0.2), None, {})

    calls: list[bool] = []
    result = run_session(
        frames=frames(),
        out_dir=tmp_path / "s",
        meta=SessionMeta(side="left", protocol="fair"),
        detector=Detector.load(),
        on_freeze=calls.append,
        analyze=lambda path, det: {"session_id": "x"},
    )
    assert calls == [True, False]
    assert result == {"session_id": "x"}
    assert open_recording(tmp_path / "s").n_frames == 60  # frozen frames are still recorded
    assert json.loads((tmp_path / "s" / "session.json").read_text())["complete"]


@pytest.mark.sim
def test_sessions_leave_no_subscriber_on_the_clip_link(tmp_path: Path) -> None:
    """The service keeps one link for many sessions: each session's sample queue must be
    unsubscribed when it ends (a stale one collected 100 samples/s forever)."""
    from edge_service.clip.link import ClipLink
    from edge_service.clip.timeline import AngleTimeline
    from edge_service.detector import Detector
    from edge_service.sim.motion import manoeuvre
    from edge_service.virtualclip import start_virtual_clip

    det = Detector.load()
    rng = np.random.default_rng(1)
    with start_virtual_clip(manoeuvre("fair"), seed=1, autostart=True) as clip:
        tl = AngleTimeline()
        with ClipLink(port=clip.port, timeline=tl) as link:
            assert link.wait_connected(10)
            for n in range(2):
                frames = (
                    Frame(rng.integers(0, 255, (64, 80), dtype=np.uint8), 1.7e9 + i / 10, i,
                          (0.2, 0.2), None, {})
                    for i in range(5)
                )  # fmt: skip
                run_session(
                    frames=frames,
                    out_dir=tmp_path / f"s{n}",
                    meta=SessionMeta(side="left", protocol="fair"),
                    detector=det,
                    link=link,
                    analyze=lambda path, d: {},
                )
                assert link._subs == []
