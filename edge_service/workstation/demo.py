"""`dgs-edge demo --serve`: the workstation on simulated parts (contract 5).

Phantom probe + virtual clip (one per session, the left side affected as in the case
report, the right side normal), an embedded MQTT broker, the workstation on loopback;
runs until stopped. Recordings go to OUT/recordings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from edge_service.errors import BrokerError

log = logging.getLogger(__name__)

SITE = "demo-site"
DEVICE = "demo-01"


def serve_demo(
    out: Path,
    port: int,
    fps: float,
    seed: int,
    on_ready: Callable[[str], None],
    needle_kind: str = "procedure",
) -> None:
    from edge_service.detector import Detector
    from edge_service.live.rig import DemoRig
    from edge_service.live.service import LiveService, ServiceSettings
    from edge_service.mqtt import EmbeddedBroker, MqttSettings, Publisher
    from edge_service.workstation.server import serve_forever
    from edge_service.workstation.settings import WorkstationSettings

    ws = WorkstationSettings(enabled=True, host="127.0.0.1", port=port)
    out.mkdir(parents=True, exist_ok=True)
    detector = Detector.load()
    broker = EmbeddedBroker(workdir=out / ".state" / "broker").start()
    try:
        settings = MqttSettings(url=broker.url, site=SITE, device=DEVICE, protocol=broker.protocol)
        pub = Publisher(settings, out / ".state" / "outbox.sqlite")
        pub.start(status={"mode": "demo-workstation", "probe": "phantom", "clip": "virtual"})
        try:
            if not pub.wait_connected(5.0):
                raise BrokerError(f"embedded broker {broker.url} refused: {pub.last_error}")
            from edge_service.live.procedure import default_locator_factory

            service = LiveService(
                DemoRig(fps=fps, seed=seed, needle_kind=needle_kind),
                detector,
                ServiceSettings(
                    recordings_dir=out / "recordings",
                    hold_results=ws.hold_results,
                    max_duration_s=ws.max_session_s,
                    min_free_disk_mb=ws.min_free_disk_mb,
                ),
                publisher=pub,
                locator_factory=default_locator_factory(),
            )
            serve_forever(service, ws, on_ready=lambda p: on_ready(f"http://127.0.0.1:{p}/"))
        finally:
            pub.stop()
    finally:
        broker.stop()
