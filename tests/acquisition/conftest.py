"""Fixtures for acquisition and recording tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_service.acquisition.frame import Frame, Roi


def make_frames(
    n: int, shape: tuple[int, int] = (96, 128), t0: float = 1_700_000_000.0
) -> list[Frame]:
    rng = np.random.default_rng(42)
    return [
        Frame(
            rng.integers(0, 256, shape, dtype=np.uint8),
            t0 + i / 30 + rng.uniform(0, 0.003),
            i,
            None,
        )
        for i in range(n)
    ]


@pytest.fixture
def frames() -> list[Frame]:
    return make_frames(12)


@pytest.fixture
def roi() -> Roi:
    return Roi(8, 4, 120, 90)


def dciodvfy(path: Path) -> str:
    """Run dicom3tools' independent IOD validator; returns its report ('' errors = valid)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy (dicom3tools) is not installed: run scripts/setup")
    res = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return res.stdout + res.stderr
