"""`dgs-edge analyze SESSION_DIR [--broker URL]`: result.json + report.html for a recording."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "analyze",
        help="analyse a recorded session: result.json + report.html",
        description="Run the detector, the gliding tracker and manoeuvre detection over a "
        "session recording; writes result.json (dgs.session-result/1) and report.html into it.",
    )
    p.add_argument("session_dir", metavar="SESSION_DIR", help="session recording directory")
    p.add_argument("--broker", metavar="URL", help="also publish the result (mqtt://host:port)")
    p.add_argument("--site", default=None, help="MQTT site slug (with --broker)")
    p.add_argument("--device", default=None, help="MQTT device slug (with --broker)")
    p.add_argument(
        "--timeout-s",
        type=float,
        default=15.0,
        help="how long to wait for the broker's acknowledgement (default 15)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress, only the summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_service.analysis.session import analyze_session

    def progress(done: int, total: int) -> None:
        if not args.quiet and (done % 25 == 0 or done == total):
            print(f"\r  frame {done}/{total}", end="", file=sys.stderr, flush=True)

    d = Path(args.session_dir)
    result = analyze_session(d, progress=progress)
    if not args.quiet:
        print(file=sys.stderr)
    for line in result["findings"]:
        print(line)
    print(f"wrote {d / 'result.json'} and {d / 'report.html'}")
    if args.broker:
        from edge_service.analysis.publish import publish_result

        publish_result(result, d, args.broker, args.site, args.device, args.timeout_s)
        print(f"published result of session {result['session_id']} to {args.broker}")
    return 0
