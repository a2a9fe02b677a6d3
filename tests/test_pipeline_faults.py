"""run_session under faults: a frozen probe image is reported (and cleared), frames kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

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
