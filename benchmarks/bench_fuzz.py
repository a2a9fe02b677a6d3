"""Fuzz area: the CI fuzz targets (tests/fuzz) run far longer, counting inputs per target.

`python -m benchmarks fuzz` (DGS_FUZZ_SECONDS per target, default 60; --quick: 10). Hypothesis
generates the inputs (corpus mutations and fresh ones, a new random seed per run); the property
is the same as in CI: only typed errors (DgsError) come out. A failure is reported with its
shrunk input and fails the area; the table lists inputs tried, how many ended in a typed
error (refused with one line) and which error types occurred.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _run_target(name: str, seconds: float) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, settings

    from tests.fuzz.strategies import STRATEGIES
    from tests.fuzz.targets import TARGETS

    target = TARGETS[name]()
    deadline = time.monotonic() + seconds
    failure = None
    rounds = 0
    t0 = time.perf_counter()
    while time.monotonic() < deadline and failure is None:
        rounds += 1

        @settings(
            max_examples=500,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(STRATEGIES[name]())
        def fuzz(data: Any) -> None:
            if time.monotonic() > deadline:
                return
            target(data)

        try:
            fuzz()
        except Exception as exc:
            failure = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-600:]
    took = time.perf_counter() - t0
    return {
        "name": name,
        "tried": target.tried,
        "typed": target.typed_errors,
        "seen": target.seen,
        "seconds": took,
        "failure": failure,
    }


def memory_section() -> str:
    """Peak memory of every hostile DICOM reproducer of issue 12 and of the largest real
    cine, measured in a child process (tests/acquisition/_memory_child.py)."""
    import json
    import subprocess
    import tempfile

    from edge_service.acquisition.dicomguard import DEFAULT_BUDGET
    from tests.acquisition import hostile as H
    from tests.acquisition.test_dicom_hostile import BIG_FRAMES, HOSTILE, big_frame

    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(make(Path(tmp) / f"{name}.dcm")) for name, make, _ in HOSTILE]
        paths.append(str(H.vendor("color3d_jpeg_baseline.dcm")))
        paths += [str(big_frame(Path(tmp) / f"{k}.dcm", k)) for k in BIG_FRAMES]
        names = [n for n, _, _ in HOSTILE] + [
            "real cine: color3d_jpeg_baseline (120 frames)",
            *BIG_FRAMES.values(),
        ]
        child = ROOT / "tests" / "acquisition" / "_memory_child.py"
        res = subprocess.run(
            [sys.executable, str(child), *paths], capture_output=True, text=True, timeout=900
        )
    if res.returncode != 0:
        raise RuntimeError(f"memory child failed: {res.stderr[-1000:]}")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    bound = DEFAULT_BUDGET.peak_bytes
    frame = DEFAULT_BUDGET.max_frame_bytes
    lines = [
        "## Peak memory on hostile DICOM inputs",
        "",
        f"Documented bound: 2 x the {frame >> 20} MiB frame budget = "
        f"{bound >> 20} MiB over the warmed-up baseline (edge_service/acquisition/dicomguard.py). "
        "Grey and RGB frames, uncompressed or RLE, are read straight into their array up to "
        f"{frame >> 20} MiB; frames that pydicom's codec plugins decode (their own buffers hold "
        f"~2.5-3.2x the frame) are limited to {DEFAULT_BUDGET.max_decoder_frame_bytes >> 20} MiB. "
        "`x frame budget` = RSS growth / the 64 MiB budget. "
        "`traced` = tracemalloc peak of that input (Python + numpy); `RSS growth` = peak "
        "resident set of that input over the resident set just before it (VmHWM, reset per input "
        "through /proc/self/clear_refs; includes the C decoders' buffers). "
        "The real cine decodes to 110 MB as a whole; lazily it peaks near one frame.",
        "",
        "| input | outcome | traced peak MiB | RSS growth MiB | x frame budget | within bound |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, r in zip(names, rows, strict=True):
        ok = r["traced_peak"] < bound and r["rss_growth"] < bound
        outcome = r["outcome"].replace("|", "/")
        if len(outcome) > 90:
            outcome = outcome[:87] + "..."
        lines.append(
            f"| {name} | {outcome} | {r['traced_peak'] / 2**20:.2f} | "
            f"{r['rss_growth'] / 2**20:.1f} | {max(r['rss_growth'], r['traced_peak']) / frame:.2f} | "
            f"{'yes' if ok else '**NO**'} |"
        )
    return "\n".join(lines) + "\n"


def run(quick: bool = False) -> str:
    import logging
    import warnings

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    logging.disable(logging.CRITICAL)  # pydicom logs every refused file at ERROR
    warnings.simplefilter("ignore")
    seconds = 10.0 if quick else float(os.environ.get("DGS_FUZZ_SECONDS", "60"))
    from tests.fuzz.targets import TARGETS

    rows = [_run_target(name, seconds) for name in TARGETS]
    lines = [
        "## Fuzz targets (tests/fuzz)",
        "",
        f"Each target fed hypothesis-generated inputs for ~{seconds:.0f} s (corpus mutations "
        "and fresh inputs). Property: only typed errors (`DgsError`) escape. "
        "CI runs the same targets for a bounded number of derandomized examples plus the "
        "committed corpus (tests/fuzz/corpus/).",
        "",
        "| target | inputs tried | inputs/s | refused with a typed error | error types | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["seen"].items())) or "-"
        result = "ok" if r["failure"] is None else f"**FAILED**: `{r['failure']}`"
        rate = r["tried"] / r["seconds"] if r["seconds"] else 0.0
        lines.append(
            f"| {r['name']} | {r['tried']} | {rate:.0f} | {r['typed']} | {kinds} | {result} |"
        )
    total = sum(r["tried"] for r in rows)
    lines += ["", f"Total inputs tried: {total}."]
    failed = [r for r in rows if r["failure"]]
    section = "\n".join(lines) + "\n\n" + memory_section()
    if failed:
        print(section, file=sys.stderr)
        raise RuntimeError(f"fuzz found {len(failed)} failing target(s): see the table")
    return section
