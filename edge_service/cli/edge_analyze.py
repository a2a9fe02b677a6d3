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
        "session recording; writes result.json (dgs.session-result/1) and report.html into it. "
        "A recording of protocol `injection` gets the procedure analysis instead "
        "(dgs.procedure-result/1: needle, alarms, injections) with its key frames.",
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
    p.add_argument(
        "--needle",
        choices=("learned", "classical"),
        default="learned",
        help="needle locator for an injection recording (default: learned, the shipped model)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress, only the summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_service.analysis.session import analyze_session

    def progress(done: int, total: int) -> None:
        if not args.quiet and (done % 25 == 0 or done == total):
            print(f"\r  frame {done}/{total}", end="", file=sys.stderr, flush=True)

    d = Path(args.session_dir)
    from edge_service.recording.meta import read_meta

    meta_file = d / "session.json"  # absent/unreadable: analyze_session says what is wrong
    if meta_file.is_file() and read_meta(meta_file).protocol == "injection":
        return _procedure(args, d)
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


def _procedure(args: argparse.Namespace, d: Path) -> int:
    """The injection recording's offline pass: the same ProcedureAnalyzer as the live page."""
    from edge_service.detector.detector import Detector
    from edge_service.needle.guide import make_locator
    from edge_service.procedure.offline import analyze_procedure

    res, _, _ = analyze_procedure(d, Detector.load(), make_locator(args.needle))
    n = res["needle"]
    dist = n["min_nerve_distance_mm"]
    print(
        f"{len(res['injections'])} injection(s), about {res['total_volume_ml_est'] or 0:g} mL, "
        f"{res['findings']['injections_on_target']} on target; "
        f"closest tip-nerve distance {'n/a' if dist is None else f'{dist:g} mm'}; "
        f"alarms {res['alarm_counts'] or 'none'}"
    )
    if res["findings"]["intraneural_risk"]:
        print("intraneural risk: the tip reached or was stopped at the nerve")
    print(f"wrote {d / 'result.json'} and {d / 'report.html'}")
    if args.broker:
        from edge_service.analysis.publish import publish_result

        publish_result(
            res, d, args.broker, args.site, args.device, args.timeout_s, kind="procedure"
        )
        print(f"published procedure result of session {res['session_id']} to {args.broker}")
    return 0
