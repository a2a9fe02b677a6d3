"""`dgs-edge compare A B`: contralateral side, or baseline vs follow-up."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "compare",
        help="compare two analysed sessions (other side, or baseline vs follow-up)",
        description="Compare two analysed sessions (session directories or result.json files). "
        "Different sides: AP ratio, CSA difference vs the 16 mm² minimal detectable "
        "difference, gliding ratio. Same side: change from the earlier to the later visit.",
    )
    p.add_argument("a", metavar="A", help="session directory or result.json")
    p.add_argument("b", metavar="B", help="session directory or result.json")
    p.add_argument(
        "--mode",
        choices=["auto", "contralateral", "followup"],
        default="auto",
        help="auto: contralateral when the sides differ, else follow-up",
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--force", action="store_true",
                   help="compare even when A and B belong to different patients")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_service.analysis.compare import compare
    from edge_service.analysis.result import read_result
    from edge_service.integration.patients import check_same_patient

    ra, rb = read_result(args.a), read_result(args.b)
    check_same_patient((args.a, ra), (args.b, rb), args.force)
    doc = compare(ra, rb, args.mode)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(f"{doc['mode']} comparison")
        for line in doc["summary"]:
            print(f"  {line}")
    return 0
