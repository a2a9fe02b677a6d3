"""Shared pieces of the `dgs-clip info/monitor/calibrate` commands (no printing here)."""

from __future__ import annotations

import argparse

from dgsclip import protocol as P

from edge_service.clip.link import ClipLink
from edge_service.clip.settings import ClipLinkSettings

STATE_NAMES = {
    P.STATE_IDLE: "idle",
    P.STATE_STREAMING: "streaming",
    P.STATE_CALIBRATING: "calibrating",
    P.STATE_ERROR: "error",
}
CAL_NAMES = {P.CAL_NONE: "none", P.CAL_NEUTRAL: "neutral only", P.CAL_FULL: "neutral + functional"}


def add_port_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--port",
        "-p",
        help="serial port of the clip (default: auto-detect by USB id and hello handshake)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds to wait for each command reply (default 0.5)",
    )


def open_link(args: argparse.Namespace, **kw: object) -> ClipLink:
    """An unopened link for `with open_link(args) as link:`."""
    settings = ClipLinkSettings()
    if args.timeout is not None:
        settings = settings.model_copy(update={"command_timeout_s": args.timeout})
    return ClipLink(settings, port=args.port, **kw)  # type: ignore[arg-type]
