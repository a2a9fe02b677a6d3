"""`dgs-edge demo`: the whole chain on embedded defaults, no hardware, no external broker.

phantom probe (simulated B-mode frames, paced in real time) -> ONNX detector -> mm
measurements; virtual clip (the firmware's own modules on CPython, real serial protocol over
a pty) -> clip link + clock sync -> angle timeline; both -> session recording -> analysis ->
result.json + report.html -> MQTT (an embedded broker, or the one given) with a subscriber
that proves the messages arrived.

The demo's MQTT outbox and its list of sessions not yet delivered live in a fixed state
folder (`$XDG_STATE_HOME/dgs-edge/demo`, default ~/.local/state/dgs-edge/demo), not in
--out: a demo killed at any point, or run during a broker outage, is finished and delivered
by the next `dgs-edge demo` (or `dgs-edge recover --demo --broker URL`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_service.errors import BrokerError, DeviceError, InputError
from edge_service.pipeline import SessionProgress, run_session
from edge_service.recovery import RecoveryReport, SessionIndex, StateLock, recover, stage
from edge_service.sim.motion import manoeuvre

log = logging.getLogger(__name__)

SITE = "demo-site"
DEVICE = "demo-01"


@dataclass
class DemoOptions:
    out_dir: Path
    broker_url: str | None = None
    side: Literal["left", "right"] = "left"
    nerve: Literal["normal", "swollen"] = "swollen"
    calcification: bool = True
    gliding: Literal["free", "restricted"] = "restricted"
    manoeuvre: str = "fair"
    repetitions: int = 1
    fps: float = 8.0
    seed: int = 7
    # Hospital integration hook: called with the SessionMeta before recording starts
    # (edge_service/integration/demo.py attaches the worklist order and UIDs).
    prepare_meta: Callable[[Any], None] | None = None
    state_dir: Path | None = None  # None: default_state_dir()
    drain_timeout_s: float = 10.0


@dataclass
class DemoOutcome:
    out_dir: Path
    result: dict[str, Any]
    truth: dict[str, Any]
    broker: str
    messages: Counter[str] = field(default_factory=Counter)
    link: dict[str, Any] = field(default_factory=dict)
    recovered: RecoveryReport = field(default_factory=RecoveryReport)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dgs-edge" / "demo"


def _recover_index(index: SessionIndex, detector: Any, pub: Any) -> RecoveryReport:
    """Finish the demo sessions an earlier demo left (killed, or broker down)."""
    entries = index.entries()
    for sid, path in list(entries.items()):
        if not (path / "session.json").is_file():
            log.warning("demo session %s: folder %s is gone; forgotten", sid, path)
            index.remove(sid)
            del entries[sid]
    report = recover(
        list(entries.values()),
        detector=detector,
        publisher=pub,
        pending=pub.outbox.pending_sessions(),
    )
    return report


def _forget_delivered(index: SessionIndex, pub: Any) -> list[str]:
    """Drop delivered (or parked) sessions from the index; returns the undelivered ones."""
    pending = pub.outbox.pending_sessions()
    left = []
    for sid, path in index.entries().items():
        st = stage(path, pending) if (path / "session.json").is_file() else "delivered"
        if st in ("delivered", "parked"):
            index.remove(sid)
        else:
            left.append(str(path))
    return left


def recover_demo(broker_url: str, state_dir: Path | None = None, timeout_s: float = 60.0) -> int:
    """`dgs-edge recover --demo`: deliver the demo's unfinished sessions to `broker_url`;
    returns how many messages are still queued."""
    from edge_service.detector import Detector
    from edge_service.mqtt import MqttSettings, Publisher

    state = state_dir or default_state_dir()
    lock = StateLock(state)
    if not lock.acquire():
        raise InputError(f"a demo is running on {state}; it delivers its own sessions")
    try:
        settings = MqttSettings(url=broker_url, site=SITE, device=DEVICE)
        pub = Publisher(settings, state / "outbox.sqlite")
        pub.start(status={"mode": "recover"})
        try:
            if not pub.wait_connected(max(5.0, settings.connack_timeout_s + 3)):
                raise BrokerError(f"broker {broker_url} unreachable: {pub.last_error or 'timeout'}")
            index = SessionIndex(state)
            report = _recover_index(index, Detector.load(), pub)
            pub.wait_drained(timeout_s)
            left = pub.outbox.count()
            undelivered = _forget_delivered(index, pub)
        finally:
            pub.stop()
    finally:
        lock.release()
    print(f"recover --demo: {report.summary()}; {left} message(s) still queued")
    for p in undelivered:
        print(f"  not delivered yet: {p}")
    return int(left)


class _Tap:
    """A plain paho subscriber on the device's topic tree: counts what really arrived."""

    def __init__(self, host: str, port: int) -> None:
        self.counts: Counter[str] = Counter()
        self.result_seen = threading.Event()
        self._c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dgs-demo-tap")
        self._c.on_message = self._on_message
        self._c.on_connect = self._on_connect
        self._ok = threading.Event()
        try:
            self._c.connect(host, port, keepalive=30)
        except OSError as exc:
            raise BrokerError(f"broker {host}:{port} refused the connection: {exc}") from None
        self._c.loop_start()
        if not self._ok.wait(5.0):
            self.close()
            raise BrokerError(f"broker {host}:{port} did not accept an MQTT connection")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(f"dgs/v1/{SITE}/{DEVICE}/#", qos=1)
            self._ok.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        kind = msg.topic.split("/", 4)[-1]
        if kind.startswith("sessions/"):
            kind = "sessions/" + kind.rsplit("/", 1)[-1]
        self.counts[kind] += 1
        if kind == "sessions/result":
            self.result_seen.set()

    def close(self) -> None:
        self._c.loop_stop()
        self._c.disconnect()


def run_demo(
    opts: DemoOptions, progress: Callable[[SessionProgress], None] | None = None
) -> DemoOutcome:
    from edge_service.clip.link import ClipLink
    from edge_service.clip.timeline import AngleTimeline
    from edge_service.detector import Detector
    from edge_service.mqtt import EmbeddedBroker, MqttSettings, Publisher
    from edge_service.phantom import PhantomConfig, PhantomSimulator
    from edge_service.recording import SessionMeta
    from edge_service.virtualclip import start_virtual_clip

    out = opts.out_dir
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty; choose a new --out folder")
    state = opts.state_dir or default_state_dir()
    if opts.broker_url is not None:
        MqttSettings(url=opts.broker_url, site=SITE, device=DEVICE)  # fail fast on a bad URL
    motion = manoeuvre(opts.manoeuvre, repetitions=opts.repetitions)  # type: ignore[arg-type]
    detector = Detector.load()  # loads and warms up before anything runs in real time

    out.mkdir(parents=True, exist_ok=True)
    broker = None
    if opts.broker_url is None:
        broker = EmbeddedBroker(workdir=out / ".state" / "broker").start()
        url = broker.url
    else:
        url = opts.broker_url
    stack: list[Callable[[], object]] = []
    if broker is not None:
        stack.append(broker.stop)
    lock = StateLock(state)
    own_state = lock.acquire()
    stack.append(lock.release)
    if not own_state:
        # Another demo is running: its sessions are its own; ours is still delivered.
        log.warning("another demo is using %s; earlier sessions are left to it", state)
    try:
        # The embedded fallback broker (amqtt) speaks 3.1.1 only: say so up front instead
        # of letting the publisher discover it by a timed-out MQTT 5 attempt.
        proto = broker.protocol if broker is not None else "5"
        settings = MqttSettings(url=url, site=SITE, device=DEVICE, protocol=proto)
        tap = _Tap(settings.host, settings.port)
        stack.append(tap.close)
        pub = Publisher(settings, state / "outbox.sqlite")
        pub.start(status={"mode": "demo", "probe": "phantom", "clip": "virtual"})
        stack.append(pub.stop)
        if not pub.wait_connected(5.0):
            raise BrokerError(f"broker {url} refused the connection: {pub.last_error or 'timeout'}")
        index = SessionIndex(state)
        recovered = RecoveryReport()
        if own_state:
            recovered = _recover_index(index, detector, pub)
            if recovered.published or recovered.parked:
                log.warning("earlier demo sessions: %s", recovered.summary())

        clip = start_virtual_clip(motion, side=opts.side, seed=opts.seed, realtime=True)
        # The clip plays the motion from when it goes real time: the phantom follows the
        # same script from the same instant, so frames and angles describe one movement.
        t_motion0 = time.time()
        stack.append(clip.stop)
        timeline = AngleTimeline()
        link = ClipLink(port=clip.port, timeline=timeline)
        link.open()
        stack.append(link.close)
        if not link.wait_connected(5.0):
            raise DeviceError(f"virtual clip on {clip.port} did not answer")
        link.start()

        cfg = PhantomConfig(
            side=opts.side,
            nerve=opts.nerve,
            calcification=opts.calcification,
            gliding=opts.gliding,
        )
        sim = PhantomSimulator(cfg, seed=opts.seed)
        meta = SessionMeta(
            side=opts.side,
            protocol=opts.manoeuvre,
            probe={"kind": "phantom", "model": "C3-5 curvilinear (simulated)"},
            clip={"kind": "virtual", "port": clip.port, "info": _info(link)},
            fps_hz=opts.fps,
            source={"kind": "phantom", "seed": opts.seed},
        )
        if opts.prepare_meta is not None:
            opts.prepare_meta(meta)
        frames = (pf.frame for pf in sim.run(motion, fps=opts.fps, t0=t_motion0))
        index.add(meta.session_id, out)  # found by the next demo if this one dies
        result = run_session(
            frames=frames,
            out_dir=out,
            meta=meta,
            detector=detector,
            timeline=timeline,
            link=link,
            publisher=pub,
            pace=True,
            progress=progress,
        )
        truth = sim.truth()
        (out / "truth.json").write_text(json.dumps(truth, indent=2, default=float))
        link_stats = link.stats_dict()
        drained = pub.wait_drained(opts.drain_timeout_s)
        left = _forget_delivered(index, pub) if own_state else []
        if not drained:
            raise BrokerError(
                f"results could not be delivered to {url} within {opts.drain_timeout_s:.0f} s; "
                f"{pub.outbox.count()} message(s) of {len(left) or 1} session(s) stay queued in "
                f"{pub.outbox.path} and are sent by the next `dgs-edge demo` (or `dgs-edge "
                "recover --demo --broker URL`)"
            )
        tap.result_seen.wait(5.0)
        return DemoOutcome(out, result, truth, url, Counter(tap.counts), link_stats, recovered)
    finally:
        for close in reversed(stack):
            try:
                close()
            except Exception:  # tear-down must go on; the cause is logged
                log.exception("demo tear-down step failed")


def _info(link: Any) -> dict[str, Any]:
    try:
        info = link.get_info()
    except Exception as exc:  # info is nice to have in session.json, not essential
        log.warning("clip info unavailable: %s", exc)
        return {}
    fields = (
        dataclasses.asdict(info)
        if dataclasses.is_dataclass(info) and not isinstance(info, type)
        else {}
    )
    return {k: v for k, v in fields.items() if isinstance(v, str | int | float | bool)}
