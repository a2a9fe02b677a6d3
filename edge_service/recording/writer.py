"""`RecordingWriter`: a crash-safe session directory (design.md contract #2).

Layout while recording: session.json (complete=false), frames.raw (journal), frames.csv
(`index,t`), imu.jsonl. `close()` streams the journal into cine.dcm, marks session.json
complete and removes the journal. After `kill -9` the directory still opens with
`open_recording`, which recovers every completed frame from the journal.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from edge_service.acquisition.frame import Frame, Roi
from edge_service.errors import InputError, StorageError
from edge_service.recording import journal
from edge_service.recording.cine import BackgroundEncoder, Compression, write_cine
from edge_service.recording.meta import SessionMeta, fsync_dir, json_default, write_json_atomic

log = logging.getLogger(__name__)

SESSION_JSON = "session.json"
CINE = "cine.dcm"
FRAMES_CSV = "frames.csv"
IMU_JSONL = "imu.jsonl"
FRAGS = "cine.frags"  # frames compressed while recording; dropped when cine.dcm is written


class RecordingWriter:
    """Write one session. Also a context manager (closes, i.e. finalises, on exit).

    out_dir must not hold a recording already (never overwrite a session). fsync_every_s
    bounds what a power cut can lose; a killed process loses nothing already added.
    keep_journal keeps frames.raw after cine.dcm is written (for debugging).
    compression: how cine.dcm stores the frames (lossless either way).
    Files are created owner-only (0600, folder 0700): a recording is health data.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        meta: SessionMeta,
        *,
        fsync_every_s: float = 0.5,
        keep_journal: bool = False,
        compression: Compression = "jpegls",
    ) -> None:
        self.path = Path(out_dir)
        self.meta = meta
        self._fsync_every_s = fsync_every_s
        self._keep_journal = keep_journal
        self._compression: Compression = compression
        self._encoder: BackgroundEncoder | None = None
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (self.path / SESSION_JSON).exists() or (self.path / CINE).exists():
            raise InputError(f"{self.path}: already holds a recording; choose a new directory")
        self._times: list[float] = []
        self._shape: tuple[int, int] | None = None
        self._n_imu = 0
        self._closed = False
        self._last_sync = time.monotonic()
        self._syncing = threading.Event()
        self._fd_lock = threading.Lock()
        # add_frame (capture loop) and add_imu (serial reader) may come from two threads.
        self._lock = threading.Lock()
        meta.complete = False
        write_json_atomic(self.path / SESSION_JSON, meta.to_dict())
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL
        self._jfd = os.open(self.path / journal.JOURNAL_NAME, flags, 0o600)
        self._cfd = os.open(self.path / FRAMES_CSV, flags, 0o600)
        self._ifd = os.open(self.path / IMU_JSONL, flags, 0o600)
        journal.write_all(self._cfd, b"index,t\n")
        self._jsize, self._csize = 0, len(b"index,t\n")
        fsync_dir(self.path)

    @property
    def n_frames(self) -> int:
        return len(self._times)

    def add_frame(self, frame: Frame) -> None:
        """Append one frame; it is durable against a process kill when this returns."""
        with self._lock:
            self._add_frame(frame)

    def _add_frame(self, frame: Frame) -> None:
        self._check_open()
        px = frame.pixels
        if self._shape is None:
            self._shape = (int(px.shape[0]), int(px.shape[1]))
            changed = False
            if self.meta.spacing_mm is None and frame.spacing_mm is not None:
                self.meta.spacing_mm = (float(frame.spacing_mm[0]), float(frame.spacing_mm[1]))
                changed = True
            if self.meta.roi is None and frame.roi is not None:
                r = frame.roi
                self.meta.roi = Roi(int(r.x0), int(r.y0), int(r.x1), int(r.y1))
                changed = True
            if changed:
                # Recovery after a crash reads calibration from session.json: persist it now.
                write_json_atomic(self.path / SESSION_JSON, self.meta.to_dict())
        elif px.shape != self._shape:
            raise InputError(f"frame {frame.index}: size {px.shape} differs from {self._shape}")
        # A numpy scalar's repr is "np.float64(...)" in numpy 2: store plain floats only.
        t = float(frame.t)
        if not math.isfinite(t):
            raise InputError(f"frame {frame.index}: non-finite timestamp")
        index = len(self._times)
        record = journal.pack(index, t, px)
        row = f"{index},{t!r}\n".encode()
        try:
            journal.write_all(self._jfd, record)
            # frames.csv after the journal: the journal is the truth, csv the readable index.
            journal.write_all(self._cfd, row)
        except OSError as exc:
            # Disk full / I/O error: cut the torn record off so the frames before it and any
            # written after the problem clears stay readable, then tell the caller.
            os.ftruncate(self._jfd, self._jsize)
            os.ftruncate(self._cfd, self._csize)
            raise StorageError(f"{self.path}: cannot write frame {index}: {exc.strerror}") from exc
        if self._compression != "none" and index == 0:
            try:
                self._encoder = BackgroundEncoder(
                    self.path / journal.JOURNAL_NAME,
                    self.path / FRAGS,
                    self._compression,
                    self._shape,
                )
            except Exception as exc:  # optional speed-up: close() encodes from the journal
                log.info("no background cine encoding: %s", exc)
        if self._encoder is not None:
            self._encoder.submit(self._jsize + journal.HEADER.size)
        self._jsize += len(record)
        self._csize += len(row)
        self._times.append(t)
        self._maybe_sync()

    def add_imu(self, sample: dict[str, Any]) -> None:
        """Append one clip sample as one imu.jsonl line (needs at least `t`)."""
        if "t" not in sample:
            raise InputError("IMU sample needs a host time 't'")
        try:
            line = json.dumps(sample, default=json_default, separators=(",", ":")) + "\n"
        except (TypeError, ValueError) as exc:
            raise InputError(f"IMU sample is not JSON serialisable: {exc}") from exc
        with self._lock:
            self._check_open()
            try:
                journal.write_all(self._ifd, line.encode())
            except OSError as exc:
                # A torn line is dropped by the reader; the frames matter more.
                raise StorageError(f"{self.path}: cannot write IMU sample: {exc.strerror}") from exc
            self._n_imu += 1
            self._maybe_sync()

    def _maybe_sync(self) -> None:
        # fsync runs on a helper thread: flushing ~10 MB to an SD card can take tens of ms,
        # which would make the 60 fps capture loop miss frames. A killed process loses
        # nothing either way (the kernel has the data); fsync only bounds power-cut loss.
        now = time.monotonic()
        if now - self._last_sync >= self._fsync_every_s and not self._syncing.is_set():
            self._last_sync = now
            self._syncing.set()
            threading.Thread(target=self._background_sync, name="rec-fsync", daemon=True).start()

    def _background_sync(self) -> None:
        try:
            with self._fd_lock:
                if not self._closed:
                    self._sync()
        except OSError as exc:
            log.error("fsync of recording %s failed: %s", self.path, exc)
        finally:
            self._syncing.clear()

    def _sync(self) -> None:
        for fd in (self._jfd, self._cfd, self._ifd):
            os.fsync(fd)

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("recording is already closed")

    def close(self) -> None:
        """Finalise: cine.dcm from the journal, session.json complete=true, drop journal."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        with self._fd_lock:  # wait for a background fsync before closing its fds
            self._closed = True
            try:
                self._sync()
            except OSError as exc:
                log.error("fsync of recording %s failed: %s", self.path, exc.strerror)
        for fd in (self._jfd, self._cfd, self._ifd):
            os.close(fd)
        jpath = self.path / journal.JOURNAL_NAME
        enc, self._encoder = self._encoder, None
        sizes = enc.finish() if enc is not None else None
        try:
            if self._times and self._shape is not None:
                records = journal.scan(jpath, verify=False)
                done = enc is not None and sizes is not None and len(sizes) == len(self._times)
                write_cine(
                    self.path / CINE,
                    self.meta,
                    self._times,
                    self._shape,
                    lambda: journal.read_pixels(jpath, records),
                    self._compression,
                    encoded=enc.fragments(sizes) if done and enc and sizes else None,
                )
        except OSError as exc:
            (self.path / FRAGS).unlink(missing_ok=True)  # give the space back at once
            # Disk full while writing the cine: the journal still holds every frame, and
            # `dgs-edge recover` writes the cine once there is space.
            raise StorageError(
                f"{self.path}: cannot write {CINE} ({exc.strerror}); the {len(self._times)} "
                "frames are kept in the journal and the session is finished by "
                "`dgs-edge recover` once there is space"
            ) from exc
        self.meta.n_frames = len(self._times)
        self.meta.n_imu = self._n_imu
        self.meta.ended_t = time.time()
        if self._times and len(self._times) > 1 and self.meta.fps_hz is None:
            span = self._times[-1] - self._times[0]
            self.meta.fps_hz = (len(self._times) - 1) / span if span > 0 else None
        self.meta.complete = True
        try:
            write_json_atomic(self.path / SESSION_JSON, self.meta.to_dict())
        except OSError as exc:
            # cine.dcm is complete (atomic rename), which is what readers go by.
            log.error("%s: cannot update %s: %s", self.path, SESSION_JSON, exc.strerror)
        (self.path / FRAGS).unlink(missing_ok=True)
        if not self._keep_journal:
            jpath.unlink(missing_ok=True)
        log.info(
            "recording %s closed: %d frames, %d imu samples", self.path, self.n_frames, self._n_imu
        )

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # Already failing: finish what can be finished, but never hide the first error
        # (ENOSPC while closing would otherwise replace the clean message with a traceback).
        try:
            self.close()
        except Exception as close_exc:
            log.error("recording %s not finalised: %s", self.path, close_exc)
