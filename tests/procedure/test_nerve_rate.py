"""The live procedure mode's reduced nerve-detector rate (`[procedure] nerve_refresh_s`,
`nerve_refresh_change`): the shipped detector and the shipped needle locator see a
simulated still probe at 30 fps; the detector runs only every `nerve_refresh_s`, at once when
the image changes (probe moved), and on every frame when the rate is 0 or offline. The
needle locator and the procedure logic run on every frame either way."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from edge_service.acquisition.frame import Frame
from edge_service.config import AppConfig
from edge_service.needle.guide import make_locator
from edge_service.procedure.analyzer import ProcedureAnalyzer
from edge_service.procedure.settings import ProcedureSettings

FPS = 30.0


class Counting:
    """The real detector, with the frame indices it was asked to detect recorded."""

    def __init__(self, detector: Any) -> None:
        self.d = detector
        self.seen: list[int] = []

    def reset(self) -> None:
        self.d.reset()

        self.threads: list[str] = []

    def detect(self, frame: Frame) -> Any:
        self.seen.append(frame.index)
        self.threads.append(threading.current_thread().name)
        return self.d.detect(frame)


def _scene(seed: int = 0) -> np.ndarray:
    """A B-mode-like image: speckle over smooth layers (bigger than one probe step)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, 240)[:, None]
    layers = 70 + 60 * np.sin(rows * 18) ** 2
    img = layers * rng.rayleigh(1.0, (240, 400))
    return np.clip(img, 0, 255).astype(np.uint8)


def _frames(n: int, move_at: int | None = None) -> list[Frame]:
    base = _scene()
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        shift = 12 if move_at is not None and i >= move_at else 0
        img = np.roll(base, shift, axis=1)[:, 40:360]
        # a still probe's frames differ by a little noise
        noisy = np.clip(img.astype(np.int16) + rng.integers(-3, 4, img.shape), 0, 255)
        out.append(Frame(noisy.astype(np.uint8), 1000.0 + i / FPS, i, (0.2, 0.2)))
    return out


def _run(detector: Any, frames: list[Frame], s: ProcedureSettings, **kw: Any) -> tuple[Counting, ProcedureAnalyzer]:  # fmt: skip
    spy = Counting(detector)
    session = {"session_id": "rate", "side": "left", "started_t": 1000.0}
    an = ProcedureAnalyzer(spy, make_locator("learned"), s, session=session, **kw)
    for f in frames:
        an.add_frame(f)
    return spy, an


def test_still_probe_detects_the_nerve_at_the_configured_rate(detector: Any) -> None:
    frames = _frames(60)  # 2 s at 30 fps
    spy, an = _run(detector, frames, ProcedureSettings(nerve_refresh_s=0.2))
    # every 0.2 s of frame time: frames 0, 6, 12, ... (10 in 2 s)
    assert spy.seen == list(range(0, 60, 6)), spy.seen
    assert an.tracker.q["frames"] == 60  # the procedure logic saw every frame
    dq = an.finish()["data_quality"]
    assert dq["frames_nerve_detected"] == 10 and dq["frames_nerve_reused"] == 50
    spy, _ = _run(detector, frames, ProcedureSettings(nerve_refresh_s=0.5))
    assert spy.seen == [0, 15, 30, 45]


def test_rate_zero_and_the_offline_pass_detect_every_frame(detector: Any) -> None:
    frames = _frames(20)
    spy, _ = _run(detector, frames, ProcedureSettings(nerve_refresh_s=0))
    assert spy.seen == list(range(20))
    spy, _ = _run(detector, frames, ProcedureSettings(), every_frame=True)
    assert spy.seen == list(range(20))


def test_a_moved_probe_is_re_detected_at_once(detector: Any) -> None:
    frames = _frames(30, move_at=8)  # the image shifts 12 px at frame 8
    spy, _ = _run(detector, frames, ProcedureSettings(nerve_refresh_s=0.5))
    assert spy.seen == [0, 8, 23], spy.seen
    # a higher threshold than the change ignores it
    spy, _ = _run(detector, frames, ProcedureSettings(nerve_refresh_s=0.5, nerve_refresh_change=200))  # fmt: skip
    assert spy.seen == [0, 15], spy.seen


def test_background_detector_keeps_the_frame_path_free(detector: Any) -> None:
    """nerve_background: the first frame is detected in line, later refreshes on the
    detector thread while every frame goes on with the last finished detection."""
    frames = _frames(45)
    s = ProcedureSettings(nerve_refresh_s=0.2, nerve_background=True)
    spy = Counting(detector)
    session = {"session_id": "bg", "side": "left", "started_t": 1000.0}
    an = ProcedureAnalyzer(spy, make_locator("learned"), s, session=session)
    dets = []
    for f in frames:
        _, det, _ = an.add_frame(f)
        dets.append(det)
        time.sleep(0.01)  # a probe's frame interval, shortened: lets the thread run
    th = an._bg._th if an._bg is not None else None
    doc = an.finish()
    assert th is not None and not th.is_alive()  # finish() stopped the detector thread
    assert spy.seen[0] == 0 and spy.threads[0] == threading.current_thread().name
    assert len(spy.seen) >= 2 and set(spy.threads[1:]) == {"nerve-detect"}
    # frames later than the first use a detection of an earlier (or the same) frame
    assert all(d.index <= f.index for d, f in zip(dets, frames, strict=True))
    assert len({id(d) for d in dets}) >= 2  # refreshed detections were taken up
    assert an.tracker.q["frames"] == 45
    assert doc["data_quality"]["frames_nerve_detected"] == len(spy.seen)


def test_the_rate_settings_validate_in_the_config() -> None:
    cfg = AppConfig.model_validate(
        {"procedure": {"nerve_refresh_s": 0.1, "nerve_refresh_change": 5}}
    )
    assert cfg.procedure.nerve_refresh_s == 0.1 and cfg.procedure.nerve_refresh_change == 5
    for bad in ({"nerve_refresh_s": -0.1}, {"nerve_refresh_s": 3}, {"nerve_refresh_change": 0},
                {"nerve_refresh_s": float("nan")}, {"nerve_refresh": 0.1},
                {"nerve_background": "sometimes"}):  # fmt: skip
        with pytest.raises(ValidationError):
            AppConfig.model_validate({"procedure": bad})
