"""Well-known paths of the repository for tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
VECTORS = REPO / "tests" / "vectors"
MODELS = REPO / "models"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
