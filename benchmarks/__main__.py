"""Run every benchmarks/bench_*.py and write one Markdown table per area plus RESULTS.md.

Each module exposes `run(quick: bool = False) -> str` returning a Markdown section. They run
one after another in this process (the machine is shared and noisy: peers are always measured
side by side inside the same module, so ratios stay meaningful even when absolute times drift).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def discover() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("names", nargs="*", help=f"areas to run (default all: {', '.join(discover())})")
    ap.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    args = ap.parse_args(argv)
    names = args.names or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        print(f"benchmarks: unknown area(s) {unknown}; have {discover()}", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"benchmarks.bench_{name}")
            section = mod.run(quick=args.quick)
        except Exception:  # a broken benchmark must not hide the others' tables
            traceback.print_exc()
            failed.append(name)
            continue
        took = time.perf_counter() - t0
        footer = (
            f"\n_Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
            f"{platform.machine()} / Python {platform.python_version()}, "
            f"{'quick' if args.quick else 'full'} mode, {took:.0f} s._\n"
        )
        (RESULTS / f"{name}.md").write_text(section.rstrip() + "\n" + footer)
        print(section, flush=True)
    parts = [
        (RESULTS / f"{n}.md").read_text() for n in discover() if (RESULTS / f"{n}.md").exists()
    ]
    (RESULTS / "RESULTS.md").write_text("# Benchmark results\n\n" + "\n\n".join(parts))
    if failed:
        print(f"benchmarks: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
