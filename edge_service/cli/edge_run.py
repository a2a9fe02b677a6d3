"""`dgs-edge run`: the appliance service (configured probe + clip -> sessions -> MQTT)."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from edge_service.acquisition.frame import Frame
from edge_service.config import AppConfig, load_config
from edge_service.errors import BrokerError, DeviceError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run",
        help="run the appliance service with a config file",
        description=(
            "Acquire sessions from the configured probe and clip, record, analyse and publish "
            "them over MQTT. Ctrl-C / SIGTERM ends the current session cleanly (it is still "
            "recorded, analysed and published) and stops."
        ),
    )
    p.add_argument("--config", type=Path, help="TOML config (default: embedded defaults)")
    p.add_argument(
        "--validate-config", action="store_true", help="check the config, print it, and exit"
    )
    p.add_argument("--sessions", type=int, default=1, help="sessions to run (0 = until stopped)")
    p.set_defaults(func=run)


def _bounded(frames: Iterator[Frame], stop: threading.Event, max_s: float) -> Iterator[Frame]:
    end = time.monotonic() + max_s
    for f in frames:
        yield f
        if stop.is_set() or time.monotonic() >= end:
            return


def run(args: argparse.Namespace) -> int:
    cfg: AppConfig = load_config(args.config)
    if args.validate_config:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
        print(f"config OK: {args.config or '(embedded defaults)'}")
        return 0
    if cfg.workstation.enabled:
        # Sessions are started and stopped from the workstation page / HTTP API.
        from edge_service.workstation.cli import serve_run

        return serve_run(cfg)
    from edge_service.acquisition.factory import open_source
    from edge_service.clip.link import ClipLink
    from edge_service.clip.timeline import AngleTimeline
    from edge_service.detector import Detector
    from edge_service.mqtt import MqttSettings, Publisher
    from edge_service.pipeline import run_session
    from edge_service.recording import SessionMeta

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.warning("signal %d: finishing the current session", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    s = cfg.session
    s.state_dir.mkdir(parents=True, exist_ok=True)
    detector = Detector.load(
        cfg.detector.model_path, threads=cfg.detector.threads
    )  # fail fast on a bad model
    mqtt_s: MqttSettings = cfg.mqtt
    pub = Publisher(mqtt_s, s.state_dir / "outbox.sqlite")
    pub.start(status={"mode": "service"})
    if not pub.wait_connected(5.0):
        # Not fatal: the outbox keeps everything until the broker is back.
        log.warning("broker %s not reachable yet (%s); results are kept in the outbox",
                    mqtt_s.url, pub.last_error)  # fmt: skip
    link = None
    timeline = None
    try:
        if s.use_clip:
            timeline = AngleTimeline(cfg.clip.timeline)
            link = ClipLink(cfg.clip, timeline=timeline)
            link.open()
            if not link.wait_connected(cfg.clip.handshake_timeout_s * 5):
                raise DeviceError(
                    f"no clip answered on {link.port}: plug it in or set [session] use_clip=false"
                )
            link.start()
        counter = range(args.sessions) if args.sessions > 0 else itertools.count()
        for _ in counter:
            if stop.is_set():
                break
            stamp = time.strftime("%Y%m%d-%H%M%S")
            meta = SessionMeta(
                side=s.side,
                protocol=s.protocol,
                probe={"source": cfg.source.kind},
                clip={"port": getattr(link, "port", None)},
                source=cfg.source.model_dump(mode="json"),
            )
            out = s.recordings_dir / f"{stamp}-{meta.session_id}"
            with open_source(cfg.source) as src:
                result = run_session(
                    frames=_bounded(iter(src), stop, s.max_duration_s),
                    out_dir=out,
                    meta=meta,
                    detector=detector,
                    timeline=timeline,
                    link=link,
                    publisher=pub,
                    pace=cfg.source.kind == "phantom",
                )
            print(
                f"session {meta.session_id}: {out} "
                f"(restricted gliding: {result.get('gliding', {}).get('restricted')})"
            )
        if not pub.wait_drained(10.0):
            print("some results are still in the outbox; they are sent when the broker is back")
    except BrokerError:
        raise
    finally:
        if link is not None:
            link.close()
        pub.stop()
    return 0
