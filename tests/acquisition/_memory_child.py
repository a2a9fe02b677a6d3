"""Child process: peak memory of opening and decoding DICOM inputs, one JSON line per input.

Run in its own process so ru_maxrss (the kernel's high-water mark) starts clean. A warm-up
file of each codec is decoded first so codec imports do not count against the inputs.
Per input: tracemalloc peak (Python + numpy allocations) and the growth of ru_maxrss over the
warmed-up baseline (everything, including C decoders' buffers); the latter is cumulative, so
each value bounds that input and every input before it.
"""

from __future__ import annotations

import json
import resource
import sys
import tracemalloc

from pydicom.data import get_testdata_file

from edge_service.acquisition.dicom import DicomSource
from edge_service.errors import InputError


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def consume(path: str) -> tuple[str, int]:
    try:
        src = DicomSource(path)
        n = sum(1 for _ in src)
        return f"ok: {n} frames", n
    except InputError as exc:
        return f"InputError: {str(exc).replace(path, '<file>')}", 0


def main(paths: list[str]) -> None:
    for warm in ("OBXXXX1A_rle.dcm", "US1_J2KR.dcm", "examples_ybr_color.dcm", "OBXXXX1A.dcm"):
        consume(str(get_testdata_file(warm)))
    base = _rss()
    tracemalloc.start()
    for p in paths:
        tracemalloc.reset_peak()
        outcome, _ = consume(p)
        peak = tracemalloc.get_traced_memory()[1]
        line = {"path": p, "outcome": outcome, "traced_peak": peak, "rss_growth": _rss() - base}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
