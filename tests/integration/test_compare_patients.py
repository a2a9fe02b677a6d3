"""`dgs-edge compare` refuses two different patients' sessions unless --force."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.hospital import ORDER, record_session

pytestmark = pytest.mark.sim


def _compare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_service.cli.edge", "compare", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_compare_refuses_other_patient_unless_forced(tmp_path: Path) -> None:
    left, right, other = tmp_path / "l", tmp_path / "r", tmp_path / "o"
    record_session(left, side="left")
    record_session(right, side="right", seed=4)
    record_session(other, side="right", seed=5,
                   order=dataclasses.replace(ORDER, patient_id="PID-other"))  # fmt: skip
    assert _compare(str(left), str(right)).returncode == 0
    bad = _compare(str(left), str(other))
    assert bad.returncode != 0 and "different patients" in bad.stderr + bad.stdout
    assert "PID-" not in bad.stderr + bad.stdout  # no identifiers on the terminal
    assert _compare(str(left), str(other), "--force").returncode == 0
