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
from typing import TYPE_CHECKING

from edge_service.acquisition.frame import Frame
from edge_service.config import AppConfig, load_config
from edge_service.errors import DeviceError, StorageError

if TYPE_CHECKING:
    from edge_service.clip.link import ClipLink
    from edge_service.clip.timeline import AngleTimeline
    from edge_service.service import Service

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run",
        help="run the appliance service with a config file",
        description=(
            "Acquire sessions from the configured probe and clip, record, analyse and publish "
            "them over MQTT. On start, sessions left unfinished by a crash, kill or full disk "
            "are repaired, analysed and published first. Ctrl-C / SIGTERM ends the current "
            "session cleanly (it is still recorded, analysed and published) and stops. "
            "Under systemd (Type=notify) it reports READY/WATCHDOG/STOPPING."
        ),
    )
    p.add_argument("--config", type=Path, help="TOML config (default: embedded defaults)")
    p.add_argument(
        "--validate-config", action="store_true", help="check the config, print it, and exit"
    )
    p.add_argument("--sessions", type=int, default=1, help="sessions to run (0 = until stopped)")
    p.set_defaults(func=run)


def _validate_config(cfg: AppConfig, path: Path | None) -> int:
    """Every check `run` makes before acquiring; one line per problem naming the key."""
    import sys

    from edge_service.preflight import preflight

    problems = preflight(cfg)
    if problems:
        for p in problems:
            print(f"dgs-edge: error: {p}", file=sys.stderr)
        return 2
    print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    print(f"config OK: {path or '(embedded defaults)'}")
    return 0


def _bounded(frames: Iterator[Frame], stop: threading.Event, max_s: float) -> Iterator[Frame]:
    end = time.monotonic() + max_s
    for f in frames:
        yield f
        if stop.is_set() or time.monotonic() >= end:
            return


def run(args: argparse.Namespace) -> int:
    cfg: AppConfig = load_config(args.config)
    if args.validate_config:
        return _validate_config(cfg, args.config)
    from edge_service.preflight import require_preflight

    # The checks --validate-config makes, so a bad file or directory is one line, not a
    # traceback halfway through a session (the model is checked by loading it below).
    require_preflight(cfg, check_model=False)
    if cfg.workstation.enabled:
        # Sessions are started and stopped from the workstation page / HTTP API.
        from edge_service.workstation.cli import serve_run

        return serve_run(cfg)
    from edge_service.service import Service

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.warning("signal %d: finishing the current session", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    svc = Service(cfg, mode="service")
    try:
        svc.open()
        return _serve(svc, args.sessions, stop)
    finally:
        svc.close()


def _serve(svc: Service, n_sessions: int, stop: threading.Event) -> int:
    from edge_service.acquisition.factory import open_source
    from edge_service.analysis.session import analyze_session
    from edge_service.clip.timeline import AngleTimeline
    from edge_service.mqtt.outbox import OutboxError
    from edge_service.pipeline import NothingRecorded, SessionProgress, run_session
    from edge_service.recording import SessionMeta
    from edge_service.storage import DiskGuard

    cfg, pub, s = svc.cfg, svc.pub, svc.cfg.session
    svc.watchdog.start()
    report = svc.recover()  # sessions a crash, kill or full disk left unfinished
    if report.published or report.parked or report.waiting:
        print(f"recovered earlier sessions: {report.summary()}")
    svc.retention()
    svc.notifier.ready(status="recovered; acquiring")
    link = None
    timeline = None
    try:
        if s.use_clip:
            timeline = AngleTimeline(cfg.clip.timeline)
            link = _open_clip(svc, timeline, stop, wait=n_sessions == 0)
            if link is None:  # stopped while waiting for the clip
                return 0
        clip_state = [""]

        def beat(p: SessionProgress) -> None:
            svc.watchdog.beat()
            if link is not None and link.stats.state != clip_state[0]:
                clip_state[0] = link.stats.state
                svc.set_status(clip={"state": link.stats.state, "port": "configured"})
                pub.set_alarm("clip_lost", link.stats.state != "open")

        def analyze(path: Path, det: object) -> dict[str, object]:
            return analyze_session(
                path,
                detector=det,
                settings=cfg.analysis,
                progress=lambda done, total: svc.watchdog.beat(),
            )

        counter = range(n_sessions) if n_sessions > 0 else itertools.count()
        for _ in counter:
            if stop.is_set():
                break
            if not _wait_for_space(svc, stop, finite=n_sessions > 0):
                break
            meta = SessionMeta(
                side=s.side,
                protocol=s.protocol,
                probe={"source": cfg.source.kind},
                clip={"port": getattr(link, "port", None)},
                source=cfg.source.model_dump(mode="json"),
            )
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = s.recordings_dir / f"{stamp}-{meta.session_id}"
            guard = DiskGuard(s.recordings_dir, cfg.storage, on_change=lambda st: svc.update_disk())
            svc.set_status(probe={"state": "acquiring", "kind": cfg.source.kind})
            try:
                with open_source(cfg.source) as src:
                    result = run_session(
                        frames=_bounded(iter(src), stop, s.max_duration_s),
                        out_dir=out,
                        meta=meta,
                        detector=svc.detector,
                        timeline=timeline,
                        link=link,
                        publisher=pub,
                        pace=cfg.source.kind == "phantom",
                        progress=beat,
                        analyze=analyze,
                        disk_guard=guard,
                        compression=cfg.storage.cine_compression,
                        on_freeze=lambda on: _probe_frozen(svc, on),
                    )
            except StorageError as exc:
                if n_sessions != 0 or guard.tripped is None or not isinstance(exc, NothingRecorded):
                    pub.set_alarm("disk_full", True)
                    svc.set_status(probe={"state": "stopped", "kind": cfg.source.kind})
                    raise
                # The floor was crossed between the check before this session and its first
                # frame (found by the soak): nothing was recorded, the service is fine. The
                # empty session is parked (its consumers are told) and the loop waits for space.
                from edge_service.recovery import park

                log.error("%s; waiting for space", exc)
                park(out, "acquisition stopped at the free-space floor before the first frame", pub)
                pub.set_alarm("disk_low", True)
                svc.set_status(probe={"state": "idle", "kind": cfg.source.kind})
                continue
            except OutboxError:
                # Disk full (recording, result or outbox): what exists is kept for recover.
                pub.set_alarm("disk_full", True)
                svc.set_status(probe={"state": "stopped", "kind": cfg.source.kind})
                raise
            svc.set_status(probe={"state": "idle", "kind": cfg.source.kind})
            stopped = meta.extra.get("stopped")
            if stopped:
                pub.set_alarm("disk_low", True)
                print(f"session {meta.session_id}: stopped early ({stopped}); recorded part kept")
            print(
                f"session {meta.session_id}: {out} "
                f"(restricted gliding: {result.get('gliding', {}).get('restricted')})"
            )
            svc.after_session()
        left = svc.wait_delivered(10.0)
        if left:
            print(
                f"{left} message(s) still in the outbox {pub.outbox.path}; they are sent when "
                "the broker is back (or by `dgs-edge recover`)"
            )
    finally:
        if link is not None:
            link.close()
    return 0


def _open_clip(
    svc: Service, timeline: AngleTimeline, stop: threading.Event, *, wait: bool
) -> ClipLink | None:
    """Open the clip link. A finite run fails with one line when no clip answers; the
    service (--sessions 0) waits for one with the clip_lost alarm raised, because a clip
    plugged in later must not need an operator to restart anything."""
    from edge_service.clip.link import ClipLink

    said = False
    while True:
        link = ClipLink(svc.cfg.clip, timeline=timeline)
        try:
            link.open()
            if link.wait_connected(svc.cfg.clip.handshake_timeout_s * 5):
                link.start()
                return link
            why = f"no clip answered on {link.port}"
        except DeviceError as exc:
            why = str(exc)
        link.close()
        if not wait:
            raise DeviceError(f"{why}: plug it in or set [session] use_clip=false")
        svc.set_status(clip={"state": "absent"})
        svc.pub.set_alarm("clip_lost", True)
        if not said:
            log.error("%s; waiting for the clip (plug it in)", why)
            svc.notifier.status("waiting for the clip")
            said = True
        if stop.wait(2.0):
            return None
        svc.watchdog.beat()


def _probe_frozen(svc: Service, on: bool) -> None:
    svc.pub.set_alarm("probe_frozen", on)
    svc.set_status(probe={"state": "frozen" if on else "acquiring", "kind": svc.cfg.source.kind})


def _wait_for_space(svc: Service, stop: threading.Event, *, finite: bool) -> bool:
    """Below the free-space floor no session starts: retention first, then (service mode)
    wait for space with the alarm raised; a finite run fails with one line instead."""
    st = svc.update_disk()
    if not st.low:
        return True
    svc.retention()
    st = svc.update_disk()
    if not st.low:
        return True
    msg = (
        f"free space {st.free_mb:.0f} MB in {svc.cfg.session.recordings_dir} is under the "
        f"floor of {st.floor_mb:.0f} MB ([storage] min_free_mb); no session started"
    )
    if finite:
        raise StorageError(msg)
    log.error("%s; waiting for space", msg)
    svc.notifier.status("waiting for disk space")
    while not stop.wait(5.0):
        svc.watchdog.beat()
        svc.retention()
        if not svc.update_disk().low:
            return True
    return False
