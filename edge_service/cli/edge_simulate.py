"""`dgs-edge simulate OUT_DIR`: write a phantom session recording (+ truth.json)."""

from __future__ import annotations

import argparse
import time

from edge_service.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "simulate",
        help="write a simulated (phantom) session recording",
        description="Simulate a deep-gluteal ultrasound session with the virtual clip and "
        "write a complete recording (session.json, cine.dcm, frames.csv, imu.jsonl, truth.json).",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="new directory for the recording")
    p.add_argument("--seed", type=int, default=0, help="patient/probe seed (default 0)")
    p.add_argument("--side", choices=["left", "right"], default="left")
    p.add_argument("--nerve", choices=["normal", "swollen"], default="swollen")
    p.add_argument("--calcification", choices=["yes", "no"], default="yes")
    p.add_argument("--gliding", choices=["free", "restricted"], default="restricted")
    p.add_argument("--manoeuvre", choices=["fair", "piriformis"], default="fair")
    p.add_argument("--fps", type=float, default=20.0, help="frame rate (default 20)")
    p.add_argument("--save-masks", action="store_true", help="also write masks.npz")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_service.phantom import simulate_session

    if not 1.0 <= args.fps <= 60.0:
        raise InputError(f"--fps must be between 1 and 60, got {args.fps}")
    t = time.perf_counter()
    out = simulate_session(
        args.out_dir,
        seed=args.seed,
        side=args.side,
        nerve=args.nerve,
        calcification=args.calcification,
        gliding=args.gliding,
        manoeuvre=args.manoeuvre,
        fps=args.fps,
        save_masks=args.save_masks,
    )
    print(f"wrote {out} in {time.perf_counter() - t:.1f} s")
    return 0
