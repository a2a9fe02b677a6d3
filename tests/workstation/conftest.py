"""A real workstation for the tests: phantom probe + virtual clip (DemoRig), the shipped
ONNX model, the live service and uvicorn on an ephemeral loopback port."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_service.live.rig import DemoRig
from edge_service.live.service import LiveService, ServiceSettings
from edge_service.workstation.server import BackgroundServer
from edge_service.workstation.settings import WorkstationSettings


@dataclass
class Workstation:
    service: LiveService
    server: BackgroundServer
    client: httpx.Client
    root: Path

    @property
    def url(self) -> str:
        return self.server.url

    def wait_state(
        self, sid: str, states: tuple[str, ...], timeout_s: float = 60.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            d = self.client.get(f"/api/v1/sessions/{sid}").json()
            if d["state"] in states:
                return d
            if time.monotonic() > deadline:
                raise AssertionError(f"session {sid} still {d['state']} after {timeout_s} s")
            time.sleep(0.1)

    def wait_for(self, pred: Any, timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (v := pred()):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout_s} s")
            time.sleep(0.05)
        return v

    def wait_frames(self, sid: str, n: int, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            d = self.client.get(f"/api/v1/sessions/{sid}").json()
            if (d.get("live") or {}).get("frames_analysed", 0) >= n:
                return d
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"session {sid}: fewer than {n} frames analysed: {d.get('live')}"
                )
            time.sleep(0.1)


@pytest.fixture(scope="session")
def detector() -> Any:
    from edge_service.detector import Detector

    return Detector.load()


@pytest.fixture
def make_workstation(tmp_path: Path, detector: Any) -> Iterator[Callable[..., Workstation]]:
    made: list[Workstation] = []

    def make(
        rig: Any = None,
        publisher: Any = None,
        ws: WorkstationSettings | None = None,
        hold_results: bool = True,
        root: Path | None = None,
        **client_kw: Any,
    ) -> Workstation:
        root = root or tmp_path / f"ws{len(made)}"
        service = LiveService(
            rig or DemoRig(fps=8.0, seed=7),
            detector,
            ServiceSettings(
                recordings_dir=root / "recordings", hold_results=hold_results, min_free_disk_mb=1.0
            ),
            publisher=publisher,
        )
        ws = ws or WorkstationSettings(enabled=True, port=0)
        server = BackgroundServer(service, ws, port=0).start()
        client = httpx.Client(base_url=server.url, timeout=30.0, **client_kw)
        w = Workstation(service, server, client, root)
        made.append(w)
        return w

    yield make
    for w in made:
        w.client.close()
        w.service.close()
        w.server.stop()
