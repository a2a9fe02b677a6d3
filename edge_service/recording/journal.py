"""Append-only frame journal (`frames.raw`): what makes a recording survive `kill -9`.

Each frame is ONE record: a 24-byte header (magic, index, epoch t, height, width, CRC-32
of the pixels) followed by the raw uint8 pixels, written with a single unbuffered
`os.write`. The kernel keeps what was written even if the process dies the next instant,
so after a crash every complete record is recoverable; a torn last record fails its
length or CRC check and is dropped. fsync is batched (power loss costs at most the last
batch) because fsync per frame at 60 fps is what makes SD cards drop frames.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"DGF1"
HEADER = struct.Struct("<4sIdHHI")  # magic, index, t, h, w, crc32
JOURNAL_NAME = "frames.raw"


def pack(index: int, t: float, pixels: np.ndarray) -> bytes:
    h, w = pixels.shape
    payload = np.ascontiguousarray(pixels).tobytes()
    return HEADER.pack(MAGIC, index, t, h, w, zlib.crc32(payload)) + payload


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class JournalRecord:
    __slots__ = ("h", "index", "offset", "t", "w")

    def __init__(self, index: int, t: float, h: int, w: int, offset: int) -> None:
        self.index, self.t, self.h, self.w, self.offset = index, t, h, w, offset


def scan(path: Path, *, verify: bool = True) -> list[JournalRecord]:
    """Every complete, intact record in order; stops at the first torn or corrupt one."""
    out: list[JournalRecord] = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + HEADER.size <= size:
            f.seek(pos)
            magic, index, t, h, w, crc = HEADER.unpack(f.read(HEADER.size))
            n = h * w
            if magic != MAGIC or n == 0 or pos + HEADER.size + n > size:
                break
            if verify and zlib.crc32(f.read(n)) != crc:
                log.warning("%s: corrupt record at byte %d; recording ends there", path, pos)
                break
            out.append(JournalRecord(index, t, h, w, pos + HEADER.size))
            pos += HEADER.size + n
        if pos != size:
            log.warning("%s: dropped %d trailing bytes of an unfinished frame", path, size - pos)
    return out


def read_pixels(path: Path, records: list[JournalRecord]) -> Iterator[np.ndarray]:
    with open(path, "rb") as f:
        for r in records:
            f.seek(r.offset)
            yield np.frombuffer(f.read(r.h * r.w), dtype=np.uint8).reshape(r.h, r.w)
