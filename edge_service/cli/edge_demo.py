"""`dgs-edge demo`: run the whole chain on embedded defaults (no hardware, no external broker)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from edge_service.pipeline import SessionProgress


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo",
        help="run the whole chain on a phantom patient and a virtual clip",
        description=(
            "Simulated ultrasound session (phantom frames) -> ONNX detector -> measurements in "
            "mm, virtual IMU clip over a real pty -> clock sync -> correlation -> MQTT "
            "(embedded broker unless --broker) -> recording, result.json and report.html."
        ),
    )
    p.add_argument("--out", type=Path, help="output folder (default: ./dgs-demo-YYYYmmdd-HHMMSS)")
    p.add_argument("--broker", help="publish to this broker (mqtt://HOST:PORT) instead")
    p.add_argument("--side", choices=["left", "right"], default="left")
    p.add_argument("--nerve", choices=["normal", "swollen"], default="swollen")
    p.add_argument("--calcification", choices=["yes", "no"], default="yes")
    p.add_argument("--gliding", choices=["free", "restricted"], default="restricted")
    p.add_argument("--manoeuvre", choices=["fair", "piriformis"], default="fair")
    p.add_argument("--fps", type=float, default=8.0, help="phantom frame rate (default 8)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve the web workstation on loopback instead (phantom probe, virtual clip, "
        "embedded broker) until stopped; recordings under --out",
    )
    p.add_argument("--port", type=int, default=8080, help="workstation port with --serve")
    p.add_argument(
        "--protocol",
        choices=["exam", "fair", "piriformis", "neutral", "injection"],
        help="with --serve: the protocol the page opens with (injection = procedure mode, "
        "needle guidance; docs/procedure.md)",
    )
    p.add_argument(
        "--needle",
        choices=["procedure", "intraneural", "reflector", "none"],
        default="procedure",
        help="with --serve, protocol injection: the simulated needle session (default: a "
        "whole procedure; intraneural: an approach into the nerve, to see the alarms)",
    )
    # Hospital integration (edge_service/integration/demo.py): scan the first worklist order
    # on both sides and send cine, SR and PDF of each side to the PACS.
    p.add_argument("--worklist", metavar="dicom://AET@HOST:PORT", help="modality worklist SCP")
    p.add_argument("--pacs", action="append", default=[], metavar="URL",
                   help="destination dicom://AET@HOST:PORT or dicomweb+http://HOST:PORT/PATH "
                   "(repeatable)")  # fmt: skip
    p.add_argument("--uid-root", default="2.25", help="UID root for new UIDs (default 2.25)")
    p.add_argument("--fhir", metavar="http://HOST:PORT/PATH",
                   help="with --worklist/--pacs: also POST each side's FHIR bundle there")  # fmt: skip
    p.add_argument(
        "--state-dir",
        type=Path,
        help="outbox and unfinished-session list (default: $XDG_STATE_HOME/dgs-edge/demo); "
        "sessions an earlier demo left unfinished are delivered first",
    )
    p.set_defaults(func=run)


def _fmt(v: Any, unit: str = "", nd: int = 1) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return f"{v:.{nd}f}{unit}"
    return str(v)


def _get(d: dict[str, Any], path: str) -> Any:
    cur: Any = d
    for k in path.split("."):
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def summary_table(result: dict[str, Any], truth: dict[str, Any]) -> Table:
    t = Table(title="Session result (phantom truth alongside)")
    t.add_column("finding")
    t.add_column("measured", justify="right")
    t.add_column("truth", justify="right")
    g = truth.get("gliding", {})
    rows = [
        ("nerve AP diameter", "nerve.ap_diameter_mm", "nerve.ap_mm", " mm"),
        ("nerve width", "nerve.width_mm", "nerve.width_mm", " mm"),
        ("nerve CSA", "nerve.csa_mm2", "nerve.csa_mm2", " mm²"),
        ("fascicular index", "nerve.fascicular_index", None, ""),
        ("calcification", "calcification.present", "calcification.present", ""),
        ("calcification long axis", "calcification.long_axis_mm", "calcification.long_axis_mm", " mm"),
        ("calcification thickness", "calcification.thickness_mm", "calcification.thickness_mm", " mm"),
        ("nerve–calcification distance", "calcification.nerve_distance_mm", "calcification.nerve_distance_mm", " mm"),
        ("gliding excursion", "gliding.excursion_mm", None, " mm"),
        ("gliding per 10° IR", "gliding.per_10deg_ir_mm", "gliding.per_10deg_ir_mm", " mm"),
        ("gliding restricted", "gliding.restricted", "gliding.restricted", ""),
    ]  # fmt: skip
    for label, rpath, tpath, unit in rows:
        tv = _get(truth, tpath) if tpath else None
        t.add_row(label, _fmt(_get(result, rpath), unit, 2), _fmt(tv, unit, 2))
    for m in result.get("maneuvers", []) or []:
        peaks = (
            m.get("peak_flexion_deg"),
            m.get("peak_adduction_deg"),
            m.get("peak_internal_rotation_deg"),
        )
        if None not in peaks:
            k = (g.get("k_flex_mm_per_deg"), g.get("k_add_mm_per_deg"), g.get("k_ir_mm_per_deg"))
            exp = sum(a * b for a, b in zip(peaks, k, strict=True)) if None not in k else None
        else:
            exp = None
        t.add_row(
            f"{m.get('name')} {m.get('start_t', 0) - result.get('started_t', 0):.0f} s: peak "
            + "/".join(_fmt(v, "°", 0) for v in peaks)
            + " excursion",
            _fmt(m.get("excursion_mm"), " mm", 2),
            _fmt(exp, " mm", 2),
        )
    return t


def run(args: argparse.Namespace) -> int:
    from edge_service.demo import DemoOptions, run_demo

    console = Console()
    out = args.out or Path.cwd() / time.strftime("dgs-demo-%Y%m%d-%H%M%S")
    if args.serve:
        from edge_service.workstation.cli import serve_demo_cli

        return serve_demo_cli(
            out, args.port, args.fps, args.seed, protocol=args.protocol, needle_kind=args.needle
        )
    if args.worklist or args.pacs:
        from edge_service.cli.edge_demo_hospital import run_hospital

        return run_hospital(args, out)
    opts = DemoOptions(
        out_dir=out,
        broker_url=args.broker,
        side=args.side,
        nerve=args.nerve,
        calcification=args.calcification == "yes",
        gliding=args.gliding,
        manoeuvre=args.manoeuvre,
        fps=args.fps,
        seed=args.seed,
        state_dir=args.state_dir,
    )
    console.print(
        f"[bold]dgs-edge demo[/]: phantom {args.side} side, {args.nerve} nerve, "
        f"calcification {args.calcification}, {args.gliding} gliding, {args.manoeuvre}; "
        f"broker {args.broker or 'embedded'}"
    )
    start = time.monotonic()

    def line(p: SessionProgress) -> str:
        ang = (
            "angles unknown"
            if p.last_angles is None
            else "flex {:5.1f}° add {:5.1f}° IR {:5.1f}°".format(*p.last_angles)
        )
        ap = "—" if p.last_ap_mm is None else f"{p.last_ap_mm:4.1f} mm"
        return (
            f"[{time.monotonic() - start:5.1f} s] {p.phase}: frames {p.frames} "
            f"(nerve found {p.frames_with_nerve}), clip samples {p.imu_samples}, "
            f"nerve AP {ap}, {ang}"
        )

    with Live(console=console, refresh_per_second=4, transient=False) as live:
        outcome = run_demo(opts, progress=lambda p: live.update(line(p)))
    rec = outcome.recovered
    if rec.published or rec.parked or rec.waiting:
        console.print(f"Earlier demo sessions left unfinished: {rec.summary()}")
    console.print(summary_table(outcome.result, outcome.truth))
    msgs = ", ".join(f"{k} ×{n}" for k, n in sorted(outcome.messages.items())) or "none"
    console.print(f"MQTT messages received by a subscriber on {outcome.broker}: {msgs}")
    console.print(f"Results in [bold]{outcome.out_dir}[/]:")
    for name in ("result.json", "report.html", "session.json", "cine.dcm", "imu.jsonl"):
        console.print(f"  {outcome.out_dir / name}")
    return 0
