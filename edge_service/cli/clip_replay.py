"""`dgs-clip replay`: the firmware's own fusion, calibration and hip-angle code on a RAW.csv."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from dgsclip.pipeline import MODE_FUNCTIONAL, MODE_NEUTRAL, MODE_RUN, Pipeline

from edge_service.errors import InputError

THIGH = ("t_s", "gx", "gy", "gz", "ax", "ay", "az")
PELVIS = ("pgx", "pgy", "pgz", "pax", "pay", "paz")


def _window(text: str, name: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(":"))
    except ValueError:
        raise InputError(f"--{name} must be T0:T1 in seconds, got {text!r}") from None
    if not b > a:
        raise InputError(f"--{name} {text}: T1 must be after T0")
    return a, b


def read_raw(path: Path) -> tuple[list[list[float]], bool]:
    """Rows of floats in THIGH (+ PELVIS) column order; raises InputError on bad files."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in THIGH if c not in header]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(missing)} (need {','.join(THIGH)})"
            )
        pelvis = all(c in header for c in PELVIS)
        cols = [header.index(c) for c in THIGH + (PELVIS if pelvis else ())]
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                vals = [float(row[i]) for i in cols]
            except (ValueError, IndexError):
                raise InputError(
                    f"{path}:{lineno}: not a number row: {','.join(row)[:80]}"
                ) from None
            if not all(math.isfinite(v) for v in vals):
                raise InputError(f"{path}:{lineno}: non-finite value")
            rows.append(vals)
    if len(rows) < 2:
        raise InputError(f"{path}: no samples")
    return rows, pelvis


def replay(
    rows: list[list[float]],
    side: str,
    neutral: tuple[float, float],
    functional: tuple[float, float],
    pelvis: bool = False,
) -> list[dict[str, float]]:
    """Angles per row after calibrating on the two windows (firmware code, host time dt)."""
    for (t0, t1), name in ((neutral, "neutral"), (functional, "functional")):
        if not any(t0 <= r[0] < t1 for r in rows):
            raise InputError(
                f"--{name} {t0:g}:{t1:g} contains no samples (data spans {rows[0][0]:g}..{rows[-1][0]:g} s)"
            )
    pipe = Pipeline(side, pelvis)
    out: list[dict[str, float]] = []
    t_prev = None
    windows = [(neutral, MODE_NEUTRAL), (functional, MODE_FUNCTIONAL)]
    started: set[int] = set()
    for row in rows:
        t = row[0]
        for (t0, t1), kind in windows:
            if pipe.mode == MODE_RUN and kind not in started and t0 <= t < t1:
                n = sum(1 for r in rows if t0 <= r[0] < t1)
                pipe.begin_calibration(kind, n)
                started.add(kind)
        dt = 0.0 if t_prev is None else t - t_prev
        if dt < 0:
            raise InputError(f"time goes backwards at t_s={t}")
        t_prev = t
        g, a = row[1:4], row[4:7]
        pg, pa = (row[7:10], row[10:13]) if pelvis else (None, None)
        pipe.update(g, a, dt, pg, pa)
        if pipe.cal_done is not None:
            kind, err = pipe.cal_done
            pipe.cal_done = None
            if err:
                raise InputError(f"calibration failed: {err}")
        ang = pipe.angles
        out.append(
            {
                "t": t,
                "flexion_deg": round(float(ang[0]), 3),
                "adduction_deg": round(float(ang[1]), 3),
                "rotation_deg": round(float(ang[2]), 3),
            }
        )
    if not pipe.cal.calibrated:
        raise InputError("calibration windows contain no samples: check --neutral/--functional")
    return out


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay", help="run the firmware fusion/calibration/hip angles on a raw IMU CSV"
    )
    p.add_argument("raw", type=Path, help="RAW.csv: t_s,gx,gy,gz,ax,ay,az [,pgx..paz] (deg/s, g)")
    p.add_argument("--out", type=Path, required=True, help="angles.jsonl to write")
    p.add_argument("--side", choices=("left", "right"), required=True)
    p.add_argument("--neutral", required=True, help="T0:T1 seconds standing still in neutral")
    p.add_argument("--functional", required=True, help="T2:T3 seconds of flexion swings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    neutral = _window(args.neutral, "neutral")
    functional = _window(args.functional, "functional")
    rows, pelvis = read_raw(args.raw)
    out = replay(rows, args.side, neutral, functional, pelvis)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with tmp.open("w") as f:
        for rec in out:
            f.write(json.dumps(rec) + "\n")
    tmp.replace(args.out)
    print(f"{len(out)} samples -> {args.out}")
    return 0
