"""Live UVC / V4L2 source: USB probes that present as cameras, and capture cards that grab
a scanner's video output. OpenCV's capture backends do the device work.

A grabber thread owns each capture object and hands (host time, image) to the consumer
through a small queue that keeps the newest frames (a slow consumer drops old frames
rather than falling behind). If no frame arrives within `stall_timeout_s`, or the device
reports failure (unplugged), the source abandons that capture, reopens the device until
`reconnect_timeout_s` passes, and then continues - or raises `DeviceError`.

Calibration: a scanner's screen shows a fixed imaging depth over the B-mode region, so
`depth_mm / crop height` gives the axial mm/px; lateral spacing is the same (square
pixels) unless `width_mm` (linear probe field width) is given.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from edge_service.acquisition.files import apply_crop, to_gray
from edge_service.acquisition.frame import Frame, Roi
from edge_service.acquisition.source import FrameSource, SourceInfo, check_spacing
from edge_service.errors import DeviceError, InputError

log = logging.getLogger(__name__)


class Capture(Protocol):
    """The part of `cv2.VideoCapture` this source uses."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, Any]: ...
    def release(self) -> None: ...


def open_cv2_capture(
    device: int | str, width: int | None = None, height: int | None = None, fps: float | None = None
) -> Capture:
    import cv2

    cap = cv2.VideoCapture(device)
    if cap.isOpened():
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        # Keep the driver queue short: we want the newest frame, not a backlog.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


def depth_spacing(
    depth_mm: float,
    crop_height_px: int,
    width_mm: float | None = None,
    crop_width_px: int | None = None,
) -> tuple[float, float]:
    """(dx, dy) mm/px from the probe's depth setting over the B-mode region height."""
    if depth_mm <= 0 or crop_height_px <= 0:
        raise InputError(f"depth {depth_mm} mm over {crop_height_px} px is not a calibration")
    dy = depth_mm / crop_height_px
    if width_mm is not None:
        if width_mm <= 0 or not crop_width_px:
            raise InputError(f"width {width_mm} mm over {crop_width_px} px is not a calibration")
        return (width_mm / crop_width_px, dy)
    return (dy, dy)


_FAIL = object()


class _Grabber(threading.Thread):
    """Reads one capture until told to stop or it fails; owns and releases it."""

    def __init__(self, cap: Capture, out: queue.Queue[Any], clock: Callable[[], float]) -> None:
        super().__init__(daemon=True, name="uvc-grabber")
        self.cap, self.out, self.clock = cap, out, clock
        self.stop = threading.Event()
        self.dropped = 0

    def _put(self, item: Any) -> None:
        while True:
            try:
                self.out.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.out.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    ok, img = self.cap.read()
                except Exception as exc:  # a backend may raise on unplug instead of returning False
                    log.warning("capture read raised: %s", exc)
                    ok, img = False, None
                t = self.clock()
                if self.stop.is_set():
                    break
                if not ok or img is None:
                    self._put(_FAIL)
                    break
                self._put((t, img))
        finally:
            try:
                self.cap.release()
            except Exception as exc:
                log.debug("release failed: %s", exc)


class LiveSource(FrameSource):
    """Frames from a camera-class device with host timestamps taken right after capture."""

    def __init__(
        self,
        device: int | str = 0,
        *,
        crop: Roi | None = None,
        depth_mm: float | None = None,
        width_mm: float | None = None,
        spacing_mm: tuple[float, float] | None = None,
        fps_hz: float | None = None,
        capture_size_px: tuple[int, int] | None = None,
        stall_timeout_s: float = 2.0,
        reconnect_timeout_s: float = 10.0,
        freeze_mad_threshold: float = 0.25,
        open_capture: Callable[[int | str], Capture] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.device = device
        self._freeze_mad = freeze_mad_threshold
        self.frozen_frames = 0
        self._crop = crop
        self._stall = stall_timeout_s
        self._reconnect = reconnect_timeout_s
        self._clock = clock
        w, h = capture_size_px or (None, None)
        self._open = open_capture or (lambda d: open_cv2_capture(d, w, h, fps_hz))
        self._q: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._grabber: _Grabber | None = None
        self._closed = False
        self.reconnects = 0
        self._last_rx = time.monotonic()
        self._dropped_before = 0
        self._start(first=True)
        first = self._next_image(first=True)
        if first is None:
            self.close()
            raise DeviceError(
                f"camera {device!r}: opened but delivered no frame within {stall_timeout_s} s"
            )
        self._pending: tuple[float, np.ndarray] | None = first
        gray = apply_crop(to_gray(first[1]), crop, f"camera {device!r}")
        if spacing_mm is None and depth_mm is not None:
            spacing_mm = depth_spacing(depth_mm, gray.shape[0], width_mm, gray.shape[1])
            origin: str | None = "depth"
        else:
            origin = "user" if spacing_mm is not None else None
        self._shape = gray.shape
        self._info = SourceInfo(
            kind="uvc",
            path=str(device),
            n_frames=None,
            width=gray.shape[1],
            height=gray.shape[0],
            spacing_mm=check_spacing(spacing_mm),
            fps_hz=fps_hz,
            spacing_origin=origin,
        )

    @property
    def info(self) -> SourceInfo:
        return self._info

    @property
    def dropped(self) -> int:
        """Frames discarded because the consumer was slower than the device."""
        return self._dropped_before + (self._grabber.dropped if self._grabber else 0)

    def _start(self, first: bool = False) -> bool:
        try:
            cap = self._open(self.device)
            opened = cap.isOpened()
        except Exception as exc:
            log.debug("open %r failed: %s", self.device, exc)
            opened = False
        if not opened:
            if first:
                raise DeviceError(f"camera {self.device!r}: cannot open (unplugged or busy?)")
            return False
        if self._grabber is not None:
            self._dropped_before += self._grabber.dropped
        self._q = queue.Queue(maxsize=4)
        self._grabber = _Grabber(cap, self._q, self._clock)
        self._grabber.start()
        return True

    def _abandon(self) -> None:
        # The old grabber may be blocked inside read(); it stops and releases its own
        # capture when read returns. We never touch its capture from this thread.
        if self._grabber is not None:
            self._grabber.stop.set()

    def _next_image(self, first: bool = False) -> tuple[float, np.ndarray] | None:
        try:
            item = self._q.get(timeout=self._stall)
        except queue.Empty:
            return None
        if item is _FAIL:
            return None
        self._last_rx = time.monotonic()
        return item

    def _recover(self) -> float:
        """Reopen the device until it delivers again; returns the outage in seconds."""
        # The outage started when the last good frame arrived, not when we noticed.
        t_lost = self._last_rx
        log.warning("camera %r stalled or unplugged; reconnecting", self.device)
        self._abandon()
        deadline = time.monotonic() + self._reconnect
        while time.monotonic() < deadline and not self._closed:
            if self._start():
                item = self._next_image()
                if item is not None:
                    self._pending = item
                    self.reconnects += 1
                    gap = time.monotonic() - t_lost
                    log.warning("camera %r back after %.1f s", self.device, gap)
                    return gap
                self._abandon()
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))  # backoff between opens
        raise DeviceError(
            f"camera {self.device!r}: no frames and not back within {self._reconnect} s (unplugged?)"
        )

    def frames(self) -> Iterator[Frame]:
        i = 0
        gap: float | None = None
        prev: np.ndarray | None = None
        while not self._closed:
            item, self._pending = self._pending, None
            if item is None:
                item = self._next_image()
            if item is None:
                gap = self._recover()
                continue
            t, img = item
            gray = apply_crop(to_gray(img), self._crop, f"camera {self.device!r}")
            if gray.shape != self._shape:
                raise DeviceError(
                    f"camera {self.device!r}: frame size changed to {gray.shape[::-1]}"
                )
            meta: dict[str, object] = {"source": "uvc"}
            if gap is not None:
                meta["after_outage_s"] = round(gap, 3)
                gap = None
            # A capture card keeps sending the last image while the scanner is frozen. Such
            # frames are not new tissue motion; flag them so gliding is not measured as 0.
            if prev is not None and self._is_frozen(prev, gray):
                meta["frozen"] = True
                self.frozen_frames += 1
            prev = gray
            yield Frame(gray, t, i, self._info.spacing_mm, None, meta)
            i += 1

    def _is_frozen(self, a: np.ndarray, b: np.ndarray) -> bool:
        if self._freeze_mad <= 0:
            return False
        # Subsampled mean absolute difference: live speckle changes by several grey levels
        # per frame; a frozen digital output by none, an analogue one by noise < threshold.
        sa, sb = a[::4, ::4], b[::4, ::4]
        mad = float(np.mean(np.abs(sa.astype(np.int16) - sb.astype(np.int16))))
        return mad < self._freeze_mad

    def close(self) -> None:
        self._closed = True
        self._abandon()
        if self._grabber is not None:
            self._grabber.join(timeout=1.0)
