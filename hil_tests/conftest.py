"""Hardware discovery for the hil layer: fixtures skip with a reason when nothing is attached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def clip_port() -> str:
    port = os.environ.get("DGS_CLIP_PORT")
    if not port:
        pytest.skip("no clip attached: set DGS_CLIP_PORT=/dev/ttyACM0 (see hil_tests/README.md)")
    if not Path(port).exists():
        pytest.skip(f"DGS_CLIP_PORT={port} does not exist: is the clip plugged in?")
    return port


@pytest.fixture
def probe_device() -> str:
    dev = os.environ.get("DGS_PROBE_DEVICE")
    if not dev:
        pytest.skip("no probe attached: set DGS_PROBE_DEVICE=/dev/video0 (see hil_tests/README.md)")
    if not Path(dev).exists():
        pytest.skip(f"DGS_PROBE_DEVICE={dev} does not exist: is the probe plugged in?")
    return dev
