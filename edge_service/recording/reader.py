"""`open_recording`: read a session directory, ours or one holding any vendor's cine.dcm.

A recording whose writer was killed has no cine.dcm yet: its frames come from the journal
(every completed frame, torn tail dropped) and `repair()` can write the missing cine.dcm.
"""

from __future__ import annotations

import json
import logging
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
    """Frame epochs by index; a torn last line (crash mid-write) is dropped."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    if lines and lines[0].strip().lower().replace(" ", "") == "index,t":
        lines = lines[1:]
    times: list[float] = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            idx_s, t_s = line.split(",")[:2]
            idx, t = int(idx_s), float(t_s)
        except ValueError as exc:
            if n == len(lines) - 1:
                log.warning("%s: dropped torn last line", path)
                break
            raise InputError(f"{path}: bad line {n + 2}: {line!r}") from exc
        if idx != len(times):
            raise InputError(f"{path}: line {n + 2}: index {idx}, expected {len(times)}")
        times.append(t)
    return times


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
