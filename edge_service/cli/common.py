"""Shared CLI plumbing: subcommand registry, logging set-up, one-line errors."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from edge_service import __version__
from edge_service.errors import DgsError

Runner = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One clear line instead of the usage dump; `--help` still shows the usage.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str, description: str, modules: Sequence[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in modules:
        mod = importlib.import_module(name)
        mod.register(sub)
    return parser


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        # pydicom logs every decoder failure at ERROR with a traceback before raising; we
        # turn the raise into one clear line, so its log is only useful when debugging.
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def run_main(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    func: Runner = args.func
    try:
        return int(func(args) or 0)
    except DgsError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except ValidationError as exc:
        # Settings built from flags: name the field and the problem, on one line.
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        print(f"{parser.prog}: error: {loc}: {err['msg']}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"{parser.prog}: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
