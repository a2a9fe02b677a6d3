"""Open any frame source from settings or from a path given on the command line."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from edge_service.acquisition.dicom import DicomSource
from edge_service.acquisition.files import IMAGE_EXTS, ImageFolderSource, VideoFileSource
from edge_service.acquisition.frame import Frame
from edge_service.acquisition.live import LiveSource
from edge_service.acquisition.settings import SourceSettings
from edge_service.acquisition.source import FrameSource, SourceInfo
from edge_service.errors import ConfigError, InputError


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 preamble check; also accepts .dcm files without one (old exports)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".dicom")


class RecordingSource(FrameSource):
    """A session recording directory as a frame source (replay)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from edge_service.recording import open_recording

        self.recording = open_recording(path)
        rec = self.recording
        src = rec.source
        base = src.info if src is not None else None
        first_shape = None
        if base is None:
            it = rec.frames()
            f = next(it, None)
            it.close()  # release the journal file now, not at garbage collection
            first_shape = None if f is None else f.pixels.shape
        self._info = SourceInfo(
            kind="recording",
            path=str(rec.path),
            n_frames=rec.n_frames,
            width=base.width if base else (first_shape[1] if first_shape else 0),
            height=base.height if base else (first_shape[0] if first_shape else 0),
            spacing_mm=rec.spacing_mm,
            roi=rec.roi,
            fps_hz=rec.meta.fps_hz or (base.fps_hz if base else None),
            transfer_syntax=base.transfer_syntax if base else "journal (unfinished recording)",
            vendor=base.vendor if base else None,
            model=base.model if base else None,
            photometric=base.photometric if base else "MONOCHROME2",
            spacing_origin=base.spacing_origin
            if base
            else ("session.json" if rec.spacing_mm else None),
            extra={
                "side": rec.meta.side,
                "protocol": rec.meta.protocol,
                "complete": rec.complete,
                "recovered": rec.recovered,
                "imu_samples": len(rec.imu_samples()),
            },
        )

    @property
    def info(self) -> SourceInfo:
        return self._info

    def frames(self) -> Iterator[Frame]:
        return self.recording.frames()


class PhantomSource(FrameSource):
    """Adapter over the phantom simulator (edge_service.phantom) so it plugs in like a probe."""

    def __init__(
        self, manoeuvre: str = "fair", fps_hz: float = 20.0, seed: int = 0, t0: float | None = None
    ) -> None:
        from edge_service.phantom import PhantomSimulator
        from edge_service.sim.motion import manoeuvre as make_motion

        self._sim = PhantomSimulator(seed=seed)
        self._motion = make_motion(manoeuvre)  # type: ignore[arg-type]
        self._fps, self._t0 = fps_hz, t0
        g = self._sim.geom
        first = next(self._sim.run(self._motion, fps=fps_hz, t0=0.0)).frame
        self._info = SourceInfo(
            kind="phantom",
            path=f"phantom:{manoeuvre}",
            n_frames=None,
            width=first.pixels.shape[1],
            height=first.pixels.shape[0],
            spacing_mm=first.spacing_mm,
            roi=g.roi,
            fps_hz=fps_hz,
            spacing_origin="phantom",
        )

    @property
    def info(self) -> SourceInfo:
        return self._info

    def frames(self) -> Iterator[Frame]:
        # Like a probe, frames are stamped in host time: t0 = now unless given, so a paced
        # consumer plays them in real time.
        t0 = time.time() if self._t0 is None else self._t0
        for pf in self._sim.run(self._motion, fps=self._fps, t0=t0):
            yield pf.frame


def open_path(
    path: str | os.PathLike[str],
    *,
    spacing_mm: tuple[float, float] | None = None,
    fps_hz: float | None = None,
    spacing_override: bool = False,
) -> FrameSource:
    """Pick the source for a file or directory: session dir, image folder, DICOM, video."""
    p = Path(path)
    if p.is_dir():
        if (p / "session.json").exists():
            return RecordingSource(p)
        if any(c.suffix.lower() in IMAGE_EXTS for c in p.iterdir()):
            return ImageFolderSource(p, spacing_mm=spacing_mm, fps_hz=fps_hz)
        if (p / "cine.dcm").exists():
            return DicomSource(
                p / "cine.dcm", spacing_mm=spacing_mm, spacing_override=spacing_override
            )
        raise InputError(f"{p}: neither a session recording nor a folder of images")
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    if is_dicom_file(p):
        return DicomSource(p, spacing_mm=spacing_mm, spacing_override=spacing_override)
    return VideoFileSource(p, spacing_mm=spacing_mm)


def open_source(settings: SourceSettings) -> FrameSource:
    """The configured source. Raises ConfigError/InputError/DeviceError with one clear line."""
    s = settings
    sp = s.spacing_mm
    if s.kind == "uvc":
        dev: int | str = int(s.device) if s.device.isdigit() else s.device
        return LiveSource(
            dev,
            crop=s.crop,
            depth_mm=s.depth_mm,
            width_mm=s.width_mm,
            spacing_mm=sp,
            fps_hz=s.fps_hz,
            capture_size_px=s.capture_size_px,
            stall_timeout_s=s.stall_timeout_s,
            reconnect_timeout_s=s.reconnect_timeout_s,
            freeze_mad_threshold=s.freeze_mad_threshold,
        )
    if s.kind == "dicom":
        return DicomSource(s.device, spacing_mm=sp)
    if s.kind == "video":
        return VideoFileSource(s.device, spacing_mm=sp, crop=s.crop)
    if s.kind == "folder":
        return ImageFolderSource(s.device, spacing_mm=sp, fps_hz=s.fps_hz, crop=s.crop)
    if s.kind == "recording":
        return RecordingSource(s.device)
    if s.kind == "phantom":
        return PhantomSource(s.phantom_manoeuvre, s.fps_hz or 20.0, s.phantom_seed)
    raise ConfigError(f"unknown source kind {s.kind!r}")
