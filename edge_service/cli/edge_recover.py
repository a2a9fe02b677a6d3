"""`dgs-edge recover`: finish and deliver every unfinished session, then exit (contract 5)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edge_service.config import load_config

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "recover",
        help="finish and deliver every unfinished session, then exit",
        description=(
            "Repair recordings a crash or full disk left without cine.dcm, analyse sessions "
            "without result.json, publish results not yet published and send what the MQTT "
            "outbox still holds; exit 0 when everything is delivered or parked (sessions that "
            "cannot be finished get parked.json with the reason). With --demo it works on the "
            "sessions of `dgs-edge demo` (its state folder) and publishes to --broker."
        ),
    )
    p.add_argument("--config", type=Path, help="the service's TOML config")
    p.add_argument(
        "--demo", action="store_true", help="recover the demo's sessions instead (needs --broker)"
    )
    p.add_argument("--broker", help="with --demo: publish to this broker (mqtt://HOST:PORT)")
    p.add_argument("--state-dir", type=Path, help="with --demo: the demo's state folder")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the broker to acknowledge everything (default 60)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_service.errors import ConfigError

    if args.demo:
        from edge_service.demo import recover_demo

        if not args.broker:
            raise ConfigError("recover --demo needs --broker mqtt://HOST:PORT")
        left = recover_demo(args.broker, args.state_dir, timeout_s=args.timeout)
        return 0 if left == 0 else 1
    if args.config is None:
        raise ConfigError("recover needs --config FILE (the service's config) or --demo")
    from edge_service.service import Service

    svc = Service(load_config(args.config), mode="recover")
    try:
        svc.open()
        svc.watchdog.start()
        svc.notifier.ready(status="recovering")
        report = svc.recover()
        left = svc.wait_delivered(args.timeout)
        undelivered = svc.undelivered()
        svc.retention()
    finally:
        svc.close()
    print(f"recover: {report.summary()}; {report.delivered} already delivered")
    for name in report.parked:
        print(f"  parked: {name} (see its parked.json)")
    for name, why in report.waiting.items():
        print(f"  not finished: {name}: {why}")
    if left or report.waiting:
        print(
            f"recover: {left} message(s) still queued, {len(undelivered)} session(s) not "
            "delivered; run again when the broker / disk is back"
        )
        return 1
    return 0
