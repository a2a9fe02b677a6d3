"""`open_recording`: read a session directory, ours or one holding any vendor's cine.dcm.

A recording whose writer was killed has no cine.dcm yet: its frames come from the journal
(every completed frame, torn tail dropped) and `repair()` can write the missing cine.dcm.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from edge_service.acquisition.dicom import DicomSource
from edge_service.acquisition.frame import Frame, Roi
from edge_service.errors import InputError
from edge_service.recording import journal
from edge_service.recording.cine import write_cine
from edge_service.recording.meta import SessionMeta, read_meta, write_json_atomic
from edge_service.recording.writer import CINE, FRAMES_CSV, IMU_JSONL, SESSION_JSON

log = logging.getLogger(__name__)


def read_frames_csv(path: Path) -> list[float]:
    """Frame epochs by index; a torn last line (crash mid-write) is dropped.

    Other tools' files are read within contract 2: a header naming `index` and `t` in any
    order (extra columns ignored), whitespace around values, or no header (then the first
    two columns are index,t). Anything else: one InputError naming the file and line.
    """
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file ({exc.reason})") from exc
    lines = text.splitlines()
    ci, ct, first = 0, 1, 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first < len(lines):
        head = [c.strip().strip('"').lower() for c in lines[first].split(",")]
        if any(c and not _is_number(c) for c in head):
            if "index" not in head or "t" not in head:
                raise InputError(
                    f"{path}: header {lines[first].strip()!r} must name the columns 'index' and 't'"
                )
            ci, ct = head.index("index"), head.index("t")
            first += 1
    times: list[float] = []
    for n in range(first, len(lines)):
        line = lines[n]
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split(",")]
        try:
            idx_f, t = float(cols[ci]), float(cols[ct])
            if idx_f != int(idx_f) or not math.isfinite(t):
                raise ValueError("index must be an integer and t finite")
            idx = int(idx_f)
        except (ValueError, IndexError) as exc:
            if n == len(lines) - 1:
                log.warning("%s: dropped torn last line", path)
                break
            raise InputError(f"{path}: line {n + 1}: not 'index,t': {line[:80]!r}") from exc
        if idx != len(times):
            raise InputError(f"{path}: line {n + 1}: index {idx}, expected {len(times)}")
        times.append(t)
    return times


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Recording:
    """A session directory opened for reading. `path / "result.json"` is where analysis writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta: SessionMeta = read_meta(path / SESSION_JSON)
        self._csv_times = read_frames_csv(path / FRAMES_CSV)
        self._cine: DicomSource | None = None
        self._records: list[journal.JournalRecord] = []
        cine = path / CINE
        jpath = path / journal.JOURNAL_NAME
        if cine.exists():
            self._open_cine(cine)
        elif jpath.exists():
            self._records = journal.scan(jpath)
            if self._records:
                log.warning(
                    "%s: no cine.dcm (writer did not finish); recovered %d frames from the journal",
                    path,
                    len(self._records),
                )
        elif self.meta.n_frames:
            raise InputError(f"{path}: cine.dcm is missing ({self.meta.n_frames} frames expected)")

    def _open_cine(self, cine: Path) -> None:
        probe = DicomSource(cine, spacing_mm=self.meta.spacing_mm, default_t0=self.meta.started_t)
        n = probe.info.n_frames or 1
        if len(self._csv_times) == n:
            self._cine = DicomSource(cine, spacing_mm=self.meta.spacing_mm, times=self._csv_times)
        else:
            if self._csv_times:
                log.warning(
                    "%s: frames.csv has %d rows for %d frames; using the cine's frame times",
                    self.path,
                    len(self._csv_times),
                    n,
                )
            self._cine = probe

    @property
    def recovered(self) -> bool:
        """True when the frames come from the journal of an unfinished recording."""
        return self._cine is None and bool(self._records)

    @property
    def complete(self) -> bool:
        """All frames are in a finished cine.dcm (or the session finished with no frames).

        cine.dcm only ever appears by atomic rename after the last frame, so its presence
        means complete even if the writer died before marking session.json.
        """
        if self._cine is not None:
            return True
        return self.meta.complete and not self._records

    @property
    def n_frames(self) -> int:
        if self._cine is not None:
            return self._cine.info.n_frames or 1
        return len(self._records)

    @property
    def spacing_mm(self) -> tuple[float, float] | None:
        if self._cine is not None:
            return self._cine.info.spacing_mm
        return self.meta.spacing_mm

    @property
    def roi(self) -> Roi | None:
        if self._cine is not None and self._cine.info.roi is not None:
            return self._cine.info.roi
        return self.meta.roi

    @property
    def times(self) -> list[float]:
        if self._cine is not None:
            return self._cine.times
        return [r.t for r in self._records]

    @property
    def source(self) -> DicomSource | None:
        """The DICOM source behind cine.dcm (None for a recovered journal)."""
        return self._cine

    def frames(self) -> Generator[Frame, None, None]:
        if self._cine is not None:
            for f in self._cine.frames():
                yield Frame(f.pixels, f.t, f.index, f.spacing_mm, f.roi, {"source": "recording"})
            return
        if not self._records:
            return  # no cine and no journal: a session that recorded no frame
        jpath = self.path / journal.JOURNAL_NAME
        spacing, roi = self.meta.spacing_mm, self.meta.roi
        for i, (rec, px) in enumerate(
            zip(self._records, journal.read_pixels(jpath, self._records), strict=True)
        ):
            yield Frame(px, rec.t, i, spacing, roi, {"source": "recording", "recovered": True})

    def imu_samples(self) -> list[dict[str, Any]]:
        path = self.path / IMU_JSONL
        if not path.exists():
            return []
        out: list[dict[str, Any]] = []
        lines = path.read_bytes().split(b"\n")
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                if n == len(lines) - 1:  # torn last line of a killed writer
                    log.warning("%s: dropped torn last line", path)
                    break
                raise InputError(f"{path}: bad line {n + 1}: {exc}") from exc
            out.append(obj)
        return out

    def repair(self) -> None:
        """Finish a recovered recording: write cine.dcm and frames.csv, mark it complete."""
        if not self.recovered:
            return
        jpath = self.path / journal.JOURNAL_NAME
        first = self._records[0]
        times = [r.t for r in self._records]
        write_cine(
            self.path / CINE,
            self.meta,
            times,
            (first.h, first.w),
            lambda: journal.read_pixels(jpath, self._records),  # re-readable: RLE fallback
        )
        tmp = self.path / (FRAMES_CSV + ".tmp")
        tmp.write_text("index,t\n" + "".join(f"{i},{t!r}\n" for i, t in enumerate(times)))
        os.replace(tmp, self.path / FRAMES_CSV)
        self.meta.n_frames = len(times)
        self.meta.n_imu = len(self.imu_samples())
        self.meta.complete = True
        self.meta.extra["repaired"] = True
        write_json_atomic(self.path / SESSION_JSON, self.meta.to_dict())
        jpath.unlink()
        self._records = []
        self._csv_times = times
        self._open_cine(self.path / CINE)


def open_recording(path: str | os.PathLike[str]) -> Recording:
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{p}: not a directory (a session recording is a directory)")
    return Recording(p)
