"""Disk management: a free-space floor for acquisition and retention of delivered sessions.

An appliance that runs for months fills its disk: a cine is ~1-5 MB per second of
scanning. Two rules keep it bounded, both configured in `[storage]`:

- a free-space floor (`min_free_mb`): no session starts below it, and a session stops
  cleanly when acquisition reaches it (what was recorded is kept, analysed and published);
- retention (`max_age_days`, `target_free_mb`): sessions already delivered to every
  destination are deleted, oldest first, when older than the age limit or while free space
  is under the target. The newest session and any session not yet delivered are never
  deleted, whatever the disk says.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_service.acquisition.frame import Frame

log = logging.getLogger(__name__)

MB = 1024 * 1024


class StorageSettings(BaseModel):
    """`[storage]`: free-space floor and retention of the recordings."""

    model_config = ConfigDict(extra="forbid")

    cine_compression: Literal["jpegls", "rle", "none"] = Field(
        default="jpegls",
        description="lossless compression of cine.dcm (JPEG-LS, RLE, or none = native)",
    )
    min_free_mb: float = Field(
        default=1024.0,
        ge=0,
        description="no session starts, and acquisition stops cleanly, below this free space",
    )
    check_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="how often free space is checked while acquiring"
    )
    max_age_days: float | None = Field(
        default=None,
        gt=0,
        description="delete delivered sessions older than this (None: keep by age)",
    )
    target_free_mb: float | None = Field(
        default=None,
        ge=0,
        description=(
            "delete delivered sessions, oldest first, until this much is free "
            "(None: 2 x min_free_mb)"
        ),
    )


@dataclass(frozen=True)
class DiskStatus:
    path: str
    free_mb: float
    total_mb: float
    floor_mb: float

    @property
    def low(self) -> bool:
        return self.free_mb < self.floor_mb

    def as_dict(self) -> dict[str, object]:
        return {
            "free_mb": round(self.free_mb, 1),
            "total_mb": round(self.total_mb, 1),
            "floor_mb": self.floor_mb,
            "state": "low" if self.low else "ok",
        }


def disk_status(path: Path, settings: StorageSettings) -> DiskStatus:
    """Free space where recordings go (the nearest existing parent of `path`)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    u = shutil.disk_usage(p)
    return DiskStatus(str(path), u.free / MB, u.total / MB, settings.min_free_mb)


class DiskGuard:
    """Wraps the frame iterator: ends acquisition cleanly once free space is under the floor.

    `tripped` says whether it did (the caller raises the alarm and keeps the session)."""

    def __init__(
        self,
        path: Path,
        settings: StorageSettings,
        on_change: Callable[[DiskStatus], object] | None = None,
    ) -> None:
        self.path = path
        self.s = settings
        self.tripped: DiskStatus | None = None
        self._on_change = on_change
        self._next = 0.0

    def check(self) -> DiskStatus:
        st = disk_status(self.path, self.s)
        if self._on_change is not None:
            self._on_change(st)
        return st

    def frames(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        for f in frames:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + self.s.check_interval_s
                st = self.check()
                if st.low:
                    self.tripped = st
                    log.error(
                        "free space %.0f MB is under the floor of %.0f MB: acquisition stopped; "
                        "the frames recorded so far are kept",
                        st.free_mb,
                        st.floor_mb,
                    )
                    return
            yield f


def dir_size_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total / MB


def apply_retention(
    sessions: list[Path],
    *,
    delivered: Callable[[Path], bool],
    settings: StorageSettings,
    disk_path: Path,
    now: float | None = None,
) -> list[Path]:
    """Delete delivered sessions by age and by space; returns the deleted folders.

    sessions: oldest first. The newest one is never deleted, nor any that `delivered`
    does not confirm.
    """
    now = time.time() if now is None else now
    target = settings.target_free_mb
    if target is None:
        target = 2 * settings.min_free_mb
    deleted: list[Path] = []
    candidates = sessions[:-1]  # never the newest
    for path in candidates:
        if not delivered(path):
            continue
        age_days = (now - path.stat().st_mtime) / 86400.0
        too_old = settings.max_age_days is not None and age_days > settings.max_age_days
        short = disk_status(disk_path, settings).free_mb < target
        if not (too_old or short):
            continue
        try:
            shutil.rmtree(path)
        except OSError as exc:
            log.error("retention: cannot delete %s: %s", path.name, exc.strerror)
            continue
        log.warning(
            "retention: deleted delivered session %s (%s)",
            path.name,
            f"older than {settings.max_age_days} days" if too_old else "disk space",
        )
        deleted.append(path)
    return deleted
