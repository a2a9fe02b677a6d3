"""Keep a long-running service's resident memory flat (glibc malloc + numpy on Linux).

Measured in the soak benchmark (python -m benchmarks soak, DGS_SOAK_MEMDIAG): the Python
heap and malloc's in-use bytes stay flat from session to session, yet RSS crept up, because

1. glibc's mmap threshold is dynamic: after a large mmap'd block (a frame stack, an ONNX
   tensor) is freed, the threshold rises to its size (up to 32 MiB), so later frame-sized
   arrays come from the brk heap instead of mmap and are kept there when freed,
   fragmented between long-lived small objects (malloc held ~130 MiB free after 2 min);
2. numpy marks arrays >= 4 MiB MADV_HUGEPAGE; on the heap that flags the heap's mapping,
   and khugepaged then collapses it into 2 MiB pages, making its free holes resident again
   (AnonHugePages grew 76 -> 116 MiB in 90 s).

A fixed threshold (which also turns the dynamic one off) sends every block >= 256 KiB to
mmap, returned to the kernel on free; numpy's hugepage advice is switched off; and
`trim()` after each session hands free heap pages back. The systemd unit sets the same
through MALLOC_MMAP_THRESHOLD_ / NUMPY_MADVISE_HUGEPAGE, which also covers allocations made
before this module runs. Elsewhere (not glibc) these are no-ops. Cost: every block >= 256 KiB
is a fresh mmap (page faults); a session's analysis took 1.06-1.29x as long, measured side
by side on the shared development machine.

Not here: buffers that are allocated once and filled slowly (the clip's angle ring) are
written at allocation where they are made (edge_service/clip/timeline.py), else their pages
become resident one by one and RSS rises for as long as they fill.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 256 * 1024


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  (glibc only: musl and others lack these)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def configure() -> dict[str, object]:
    """Apply the settings above once at service start; returns what was applied."""
    applied: dict[str, object] = {}
    libc = _libc()
    if libc is not None and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        applied["mmap_threshold"] = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    import numpy as np

    core = getattr(np, "_core", None) or getattr(np, "core", None)  # numpy 2 / 1.26
    setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if setter is not None:
        setter(False)
        applied["numpy_hugepage"] = False
    log.debug("memory settings: %s", applied)
    return applied


def trim() -> bool:
    """Return free heap memory to the kernel (after a session); True when some was."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
