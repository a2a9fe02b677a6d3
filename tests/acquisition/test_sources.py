"""Video, image-folder and live UVC sources; settings and the source factory."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError
from pydicom.data import get_testdata_file

from edge_service.acquisition.dicom import DicomSource
from edge_service.acquisition.factory import RecordingSource, open_path, open_source
from edge_service.acquisition.files import ImageFolderSource, VideoFileSource
from edge_service.acquisition.frame import Frame, Roi
from edge_service.acquisition.live import LiveSource, depth_spacing, open_cv2_capture
from edge_service.acquisition.settings import SourceSettings
from edge_service.errors import DeviceError, InputError
from edge_service.recording import RecordingWriter, SessionMeta


def _noise(n: int, shape: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def _write_video(
    path: Path, frames: list[np.ndarray], fourcc: str = "FFV1", fps: float = 30.0
) -> Path:
    h, w = frames[0].shape
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (w, h), False)
    assert vw.isOpened(), f"OpenCV cannot write {fourcc}"
    for f in frames:
        vw.write(f)
    vw.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    frames = _noise(20)
    return _write_video(tmp_path / "clip.mkv", frames), frames


# --- video files -----------------------------------------------------------------------


def test_video_lossless_round_trip(video: tuple[Path, list[np.ndarray]]) -> None:
    path, want = video
    src = VideoFileSource(path, t0=50.0)
    got = list(src)
    assert len(got) == len(want) and src.info.width == 128 and src.info.height == 96
    assert all(np.array_equal(a, b.pixels) for a, b in zip(want, got, strict=True))
    assert src.info.spacing_mm is None and got[0].spacing_mm is None  # no calibration in a video
    assert got[0].t == 50.0 and np.allclose(np.diff([f.t for f in got]), 1 / 30, atol=2e-3)
    assert src.info.fps_hz == pytest.approx(30.0)


def test_video_user_spacing_and_crop(video: tuple[Path, list[np.ndarray]]) -> None:
    path, want = video
    src = VideoFileSource(path, spacing_mm=(0.2, 0.2), crop=Roi(10, 5, 110, 85))
    f = next(iter(src))
    assert f.pixels.shape == (80, 100) and f.spacing_mm == (0.2, 0.2)
    assert np.array_equal(f.pixels, want[0][5:85, 10:110])
    with pytest.raises(InputError, match="crop"):
        VideoFileSource(path, crop=Roi(0, 0, 500, 50))


def test_video_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="can read"):
        VideoFileSource(bad)
    with pytest.raises(InputError, match="no such file"):
        VideoFileSource(tmp_path / "none.mp4")


# --- image folders ---------------------------------------------------------------------


def test_folder_png_round_trip(tmp_path: Path) -> None:
    want = _noise(5)
    for i, f in enumerate(want):
        cv2.imwrite(str(tmp_path / f"img_{i:03d}.png"), f)
    (tmp_path / "notes.txt").write_text("ignored")
    src = ImageFolderSource(tmp_path, spacing_mm=(0.25, 0.3), fps_hz=10)
    got = list(src)
    assert [g.meta["file"] for g in got] == [f"img_{i:03d}.png" for i in range(5)]
    assert all(np.array_equal(a, b.pixels) for a, b in zip(want, got, strict=True))
    assert [g.t for g in got] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert got[0].spacing_mm == (0.25, 0.3)


def test_folder_colour_and_16bit(tmp_path: Path) -> None:
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 2] = 200  # red in BGR order
    cv2.imwrite(str(tmp_path / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "b.png"), np.full((10, 12), 0x8000, np.uint16))
    a, b = (f.pixels for f in ImageFolderSource(tmp_path))
    assert a[0, 0] == round(0.299 * 200) and b[0, 0] == 0x80


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no image files"):
        ImageFolderSource(tmp_path)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 10), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((12, 10), np.uint8))
    with pytest.raises(InputError, match="differs"):
        list(ImageFolderSource(tmp_path))
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="not a readable image"):
        list(ImageFolderSource(tmp_path))


# --- live UVC / V4L2 -------------------------------------------------------------------
# The capture is OpenCV's real VideoCapture reading a real video stream. Only the device
# faults (unplug, stall, missing device) are injected, because they cannot be caused
# on a machine without a camera.


class _Unplugged:
    def isOpened(self) -> bool:
        return False

    def read(self) -> tuple[bool, Any]:
        return False, None

    def release(self) -> None:
        pass


class _FailsAfter:
    """A real capture that gets unplugged (read() -> False) or freezes after n frames."""

    def __init__(self, real: Any, n: int, mode: str = "unplug") -> None:
        self.real, self.n, self.mode = real, n, mode
        self.unblock = threading.Event()

    def isOpened(self) -> bool:
        return bool(self.real.isOpened())

    def read(self) -> tuple[bool, Any]:
        if self.n <= 0:
            if self.mode == "stall":
                self.unblock.wait(10)  # a frozen driver: read() just blocks
            return False, None
        self.n -= 1
        return self.real.read()

    def release(self) -> None:
        self.unblock.set()
        self.real.release()


def _opener(video: Path, plan: list[Any]) -> Any:
    """Successive opens follow `plan`: an int n = real capture failing after n frames,
    'down' = device absent, 'ok' = real capture without faults."""
    calls: list[int] = []

    def open_capture(_dev: int | str) -> Any:
        step = plan[min(len(calls), len(plan) - 1)]
        calls.append(1)
        if step == "down":
            return _Unplugged()
        real = open_cv2_capture(str(video))
        if step == "ok":
            return real
        n, mode = step if isinstance(step, tuple) else (step, "unplug")
        return _FailsAfter(real, n, mode)

    open_capture.calls = calls  # type: ignore[attr-defined]
    return open_capture


def test_live_real_capture_with_crop_and_depth(video: tuple[Path, list[np.ndarray]]) -> None:
    path, want = video
    t_before = time.time()
    with LiveSource(str(path), crop=Roi(8, 16, 108, 96), depth_mm=40.0) as src:
        assert (
            src.info.spacing_mm == pytest.approx((0.5, 0.5)) and src.info.spacing_origin == "depth"
        )
        got = []
        for f in src:
            got.append(f)
            if len(got) == 10:
                break
    assert [f.index for f in got] == list(range(10))
    assert all(f.pixels.shape == (80, 100) for f in got)
    assert np.array_equal(got[0].pixels, want[0][16:96, 8:108])
    ts = [f.t for f in got]
    assert ts == sorted(ts) and t_before <= ts[0] <= time.time()


def test_depth_spacing() -> None:
    assert depth_spacing(80.0, 400) == (0.2, 0.2)
    assert depth_spacing(80.0, 400, 38.0, 190) == pytest.approx((0.2, 0.2))
    with pytest.raises(InputError):
        depth_spacing(0.0, 400)


def test_live_recovers_after_unplug(video: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = video
    opener = _opener(path, [8, "down", "down", "ok"])
    src = LiveSource(0, open_capture=opener, stall_timeout_s=1.0, reconnect_timeout_s=5.0)
    got: list[Frame] = []
    for f in src:
        got.append(f)
        if len(got) == 15:
            break
    src.close()
    assert src.reconnects == 1 and len(opener.calls) == 4
    assert [f.index for f in got] == list(range(15))
    after = [f for f in got if "after_outage_s" in f.meta]
    assert len(after) == 1 and after[0].index == 8


def test_live_recovers_after_stall(video: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = video
    opener = _opener(path, [(5, "stall"), "ok"])
    src = LiveSource(0, open_capture=opener, stall_timeout_s=0.3, reconnect_timeout_s=5.0)
    got = []
    for f in src:
        got.append(f)
        if len(got) == 8:
            break
    src.close()
    assert src.reconnects == 1 and float(got[5].meta.get("after_outage_s", 0)) >= 0.3  # type: ignore[arg-type]


def test_live_gives_up_when_device_stays_away(video: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = video
    src = LiveSource(
        0, open_capture=_opener(path, [3, "down"]), stall_timeout_s=0.5, reconnect_timeout_s=0.6
    )
    n = 0
    with pytest.raises(DeviceError, match="not back within"):
        for _ in src:
            n += 1
    src.close()
    assert n == 3  # every frame before the unplug was delivered


def test_live_missing_device() -> None:
    with pytest.raises(DeviceError, match="cannot open"):
        LiveSource(0, open_capture=lambda _d: _Unplugged())
    # And through OpenCV itself: a device path that does not exist.
    with pytest.raises(DeviceError, match="cannot open"):
        open_source(SourceSettings(kind="uvc", device="/dev/video-nonexistent-77"))


def test_live_opens_but_never_delivers(video: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = video
    with pytest.raises(DeviceError, match="no frame"):
        LiveSource(0, open_capture=_opener(path, [(0, "stall")]), stall_timeout_s=0.3)


# --- settings and factory --------------------------------------------------------------


def test_settings_validation() -> None:
    s = SourceSettings(kind="uvc", device="/dev/video2", crop_px=(10, 20, 600, 460), depth_mm=80)
    assert s.crop == Roi(10, 20, 600, 460)
    with pytest.raises(ValidationError):
        SourceSettings(kind="uvc", crop_px=(100, 0, 50, 10))
    with pytest.raises(ValidationError):
        SourceSettings(kind="uvc", spacing_mm=(0.0, 0.1))
    with pytest.raises(ValidationError):
        SourceSettings(kind="uvc", width_mm=30)
    with pytest.raises(ValidationError):
        SourceSettings(kind="uvc", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SourceSettings(kind="webcam")  # type: ignore[arg-type]


def test_open_path_dispatch(tmp_path: Path, video: tuple[Path, list[np.ndarray]]) -> None:
    dcm = str(get_testdata_file("OBXXXX1A.dcm"))
    assert isinstance(open_path(dcm), DicomSource)
    assert isinstance(open_path(video[0]), VideoFileSource)
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((4, 4), np.uint8))
    assert isinstance(open_path(folder), ImageFolderSource)
    with RecordingWriter(tmp_path / "rec", SessionMeta(side="left", protocol="fair")) as w:
        w.add_frame(Frame(np.zeros((4, 4), np.uint8), 1.0, 0, None))
    rs = open_path(tmp_path / "rec")
    assert isinstance(rs, RecordingSource) and rs.info.n_frames == 1
    with pytest.raises(InputError, match="no such file"):
        open_path(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither"):
        open_path(tmp_path / "empty")


def test_open_source_files(video: tuple[Path, list[np.ndarray]]) -> None:
    src = open_source(SourceSettings(kind="video", device=str(video[0]), spacing_mm=(0.1, 0.1)))
    assert src.info.spacing_mm == (0.1, 0.1)
    src = open_source(SourceSettings(kind="dicom", device=str(get_testdata_file("US1_UNCR.dcm"))))
    assert src.info.spacing_mm is None


@pytest.mark.sim
def test_phantom_source_is_stamped_in_host_time() -> None:
    t_before = time.time()
    src = open_source(SourceSettings(kind="phantom", fps_hz=10.0))
    assert src.info.spacing_mm is not None and src.info.roi is not None
    it = iter(src)
    a, b = next(it), next(it)
    assert t_before <= a.t <= time.time() + 0.2  # epoch, not 0
    assert b.t - a.t == pytest.approx(0.1) and a.spacing_mm == src.info.spacing_mm


def test_live_flags_frozen_scanner_output(tmp_path: Path) -> None:
    """A real capture of a stream whose middle frames repeat (scanner 'freeze')."""
    noise = _noise(12)
    frames = noise[:4] + [noise[4]] * 5 + noise[5:8]
    path = _write_video(tmp_path / "freeze.mkv", frames)
    got = []
    with LiveSource(str(path)) as src:
        for f in src:
            got.append(f)
            if len(got) == len(frames):
                break
        frozen = [f.index for f in got if f.meta.get("frozen")]
        # The source drops to the latest frame when the reader is slow (a loaded machine), so
        # which repeats arrive varies: every delivered repeat of the frame before it (noise
        # frames differ by ~85 grey levels on average) is flagged, and nothing else.
        repeats = [
            b.index
            for a, b in itertools.pairwise(got)
            if np.abs(a.pixels.astype(np.int16) - b.pixels.astype(np.int16)).mean() < 2.0
        ]
        assert frozen == repeats and src.frozen_frames == len(repeats)
        assert len(repeats) >= 2  # 4 without drops
