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


def no_answer_hint(link: ClipLink) -> str:
    """Why `info` got no reply, and what to do, from what the port did say."""
    port = link.port
    text = " ".join(link.decoder.stray_text)
    if link.decoder.stats.frames:
        return f"the clip on {port} streams but does not answer commands: reset it and retry"
    if ">>>" in text or "MicroPython" in text or link.stats.bytes_in:
        return (
            f"{port} answers, but not with dgs-clip frames: MicroPython is there without the "
            f"clip firmware running. Install it with `dgs-clip flash --port {port}` (if it is "
            "installed, a `norun` file or an error in main.py keeps it at the REPL)"
        )
    return (
        f"nothing answered on {port}: is it the clip's port (omit --port to auto-detect, or "
        f"check the cable)? A board without the firmware stays silent too: "
        f"`dgs-clip flash --port {port}` installs it"
    )


def open_link(args: argparse.Namespace, **kw: object) -> ClipLink:
    """An unopened link for `with open_link(args) as link:`."""
    settings = ClipLinkSettings()
    if args.timeout is not None:
        settings = settings.model_copy(update={"command_timeout_s": args.timeout})
    return ClipLink(settings, port=args.port, **kw)  # type: ignore[arg-type]
