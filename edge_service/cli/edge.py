"""`dgs-edge`: the appliance service and its tools."""

from __future__ import annotations

from collections.abc import Sequence

from edge_service.cli.common import build_parser, run_main

# One module per subcommand (each exposes register(subparsers)); owned by the area it serves.
COMMANDS = [
    "edge_service.cli.edge_demo",
    "edge_service.cli.edge_run",
    "edge_service.cli.edge_recover",
    "edge_service.cli.edge_correct",
    "edge_service.cli.edge_simulate",
    "edge_service.cli.edge_analyze",
    "edge_service.cli.edge_compare",
    "edge_service.cli.edge_inspect",
    "edge_service.cli.edge_detect",
    "edge_service.cli.edge_subscribe",
    "edge_service.workstation.cli",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        "dgs-edge", "Deep gluteal space scanning appliance: acquire, analyse, publish.", COMMANDS
    )
    return run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
