"""`dgs-edge correct`: a published session re-analysed or relabelled as result version n+1,
published (new msg_id, `supersedes`), sent to PACS as a new SR + PDF and to FHIR as an
update (`status: amended`). Logic: edge_service/integration/corrections.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_service.config import load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "correct",
        help="correct a published session: result version n+1 to MQTT, PACS and FHIR",
        description=(
            "Re-analyse a published session (e.g. after a model update) and/or relabel its "
            "side (re-analysed, since the side sets the image direction). The new result is "
            "version n+1 with a new msg_id and `supersedes` naming the one it corrects; the "
            "earlier version stays as result-vN.json. With [dicom] destinations a new SR "
            "(naming its predecessor) and PDF are sent; with [fhir] url the bundle updates "
            "what was filed (status amended). Uses the service's state dir, so the service "
            "must be stopped (or use the workstation's Correct button)."
        ),
    )
    p.add_argument("session", help="session folder, or its id / folder name under recordings_dir")
    p.add_argument("--config", type=Path, required=True, help="the service's TOML config")
    p.add_argument("--side", choices=("left", "right"), help="the corrected side")
    p.add_argument(
        "--reanalyse", action="store_true", help="analyse again (implied by a new --side)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for broker, PACS and FHIR to confirm (default 60)",
    )
    p.set_defaults(func=run)


def _find(session: str, recordings_dir: Path) -> Path:
    from edge_service.errors import InputError
    from edge_service.recovery import session_dirs

    p = Path(session)
    if (p / "session.json").is_file():
        return p
    for d in session_dirs(recordings_dir):
        if d.name == session or d.name.endswith(f"-{session}"):
            return d
    raise InputError(f"{session}: no such session folder (nor id under {recordings_dir})")


def _published(path: Path) -> bool:
    from edge_service.recovery import DELIVERY

    if (path / DELIVERY).exists():
        return True
    try:
        meta = json.loads((path / "session.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    ws = (meta.get("extra") or {}).get("workstation") or {}
    return bool(ws.get("published"))


def run(args: argparse.Namespace) -> int:
    from edge_service.errors import InputError

    cfg = load_config(args.config)
    path = _find(args.session, cfg.session.recordings_dir)
    if not _published(path):
        raise InputError(
            f"{path.name} is not published yet: relabel it on the workstation, or let "
            "`dgs-edge recover` publish it first"
        )
    if args.side is None and not args.reanalyse:
        raise InputError("nothing to correct: give --side and/or --reanalyse")
    from edge_service.recording.meta import read_meta

    if args.side == read_meta(path / "session.json").side and not args.reanalyse:
        raise InputError(f"{path.name} is already {args.side} (add --reanalyse to analyse again)")
    from edge_service.analysis.session import analyze_session
    from edge_service.integration.corrections import correct_session
    from edge_service.preflight import require_preflight
    from edge_service.service import Service

    require_preflight(cfg, check_model=False)
    svc = Service(cfg, mode="correct")
    try:
        svc.open()
        full, msg_id = correct_session(
            path,
            site=cfg.mqtt.site,
            device=cfg.mqtt.device,
            settings=cfg.dicom,
            delivery=svc.delivery,
            side=args.side,
            reanalyse=lambda p: analyze_session(p, detector=svc.detector, settings=cfg.analysis),
            publisher=svc.pub,
        )
        left = svc.wait_delivered(args.timeout)
        sent = svc.delivery.drain(args.timeout) if svc.delivery is not None else True
        rows = svc.delivery.items(str(full["session_id"])) if svc.delivery is not None else []
    finally:
        svc.close()
    print(
        f"{path.name}: version {full['version']} (side {full.get('side')}), msg_id {msg_id}, "
        f"supersedes {full['supersedes']}"
    )
    by_dest: dict[str, dict[str, int]] = {}
    errors: dict[str, str] = {}
    for r in rows:  # this session's rows only (all its versions)
        by_dest.setdefault(r["destination"], {}).setdefault(r["state"], 0)
        by_dest[r["destination"]][r["state"]] += 1
        if r["state"] in ("pending", "parked") and r["last_error"]:
            errors[r["destination"]] = r["last_error"]
    for dest, st in by_dest.items():
        counts = ", ".join(f"{n} {state}" for state, n in sorted(st.items()))
        err = f"; last error: {errors[dest]}" if dest in errors else ""
        print(f"  {dest}: {counts}{err}")
    if left or not sent or errors:
        print(
            "correct: not everything is confirmed yet; it stays queued and is sent by the "
            "service (or `dgs-edge recover`)"
        )
        return 1
    return 0
