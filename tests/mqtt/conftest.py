from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_service.mqtt import MqttSettings, Publisher


@pytest.fixture
def make_publisher(tmp_path: Path) -> Iterator[Callable[..., Publisher]]:
    """Publishers with fast reconnects; stopped (or at least their loop ended) after the test."""
    made: list[Publisher] = []

    def make(url: str, outbox: Path | None = None, **kw: object) -> Publisher:
        kw.setdefault("reconnect_max_s", 1.0)
        s = MqttSettings(url=url, **kw)  # type: ignore[arg-type]
        p = Publisher(s, outbox or tmp_path / "outbox.sqlite")
        made.append(p)
        return p

    yield make
    for p in made:
        if p._started:
            p.stop(timeout_s=1)
