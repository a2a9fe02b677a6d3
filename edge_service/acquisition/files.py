"""Video-file and image-folder sources. Neither format carries calibration, so mm
measurements need a spacing given by the user (`--spacing DX,DY`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_service.acquisition.colour import chroma_fraction, to_uint8
from edge_service.acquisition.frame import Frame, Roi
from edge_service.acquisition.source import FrameSource, SourceInfo, check_spacing
from edge_service.errors import InputError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")


def to_gray(img: np.ndarray) -> np.ndarray:
    """OpenCV image (gray, BGR or BGRA, 8 or 16 bit) -> 2-D uint8."""
    if img.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        img = cv2.cvtColor(img, code) if img.shape[2] in (3, 4) else img[..., 0]
    return np.ascontiguousarray(to_uint8(img))


def apply_crop(gray: np.ndarray, crop: Roi | None, where: str) -> np.ndarray:
    if crop is None:
        return gray
    h, w = gray.shape
    if crop.x1 > w or crop.y1 > h or crop.width <= 0 or crop.height <= 0:
        raise InputError(f"{where}: crop {crop} does not fit a {w}x{h} image")
    return np.ascontiguousarray(gray[crop.y0 : crop.y1, crop.x0 : crop.x1])


class VideoFileSource(FrameSource):
    """Frames of a video file (anything OpenCV's FFmpeg backend reads).

    t = t0 + the container's presentation time; spacing_mm is the user's (None = no mm).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        spacing_mm: tuple[float, float] | None = None,
        crop: Roi | None = None,
        t0: float = 0.0,
    ) -> None:
        self._path = str(path)
        if not Path(self._path).is_file():
            raise InputError(f"{self._path}: no such file")
        cap = cv2.VideoCapture(self._path)
        try:
            ok, first = cap.read() if cap.isOpened() else (False, None)
            if not ok or first is None:
                raise InputError(f"{self._path}: not a DICOM file, video or image OpenCV can read")
            fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
        finally:
            cap.release()
        gray = apply_crop(to_gray(first), crop, self._path)
        self._crop, self._t0 = crop, t0
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") or None
        self._info = SourceInfo(
            kind="video",
            path=self._path,
            n_frames=n,
            width=gray.shape[1],
            height=gray.shape[0],
            spacing_mm=check_spacing(spacing_mm),
            fps_hz=fps,
            transfer_syntax=codec,
            spacing_origin="user" if spacing_mm is not None else None,
        )

    @property
    def info(self) -> SourceInfo:
        return self._info

    def frames(self) -> Iterator[Frame]:
        cap = cv2.VideoCapture(self._path)
        fps = self._info.fps_hz
        try:
            i = 0
            while True:
                ok, img = cap.read()
                if not ok or img is None:
                    break
                pos_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
                # Some containers report no timestamps: fall back to the nominal rate.
                rel = pos_ms / 1000.0 if pos_ms > 0 or i == 0 else (i / fps if fps else 0.0)
                gray = apply_crop(to_gray(img), self._crop, self._path)
                meta: dict[str, object] = {"source": "video"}
                if img.ndim == 3 and img.dtype == np.uint8:
                    c = self._crop
                    box = None if c is None else (c.x0, c.y0, c.x1, c.y1)
                    meta["chroma_fraction"] = chroma_fraction(img, box)  # for the view gate
                yield Frame(gray, self._t0 + rel, i, self._info.spacing_mm, None, meta)
                i += 1
        finally:
            cap.release()


class ImageFolderSource(FrameSource):
    """Frames from the image files of one folder, sorted by name, at a nominal fps."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        spacing_mm: tuple[float, float] | None = None,
        fps_hz: float | None = None,
        crop: Roi | None = None,
        t0: float = 0.0,
    ) -> None:
        self._path = Path(path)
        if not self._path.is_dir():
            raise InputError(f"{self._path}: not a directory")
        self._files = sorted(p for p in self._path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not self._files:
            raise InputError(f"{self._path}: no image files ({', '.join(IMAGE_EXTS)})")
        if fps_hz is not None and fps_hz <= 0:
            raise InputError(f"fps must be positive, got {fps_hz}")
        first = self._load(self._files[0], crop)
        self._crop, self._t0, self._fps = crop, t0, fps_hz
        self._info = SourceInfo(
            kind="folder",
            path=str(self._path),
            n_frames=len(self._files),
            width=first.shape[1],
            height=first.shape[0],
            spacing_mm=check_spacing(spacing_mm),
            fps_hz=fps_hz,
            transfer_syntax=self._files[0].suffix.lower().lstrip("."),
            spacing_origin="user" if spacing_mm is not None else None,
        )

    @staticmethod
    def _load(p: Path, crop: Roi | None) -> np.ndarray:
        return ImageFolderSource._load_chroma(p, crop)[0]

    @staticmethod
    def _load_chroma(p: Path, crop: Roi | None) -> tuple[np.ndarray, float | None]:
        """(gray frame, chroma fraction for the view gate; None for gray files)."""
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError(f"{p}: not a readable image")
        chroma = None
        if img.ndim == 3 and img.dtype == np.uint8:
            box = None if crop is None else (crop.x0, crop.y0, crop.x1, crop.y1)
            chroma = chroma_fraction(img, box)
        return apply_crop(to_gray(img), crop, str(p)), chroma

    @property
    def info(self) -> SourceInfo:
        return self._info

    def frames(self) -> Iterator[Frame]:
        shape = (self._info.height, self._info.width)
        for i, p in enumerate(self._files):
            gray, chroma = self._load_chroma(p, self._crop)
            if gray.shape != shape:
                raise InputError(
                    f"{p}: size {gray.shape[::-1]} differs from the first image {shape[::-1]}"
                )
            t = self._t0 + (i / self._fps if self._fps else float(i))
            meta: dict[str, object] = {"source": "folder", "file": p.name}
            if chroma is not None:
                meta["chroma_fraction"] = chroma  # for the view gate
            yield Frame(gray, t, i, self._info.spacing_mm, None, meta)
