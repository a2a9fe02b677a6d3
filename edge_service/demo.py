"""`dgs-edge demo`: the whole chain on embedded defaults, no hardware, no external broker.

phantom probe (simulated B-mode frames, paced in real time) -> ONNX detector -> mm
measurements; virtual clip (the firmware's own modules on CPython, real serial protocol over
a pty) -> clip link + clock sync -> angle timeline; both -> session recording -> analysis ->
result.json + report.html -> MQTT (an embedded broker, or the one given) with a subscriber
that proves the messages arrived.
"""

from __future__ import annotations

import dataclasses
import json
import logging
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


@dataclass
class DemoOutcome:
    out_dir: Path
    result: dict[str, Any]
    truth: dict[str, Any]
    broker: str
    messages: Counter[str] = field(default_factory=Counter)
    link: dict[str, Any] = field(default_factory=dict)


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
    try:
        # The embedded fallback broker (amqtt) speaks 3.1.1 only: say so up front instead
        # of letting the publisher discover it by a timed-out MQTT 5 attempt.
        proto = broker.protocol if broker is not None else "5"
        settings = MqttSettings(url=url, site=SITE, device=DEVICE, protocol=proto)
        tap = _Tap(settings.host, settings.port)
        stack.append(tap.close)
        pub = Publisher(settings, out / ".state" / "outbox.sqlite")
        pub.start(status={"mode": "demo", "probe": "phantom", "clip": "virtual"})
        stack.append(pub.stop)
        if not pub.wait_connected(5.0):
            raise BrokerError(f"broker {url} refused the connection: {pub.last_error or 'timeout'}")

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
        if not pub.wait_drained(10.0):
            raise BrokerError(f"results could not be delivered to {url} within 10 s")
        tap.result_seen.wait(5.0)
        return DemoOutcome(out, result, truth, url, Counter(tap.counts), link_stats)
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
