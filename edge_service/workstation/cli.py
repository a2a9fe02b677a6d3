"""CLI entry points of the workstation: `dgs-edge demo --serve`, `run` with [workstation],
and `dgs-edge workstation-token` (hash a LAN access token for the config)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "workstation-token",
        help="hash an access token for [workstation] token_hash (LAN access)",
        description=(
            "Reads a token (at least 12 characters) from stdin or a prompt and prints its "
            "scrypt hash for `token_hash` in the [workstation] config section."
        ),
    )
    p.set_defaults(func=_token)


def _token(args: argparse.Namespace) -> int:
    from edge_service.workstation.auth import hash_token

    token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    print(hash_token(token))
    return 0


def serve_demo_cli(
    out: Path,
    port: int,
    fps: float,
    seed: int,
    protocol: str | None = None,
    needle_kind: str = "procedure",
) -> int:
    from edge_service.workstation.demo import serve_demo

    def ready(url: str) -> None:
        if protocol:
            url += f"?protocol={protocol}"
        print(f"dgs-edge workstation (simulated parts) on {url} — Ctrl-C stops it", flush=True)
        print(f"recordings: {out / 'recordings'}", flush=True)
        if protocol == "injection":
            print(
                f"procedure mode: simulated needle session '{needle_kind}'; press Start", flush=True
            )

    serve_demo(out, port, fps, seed, ready, needle_kind=needle_kind)
    return 0


def held_for_review(path: Path) -> bool:
    """A session the workstation recorded and the clinician has not published yet: after a
    crash it is repaired and analysed, then waits in the page like any held result."""
    from edge_service.errors import DgsError
    from edge_service.recording.meta import read_meta

    try:
        ws = read_meta(path / "session.json").extra.get("workstation") or {}
    except DgsError:
        return False
    return bool(ws) and not ws.get("published", False)


def serve_run(cfg: Any) -> int:
    """`dgs-edge run` with [workstation] enabled: the configured parts, sessions from the page."""
    from edge_service.live.procedure import default_locator_factory
    from edge_service.live.rig import ConfiguredRig
    from edge_service.live.service import LiveService, ServiceSettings
    from edge_service.service import Service
    from edge_service.workstation.server import serve_forever

    ws = cfg.workstation
    s = cfg.session
    # The same long-lived parts as the headless run: state-dir lock, umask 077, the detector
    # with every [detector] key, the publisher with its retained status, and recovery of
    # sessions a crash or a full disk left unfinished, before any new session can start.
    svc = Service(cfg, mode="workstation")
    svc.open()
    report = svc.recover(hold=held_for_review if ws.hold_results else None)
    if report.published or report.parked or report.waiting:
        print(f"recovered earlier sessions: {report.summary()}", flush=True)
    svc.retention()
    detector, pub = svc.detector, svc.pub
    rig = ConfiguredRig(cfg)
    try:
        service = LiveService(
            rig,
            detector,
            ServiceSettings(
                recordings_dir=s.recordings_dir,
                analysis=cfg.analysis,
                hold_results=ws.hold_results,
                max_duration_s=min(ws.max_session_s, s.max_duration_s),
                min_free_disk_mb=ws.min_free_disk_mb,
                procedure=cfg.procedure,
            ),
            publisher=pub,
            locator_factory=default_locator_factory(),
        )
        # Hospital integration: [worklist] poller, [dicom] destinations (forward queue).
        from edge_service.integration.workstation import install_from_config

        install_from_config(service, cfg)
        scheme = "https" if ws.tls_certfile else "http"
        serve_forever(
            service,
            ws,
            on_ready=lambda p: print(
                f"dgs-edge workstation on {scheme}://{ws.host}:{p}/", flush=True
            ),
        )
    finally:
        svc.close()
    return 0
