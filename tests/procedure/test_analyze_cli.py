"""`dgs-edge analyze` on an injection recording: the procedure pass (not the exam's), through
the real CLI, the shipped detector and needle model, and a real Mosquitto for --broker."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from edge_service.cli.edge import main
from edge_service.procedure.result import validate
from tests.procedure.test_live import Arrivals

pytestmark = [pytest.mark.sim]


def test_analyze_injection_recording_writes_and_publishes_the_procedure_result(
    needle_recordings: Any, mosquitto: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rec: Path = needle_recordings("procedure")
    arr = Arrivals(mosquitto.port)
    try:
        rc = main(
            ["analyze", str(rec), "-q", "--broker", mosquitto.url, "--site", "s1", "--device", "d1"]
        )
        assert rc == 0
        doc = json.loads((rec / "result.json").read_text())
        validate(doc)  # dgs.procedure-result/1, not the exam's session result
        assert doc["protocol"] == "injection" and doc["software"]["locator"]
        out = capsys.readouterr().out
        assert "injection(s)" in out and "published procedure result" in out
        assert (rec / "report.html").exists()
        deadline = time.monotonic() + 10
        while not arr.get("/procedure") and time.monotonic() < deadline:
            time.sleep(0.05)
        got = arr.get("/procedure")
        assert got and got[-1][1]["procedure"]["session_id"] == doc["session_id"]
    finally:
        arr.close()
