"""Operations: sd_notify over a real unix datagram socket, and a REAL full disk (a small
tmpfs mounted for the test) under `dgs-edge run`: one line, an alarm in the retained
status, the session kept; after space is freed `dgs-edge recover` delivers it once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_service.sdnotify import Notifier, Watchdog
from tests.harness.broker import wait_for
from tests.test_recovery import _env, _service_config, _sid, wait_results

DGS_EDGE = [sys.executable, "-m", "edge_service.cli.edge"]


class NotifySocket:
    """What systemd listens on: a unix datagram socket collecting every notification."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def has(self, line: str) -> bool:
        return any(line in m.split("\n") for m in list(self.messages))

    def count(self, line: str) -> int:
        return sum(1 for m in list(self.messages) if line in m.split("\n"))

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(str(tmp_path / "notify.sock"))
    yield s
    s.close()


def test_sd_notify_ready_status_and_watchdog(tmp_path: Path, notify_socket: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    n = Notifier(env)
    assert n.enabled and n.watchdog_s == pytest.approx(0.2)
    assert n.ready(status="recovered")
    wait_for(lambda: notify_socket.has("READY=1") and notify_socket.has("STATUS=recovered"))
    wd = Watchdog(n, stall_s=0.6)
    wd.start()
    try:
        wait_for(lambda: notify_socket.count("WATCHDOG=1") >= 3, 5, "watchdog pings")
        # The main loop stops beating: pings stop, so systemd would restart the service.
        wait_for(lambda: not _pinging(notify_socket), 5, "pings to stop after a stall")
        wd.beat()
        wait_for(lambda: _pinging(notify_socket), 5, "pings to resume")
    finally:
        wd.stop()
    assert n.stopping()
    wait_for(lambda: notify_socket.has("STOPPING=1"))


def _pinging(s: NotifySocket) -> bool:
    before = s.count("WATCHDOG=1")
    stop = threading.Event()
    stop.wait(0.35)  # more than one ping period (0.1 s): did a ping arrive in it?
    return s.count("WATCHDOG=1") > before


def test_sd_notify_abstract_socket_and_absent() -> None:
    name = f"dgs-test-{os.getpid()}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind("\0" + name)
    srv.settimeout(5)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert srv.recv(100) == b"READY=1"
    finally:
        srv.close()
    assert not Notifier({}).ready()  # outside systemd: a no-op
    assert not Notifier({"NOTIFY_SOCKET": "/nonexistent/sock"}).ready()  # warns once


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(d)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.mark.sim
def test_disk_full_mid_session_then_recover(
    tmp_path: Path,
    small_disk: Path,
    mosquitto: Any,
    collector_factory: Any,
    notify_socket: NotifySocket,
) -> None:
    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/ward-3/box-1/#")
    cfg = _service_config(
        tmp_path,
        mosquitto.url,
        None,
        recordings_dir=small_disk / "rec",
        max_duration_s=40,
        min_free_mb=0,  # no floor: the disk really runs full (ENOSPC) mid-session
        cine_compression='"jpegls"',
    )
    env = _env(tmp_path) | {"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    proc = subprocess.run(
        [*DGS_EDGE, "run", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("dgs-edge: error")]
    assert len(errors) == 1 and "No space left" in errors[0], proc.stderr
    assert notify_socket.has("READY=1") and notify_socket.has("STOPPING=1")
    # The retained status says so: a stopped service with the disk_full alarm.
    status = wait_for(lambda: col.docs("/status"), 10, "status")
    assert "disk_full" in status[-1]["alarms"] and status[-1]["state"] == "stopped"
    sess = next((small_disk / "rec").iterdir())
    assert (sess / "frames.raw").stat().st_size > 0  # the frames are kept
    sid = _sid(sess)
    assert not col.docs("/result")
    # The operator frees space; the contract command finishes and delivers the session.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    rec = subprocess.run(
        [*DGS_EDGE, "recover", "--config", str(cfg), "--timeout", "30"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert rec.returncode == 0, rec.stdout + rec.stderr
    got = wait_results(col, {sid})
    assert len(got[sid]) == 1
    meta = json.loads((sess / "session.json").read_text())
    assert meta["complete"] and meta["extra"].get("repaired")
    assert (sess / "cine.dcm").is_file() and not (sess / "frames.raw").exists()


@pytest.mark.sim
def test_free_space_floor_refuses_to_start(tmp_path: Path, mosquitto: Any) -> None:
    cfg = _service_config(tmp_path, mosquitto.url, None, min_free_mb=10**9)
    proc = subprocess.run(
        [*DGS_EDGE, "run", "--config", str(cfg)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "under the floor" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr


@pytest.mark.sim
@pytest.mark.parametrize("case", ["untrusted_broker", "client_cert_refused"])
def test_run_exits_when_tls_can_never_work(
    tmp_path: Path, mosquitto_factory: Any, case: str
) -> None:
    broker = mosquitto_factory("tls", require_client_cert=case == "client_cert_refused")
    tls = mosquitto_factory.tls
    ca = tls.other_ca if case == "untrusted_broker" else tls.ca
    cfg = _service_config(tmp_path, f"mqtts://127.0.0.1:{broker.port}", None)
    cfg.write_text(cfg.read_text() + f'[mqtt.tls]\nca_file = "{ca}"\n')
    proc = subprocess.run(
        [*DGS_EDGE, "run", "--config", str(cfg)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    expect = (
        "failed verification" if case == "untrusted_broker" else "rejected the client certificate"
    )
    assert last.startswith("dgs-edge: error:") and expect in last, proc.stderr
    assert "unreachable" not in last and "MQTT 5" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "rec").glob("*"))  # no session started


@pytest.mark.sim
def test_service_waits_for_a_clip_plugged_in_later(
    tmp_path: Path, mosquitto: Any, collector_factory: Any
) -> None:
    import signal

    from edge_service.sim.motion import manoeuvre
    from edge_service.virtualclip import start_virtual_clip

    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/ward-3/box-1/#")
    plug = tmp_path / "ttyCLIP"  # the configured port: nothing there yet
    cfg = _service_config(tmp_path, mosquitto.url, str(plug), min_free_mb=0, max_duration_s=6)
    proc = subprocess.Popen(
        [*DGS_EDGE, "run", "--config", str(cfg), "--sessions", "0"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clip = None
    try:

        def absent() -> bool:
            return any("clip_lost" in d["alarms"] for d in col.docs("/status"))

        wait_for(absent, 60, "the clip_lost alarm")
        assert proc.poll() is None  # still running, waiting
        clip = start_virtual_clip(manoeuvre("fair"), side="right", seed=3, autostart=True)
        os.symlink(clip.port, plug)
        wait_for(lambda: col.docs("/result"), 120, "a session with the clip")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        if clip is not None:
            clip.stop()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    last = col.docs("/status")[-1]
    assert last["state"] == "stopped" and "clip_lost" not in last["alarms"]


@pytest.mark.sim
def test_service_health_for_the_health_endpoint(tmp_path: Path, mosquitto: Any) -> None:
    from edge_service.config import load_config
    from edge_service.service import Service

    cfg = load_config(_service_config(tmp_path, mosquitto.url, None, min_free_mb=10**9))
    svc = Service(cfg)
    try:
        assert svc.open()
        h = svc.health()
        assert h["disk"]["state"] == "low" and h["disk"]["floor_mb"] == 10**9
        assert h["alarms"] == ["disk_low"] and h["outbox_pending"] == 0
        assert h["status"]["state"] == "online" and h["status"]["model"]["state"] == "loaded"
        # A second service on the same state dir is refused (it would finish sessions twice).
        other = Service(cfg)
        with pytest.raises(Exception, match="another dgs-edge process"):
            other.open()
        other.close()
    finally:
        svc.close()
