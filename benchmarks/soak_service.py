"""`dgs-edge run` as the soak benchmark starts it, with two harness-only additions.

- Probe freezes: while the file named by DGS_SOAK_FREEZE_FILE exists, the phantom source
  repeats its last image (new timestamps, same pixels), which is what a scanner on freeze
  looks like through a capture card. The phantom lives inside the service process, so this
  is the only way to freeze it from outside; the product code is not changed for it.
- Memory diagnostics (DGS_SOAK_MEMDIAG=FILE): every DGS_SOAK_MEMDIAG_S seconds one JSON line
  with RSS, glibc mallinfo2 (heap in use vs held), malloc_info per arena, pymalloc arenas
  (sys._debugmallocstats), every mapping's resident anonymous kB (/proc/self/smaps), Python
  objects by type and, with DGS_SOAK_TRACEMALLOC=1, the tracemalloc lines that grew most
  since the first sample. Per mapping is what found the last growth: mallinfo2 counts
  malloc's mmap'd blocks at their full size, so a block whose pages are touched slowly (the
  clip's angle ring) grew RSS while every malloc figure stayed flat.

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


def _vmas() -> list[list[Any]]:
    """Every mapping with resident anonymous memory: [start, kB size, perms, name, kB anon,
    kB of the mapping just below it if that is a PROT_NONE guard]. Which mapping grows says
    what grows: [heap] (glibc main arena), a 64 MiB-aligned anonymous mapping (a glibc
    thread arena), a mapping right above a guard page (a thread stack), other anonymous
    mmaps (malloc's big blocks, Python's object arenas, library pools)."""
    out: list[list[Any]] = []
    cur: list[Any] | None = None
    prev_end, prev_perm, prev_size = 0, "", 0
    try:
        text = Path("/proc/self/smaps").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        head = line.split()
        if not head:
            continue
        if "-" in head[0] and not head[0].endswith(":"):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            guard = prev_size // 1024 if prev_end == lo and prev_perm.startswith("---") else 0
            cur = [hex(lo), (hi - lo) // 1024, head[1], head[5] if len(head) > 5 else "", 0, guard]
            prev_end, prev_perm, prev_size = hi, head[1], hi - lo
        elif head[0] == "Anonymous:" and cur is not None:
            cur[4] = int(head[1])
            if cur[4] > 0:
                out.append(cur)
    return out


def _pymalloc() -> dict[str, float]:
    """sys._debugmallocstats' arena lines (it writes to C stderr: fd 2 is borrowed)."""
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    out: dict[str, float] = {}
    for line in text.splitlines():
        key, _, val = line.partition("=")
        val = val.strip().replace(",", "")
        if not val.isdigit():
            continue
        if key.startswith("# arenas allocated current"):
            out["py_arenas"] = int(val)
        elif key.startswith("# bytes in allocated blocks"):
            out["py_used_mb"] = round(int(val) / (1 << 20), 1)
        elif key.startswith("# bytes in available blocks"):
            out["py_avail_mb"] = round(int(val) / (1 << 20), 1)
        elif key.startswith("# bytes lost to"):
            out["py_lost_mb"] = round(out.get("py_lost_mb", 0) + int(val) / (1 << 20), 1)
    return out


def _malloc_arenas() -> list[dict[str, int]]:
    """glibc malloc_info() per arena: kB the arena holds from the system, kB free in it."""
    import re
    import tempfile

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    except (OSError, AttributeError):
        return []
    with tempfile.NamedTemporaryFile(suffix=".xml") as tmp:
        fp = libc.fopen(tmp.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        xml = Path(tmp.name).read_text()
    arenas = []
    for m in re.finditer(r'<heap nr="(\d+)">(.*?)</heap>', xml, re.S):
        body = m.group(2)
        cur = re.search(r'<system type="current" size="(\d+)"', body)
        free = sum(
            int(x)
            for x in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', body)
        )
        arenas.append({"nr": int(m.group(1)), "sys_kb": int(cur.group(1)) // 1024 if cur else 0,
                       "free_kb": free // 1024})  # fmt: skip
    return arenas


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
                **_pymalloc(),
                "arenas": _malloc_arenas(),
                "vmas": _vmas(),
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
