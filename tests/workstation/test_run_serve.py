"""`dgs-edge run` with a [workstation] section: the configured parts (phantom source, a virtual
clip on a real pty), sessions from the HTTP API, SIGTERM ends the service cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_service.mqtt.broker import free_port

pytestmark = pytest.mark.sim


def _poll(fn: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            v = fn()
        except httpx.HTTPError:
            v = None
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


def test_run_serves_the_workstation(tmp_path: Path, mosquitto: Any) -> None:
    from edge_service.sim.motion import manoeuvre
    from edge_service.virtualclip import start_virtual_clip

    port = free_port()
    with start_virtual_clip(manoeuvre("fair"), side="right", seed=5, realtime=True) as clip:
        cfg = tmp_path / "dgs.toml"
        cfg.write_text(f"""
[session]
recordings_dir = "{tmp_path / "rec"}"
state_dir = "{tmp_path / "state"}"
[source]
kind = "phantom"
fps_hz = 6
[clip]
port = "{clip.port}"
[mqtt]
url = "{mosquitto.url}"
[workstation]
enabled = true
port = {port}
hold_results = false
min_free_disk_mb = 1
""")
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_service.cli.edge", "run", "--config", str(cfg)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        try:
            c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20)
            h = _poll(lambda: c.get("/healthz").json(), 60, "workstation up")
            assert (
                h["checks"]["clip"]["state"].startswith("connected")
                and not h["checks"]["simulated"]
            )
            r = c.post("/api/v1/sessions", json={"side": "right", "protocol": "fair",
                                                 "accession_number": "A1", "patient_id": "P1"})  # fmt: skip
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            _poll(lambda: c.get(f"/api/v1/sessions/{sid}").json()["live"]["frames_analysed"] >= 12,
                  60, "frames analysed")  # fmt: skip
            assert c.post(f"/api/v1/sessions/{sid}/stop").status_code == 200
            d = _poll(lambda: (x := c.get(f"/api/v1/sessions/{sid}").json())["state"] in
                      ("done", "failed") and x, 60, "analysed")  # fmt: skip
            assert d["state"] == "done", d["error"]
            assert d["result"]["angles"]["available"]  # the configured clip's angles
            # hold_results = false: published by itself once the recording is finalised
            _poll(lambda: c.get(f"/api/v1/sessions/{sid}").json()["published"], 60, "published")
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert f"127.0.0.1:{port}" in out


def test_demo_serve_contract(tmp_path: Path) -> None:
    """`dgs-edge demo --serve --port P` (contract 5): simulated parts, loopback, until stopped."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_service.cli.edge", "demo", "--serve", "--port", str(port),
         "--out", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    try:
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20)
        h = _poll(lambda: c.get("/healthz").json(), 60, "demo workstation up")
        assert h["status"] == "ok" and h["checks"]["simulated"] is True
        assert h["checks"]["broker"]["ok"]  # the embedded broker
        assert "app.js" in c.get("/").text
        assert proc.poll() is None  # runs until stopped
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert f"http://127.0.0.1:{port}/" in out
