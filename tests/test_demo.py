"""`dgs-edge demo` end to end: phantom + shipped model + virtual clip on a pty + real broker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from edge_service.demo import DemoOptions, run_demo
from edge_service.recording import open_recording

SCHEMA = Path(__file__).resolve().parents[1] / "edge_service" / "schemas" / "session-result-1.json"


@pytest.mark.sim
def test_demo_runs_whole_chain(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    outcome = run_demo(DemoOptions(out_dir=out, fps=4.0, seed=3, state_dir=tmp_path / "state"))
    # Recording contract: every file there, and it replays.
    for name in (
        "session.json",
        "cine.dcm",
        "frames.csv",
        "imu.jsonl",
        "result.json",
        "report.html",
    ):
        assert (out / name).is_file(), name
    rec = open_recording(out)
    assert rec.n_frames == sum(1 for _ in rec.frames()) > 50
    assert len(rec.imu_samples()) > 1000  # 100 Hz clip over ~18 s, through the real pty
    # The result is a valid dgs.session-result/1 document and found the FAIR manoeuvre
    # with the scripted peak angles (clip firmware + link + clock sync + timeline).
    doc = json.loads((out / "result.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    fair = [m for m in doc["maneuvers"] if m["name"] == "fair"]
    assert len(fair) == 1
    assert fair[0]["peak_flexion_deg"] == pytest.approx(75, abs=5)
    assert fair[0]["peak_internal_rotation_deg"] == pytest.approx(35, abs=5)
    # Real MQTT messages reached a subscriber: one result, three session events.
    assert outcome.messages["sessions/result"] == 1
    assert outcome.messages["sessions/events"] >= 3
    assert outcome.messages["live/angles"] > 0 and outcome.messages["status"] >= 1


def test_demo_refuses_non_empty_out(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    from edge_service.errors import DgsError

    with pytest.raises(DgsError, match="not empty"):
        run_demo(DemoOptions(out_dir=tmp_path, state_dir=tmp_path / "state"))
    assert (tmp_path / "x").read_text() == "keep me"


@pytest.mark.parametrize(
    ("broker", "expect"),
    [("mqtt://127.0.0.1:1", "refused the connection"), ("nonsense", "url must look like")],
)
def test_demo_bad_broker_is_one_clear_line(tmp_path: Path, broker: str, expect: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "edge_service.cli.edge", "demo", "--out", str(tmp_path / "o"),
         "--broker", broker],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg")),
    )  # fmt: skip
    assert proc.returncode == 2
    assert expect in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
