"""Child process: peak memory of opening and decoding DICOM inputs, one JSON line per input.

Run in its own process so ru_maxrss (the kernel's high-water mark) starts clean. A warm-up
file of each codec is decoded first so codec imports do not count against the inputs.
Per input: tracemalloc peak (Python + numpy allocations) and the peak resident set growth over
the resident set just before it (everything, including C decoders' buffers): the kernel's
high-water mark (VmHWM) is reset before each input through /proc/self/clear_refs, so each
value is that input's own peak. ru_maxrss is not used: Linux carries it across execve from
the parent, so a large parent hides the child's growth.
"""

from __future__ import annotations

import json
import sys
import tracemalloc

from pydicom.data import get_testdata_file

from edge_service.acquisition.dicom import DicomSource
from edge_service.errors import InputError


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> int:
    """Reset the high-water mark to the current RSS; returns the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


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
    tracemalloc.start()
    for p in paths:
        tracemalloc.reset_peak()
        before = _reset_peak()
        outcome, _ = consume(p)
        peak = tracemalloc.get_traced_memory()[1]
        growth = _status_kib("VmHWM") - before
        line = {"path": p, "outcome": outcome, "traced_peak": peak, "rss_growth": growth}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
