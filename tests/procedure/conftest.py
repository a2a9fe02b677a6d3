"""Recorded phantom needle sessions (rendered once per test run) and a live workstation
that replays them as its probe."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REC_FPS = 8.0


@pytest.fixture(scope="session")
def needle_recordings(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """kind -> a recording of that needle session (seed 3, 8 fps), rendered on first use."""
    from edge_service.phantom.needle_session import simulate_needle_session

    root = tmp_path_factory.mktemp("needle-rec")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            made[kind] = simulate_needle_session(root / kind, kind, seed=3, fps=REC_FPS, t0=1.0e9)
        return made[kind]

    return get


def truth(rec: Path) -> dict[str, Any]:
    return json.loads((rec / "truth.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def detector() -> Any:
    from edge_service.detector import Detector

    return Detector.load()


@pytest.fixture
def procedure_service(tmp_path: Path, detector: Any) -> Iterator[Callable[..., Any]]:
    """(recording, publisher, locator_factory) -> (service, server) replaying the recording."""
    from edge_service.live.rig import ReplayRig
    from edge_service.live.service import LiveService, ServiceSettings
    from edge_service.workstation.server import BackgroundServer
    from edge_service.workstation.settings import WorkstationSettings

    made: list[tuple[Any, Any]] = []

    def make(
        rec: Path, publisher: Any = None, locator_factory: Any = None, fps: float = REC_FPS
    ) -> tuple[Any, Any]:
        service = LiveService(
            ReplayRig(rec, fps),
            detector,
            ServiceSettings(recordings_dir=tmp_path / f"r{len(made)}", min_free_disk_mb=1.0),
            publisher=publisher,
            locator_factory=locator_factory,
        )
        server = BackgroundServer(
            service, WorkstationSettings(enabled=True, port=0), port=0
        ).start()
        made.append((service, server))
        return service, server

    yield make
    for service, server in made:
        service.close()
        server.stop()
