"""`demo` subcommand (placeholder until its issue lands: it says so and exits non-zero)."""

from __future__ import annotations

import argparse

from edge_service.errors import DgsError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="(not available yet)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise DgsError("'demo' is not available in this build yet")
