"""`dgs-clip`: flash, talk to and replay the wearable IMU clip."""

from __future__ import annotations

from collections.abc import Sequence

from edge_service.cli.common import build_parser, run_main

COMMANDS = [
    "edge_service.cli.clip_flash",
    "edge_service.cli.clip_info",
    "edge_service.cli.clip_monitor",
    "edge_service.cli.clip_calibrate",
    "edge_service.cli.clip_virtual",
    "edge_service.cli.clip_replay",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        "dgs-clip", "Flash, monitor, calibrate and replay the IMU clip.", COMMANDS
    )
    return run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
