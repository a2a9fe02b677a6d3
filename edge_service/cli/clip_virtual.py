"""`dgs-clip virtual`: a virtual clip on a new pty (firmware app + simulated IMU)."""

from __future__ import annotations

import argparse
import sys
import threading

from edge_service.sim.motion import manoeuvre
from edge_service.virtualclip import start_virtual_clip


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "virtual",
        help="run a virtual clip on a new pty (prints the pty path first; Ctrl-C stops)",
    )
    p.add_argument("--side", choices=("left", "right"), default="left")
    p.add_argument(
        "--manoeuvre", choices=("fair", "piriformis", "neutral", "calibration"), default="fair"
    )
    p.add_argument("--rate", type=int, default=100, help="sample rate in Hz (50-200)")
    p.add_argument("--seed", type=int, default=0, help="simulation seed (mounting, noise)")
    p.add_argument("--imu", choices=("mpu6050", "lsm6ds"), default="mpu6050")
    p.add_argument("--pelvis", action="store_true", help="simulate a second IMU on the pelvis")
    p.add_argument("--autostart", action="store_true", help="stream without waiting for start")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 50 <= args.rate <= 200:
        from edge_service.errors import ConfigError

        raise ConfigError(f"--rate must be 50..200 Hz, got {args.rate}")
    clip = start_virtual_clip(
        manoeuvre(args.manoeuvre),
        side=args.side,
        rate_hz=args.rate,
        seed=args.seed,
        pelvis=args.pelvis,
        imu=args.imu,
        autostart=args.autostart,
    )
    print(clip.port, flush=True)
    print(
        f"virtual clip ({args.side}, {args.manoeuvre}, {args.rate} Hz, calibrated): "
        "open the path above; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        threading.Event().wait()  # until Ctrl-C / SIGTERM
    finally:
        clip.stop()
    return 0
