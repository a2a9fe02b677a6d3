"""`dgs-clip calibrate`: guided neutral + functional sensor-to-segment calibration."""

from __future__ import annotations

import argparse
import json

from edge_service.clip.cli_support import CAL_NAMES, add_port_args, open_link
from edge_service.errors import DeviceError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "calibrate",
        help="run the neutral-pose and functional hip-flexion calibration on the clip",
        description=(
            "1) stand still in neutral (~3 s); 2) 3-4 slow leg swings forward and back "
            "(±30°, flexion first). The result is stored on the clip."
        ),
    )
    add_port_args(p)
    p.add_argument(
        "--neutral-s",
        type=float,
        default=3.0,
        metavar="S",
        help="neutral capture duration (default 3)",
    )
    p.add_argument(
        "--functional-s",
        type=float,
        default=8.0,
        metavar="S",
        help="functional swing capture duration (default 8)",
    )
    p.add_argument("--neutral-only", action="store_true", help="skip the functional step")
    p.add_argument("--yes", "-y", action="store_true", help="do not wait for Enter")
    p.set_defaults(func=run)


def _prompt(text: str, yes: bool) -> None:
    print(text, flush=True)
    if not yes:
        try:
            input("Press Enter to start... ")
        except EOFError:
            raise DeviceError("no terminal to confirm on; pass --yes") from None


def _show(result: str) -> None:
    if not result:
        return
    try:
        print(json.dumps(json.loads(result), indent=2))
    except ValueError:
        print(result)


def run(args: argparse.Namespace) -> int:
    if not (0 < args.neutral_s <= 60 and 0 < args.functional_s <= 60):
        raise DeviceError("calibration durations must be between 0 and 60 s")
    with open_link(args) as link:
        link.get_info()
        _prompt(f"Step 1: stand still, leg in neutral, for {args.neutral_s:g} s.", args.yes)
        _show(link.calibrate_neutral(args.neutral_s))
        print("neutral pose captured")
        if not args.neutral_only:
            _prompt(
                f"Step 2: for {args.functional_s:g} s, swing the leg slowly forward and back "
                "3-4 times (about ±30°, flexion first).",
                args.yes,
            )
            _show(link.calibrate_functional(args.functional_s))
            print("flexion axis captured")
        info = link.get_info()
    print(f"calibration on the clip: {CAL_NAMES.get(info.cal_state, info.cal_state)}")
    return 0
