"""The hospital branch of `dgs-edge demo` (--worklist / --pacs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from edge_service.demo import DemoOptions
from edge_service.errors import ConfigError, DgsError
from edge_service.pipeline import SessionProgress


def run_hospital(args: argparse.Namespace, out: Path) -> int:
    from pydantic import ValidationError

    from edge_service.dicomnet.urls import parse_destination, parse_dicom_url
    from edge_service.integration.demo import run_hospital_demo
    from edge_service.integration.fhirsettings import FhirSettings

    console = Console()
    try:
        if args.worklist:
            parse_dicom_url(args.worklist)
        for d in args.pacs:
            parse_destination(d)
        if getattr(args, "fhir", None):
            FhirSettings(url=args.fhir)
    except ValidationError as exc:
        print(f"error: --fhir: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base = DemoOptions(out_dir=out, broker_url=args.broker, nerve=args.nerve,
                       calcification=args.calcification == "yes", gliding=args.gliding,
                       manoeuvre=args.manoeuvre, fps=args.fps, seed=args.seed)  # fmt: skip

    def line(side: str, p: SessionProgress) -> None:
        if p.frames and p.frames % 40 == 0:
            console.print(f"  {side}: {p.phase}, {p.frames} frames")

    try:
        res = run_hospital_demo(base, worklist_url=args.worklist, destinations=args.pacs,
                                uid_root=args.uid_root, progress=line,
                                fhir_url=getattr(args, "fhir", None))  # fmt: skip
    except DgsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    o = res.order
    console.print(f"order {o.accession_number} ({o.requested_procedure or 'no procedure'}), "
                  f"scheduled {o.scheduled_datetime or '—'}: both sides recorded")  # fmt: skip
    for side, r in res.sides.items():
        d = r["dicom"]
        console.print(f"  {side}: study {d['study_instance_uid']}, cine {d['cine']['sop_instance_uid']}, "
                      f"SR {d['sr']['sop_instance_uid']}, PDF {d['pdf']['sop_instance_uid']}")  # fmt: skip
    for dest, st in res.destinations.items():
        console.print(f"  {dest}: sent {st['sent']}, pending {st['pending']}, parked {st['parked']}"
                      + (f" — {st['last_error']}" if st["last_error"] else ""))  # fmt: skip
    console.print(f"Results in [bold]{out}[/]")
    return 0 if res.delivered and all(st["parked"] == 0 for st in res.destinations.values()) else 1
