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
    section = "\n".join(lines) + "\n"
    if failed:
        print(section, file=sys.stderr)
        raise RuntimeError(f"fuzz found {len(failed)} failing target(s): see the table")
    return section
