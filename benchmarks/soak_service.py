"""`dgs-edge run` as the soak benchmark starts it, with two harness-only additions.

- Probe freezes: while the file named by DGS_SOAK_FREEZE_FILE exists, the phantom source
  repeats its last image (new timestamps, same pixels), which is what a scanner on freeze
  looks like through a capture card. The phantom lives inside the service process, so this
  is the only way to freeze it from outside; the product code is not changed for it.
- Memory diagnostics (DGS_SOAK_MEMDIAG=FILE): every DGS_SOAK_MEMDIAG_S seconds one JSON line
  with RSS, glibc mallinfo2 (heap in use vs held), Python objects by type and, with
  DGS_SOAK_TRACEMALLOC=1, the tracemalloc lines that grew most since the first sample.

Usage: python -m benchmarks.soak_service run --config FILE --sessions 0
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import gc
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _patch_freezes(flag: Path) -> None:
    from edge_service.acquisition import factory
    from edge_service.acquisition.frame import Frame

    plain = factory.PhantomSource.frames

    def frames(self: Any) -> Iterator[Frame]:
        held: Frame | None = None
        for f in plain(self):
            if flag.exists():
                if held is None:
                    held = f
                # Same pixels, the live frame's time and index: a frozen image, still flowing.
                yield dataclasses.replace(f, pixels=held.pixels)
            else:
                held = None
                yield f

    factory.PhantomSource.frames = frames  # type: ignore[method-assign]


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                  "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def _mallinfo() -> dict[str, float]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        mi = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    mb = 1 / (1 << 20)
    return {
        "heap_held_mb": mi.arena * mb,  # main + thread arenas (sbrk/mmap'd heaps)
        "heap_used_mb": mi.uordblks * mb,
        "heap_free_mb": mi.fordblks * mb,
        "mmap_mb": mi.hblkhd * mb,
    }


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rollup() -> dict[str, float]:
    """Anonymous vs file-backed resident memory, and what of it is transparent huge pages."""
    want = {"Anonymous:": "anon_mb", "Pss_File:": "file_mb", "AnonHugePages:": "thp_mb"}
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            key = line.split(" ", 1)[0]
            if key in want:
                out[want[key]] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def _memdiag(out: Path, every_s: float, trace: bool) -> None:
    import tracemalloc

    if trace:
        tracemalloc.start(1)
    first: Any = None
    t0 = time.monotonic()
    with out.open("a") as fh:
        while True:
            time.sleep(every_s)
            gc.collect()
            types = collections.Counter(type(o).__name__ for o in gc.get_objects())
            doc: dict[str, Any] = {
                "t": round(time.monotonic() - t0, 1),
                "rss_mb": round(_rss_mb(), 1),
                **_rollup(),
                **{k: round(v, 1) for k, v in _mallinfo().items()},
                "gc_objects": sum(types.values()),
                "top_types": types.most_common(12),
                "threads": threading.active_count(),
            }
            if trace:
                snap = tracemalloc.take_snapshot()
                doc["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / (1 << 20), 1)
                if first is None:
                    first = snap
                else:
                    doc["grew"] = [
                        [str(s.traceback[0]), round(s.size_diff / 1024, 1), s.count_diff]
                        for s in snap.compare_to(first, "lineno")[:8]
                    ]
            fh.write(json.dumps(doc) + "\n")
            fh.flush()


def main() -> int:
    flag = os.environ.get("DGS_SOAK_FREEZE_FILE")
    if flag:
        _patch_freezes(Path(flag))
    diag = os.environ.get("DGS_SOAK_MEMDIAG")
    if diag:
        every = float(os.environ.get("DGS_SOAK_MEMDIAG_S", "60"))
        trace = os.environ.get("DGS_SOAK_TRACEMALLOC") == "1"
        threading.Thread(
            target=_memdiag, args=(Path(diag), every, trace), daemon=True, name="memdiag"
        ).start()
    from edge_service.cli.edge import main as edge_main

    return edge_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
