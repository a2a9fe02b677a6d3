"""`dgs-edge run`: config validation and one real service session (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_service.config import AppConfig, load_config
from edge_service.errors import ConfigError

DGS_EDGE = [sys.executable, "-m", "edge_service.cli.edge"]


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DGS_EDGE, *args], capture_output=True, text=True, timeout=timeout)


def test_defaults_validate() -> None:
    cfg = load_config(None)
    assert isinstance(cfg, AppConfig)
    assert cfg.mqtt.live_rate_hz <= 20
    assert cfg.session.side == "left"


def test_typo_in_config_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[session]\nsied = "left"\n')
    with pytest.raises(ConfigError, match=r"session\.sied: unknown key"):
        load_config(p)


def test_bad_values_are_explained(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[mqtt]\nurl = "mqtt://user:pw@host:1883"\n[session]\nside = "middle"\n')
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert "session.side" in msg and "mqtt.url" in msg and "secrets_file" in msg


def test_validate_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[session]\nside = "right"\n[mqtt]\nsite = "h1"\ndevice = "box-7"\n')
    proc = _cli("run", "--config", str(good), "--validate-config")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])["session"]["side"] == "right"
    bad = tmp_path / "bad.toml"
    bad.write_text("[session\n")
    proc = _cli("run", "--config", str(bad), "--validate-config")
    assert proc.returncode == 2
    assert "not valid TOML" in proc.stderr and proc.stderr.count("\n") == 1
    proc = _cli("run", "--config", str(tmp_path / "missing.toml"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


@pytest.mark.sim
def test_run_one_session_publishes_result(tmp_path: Path, mosquitto, collector_factory) -> None:  # type: ignore[no-untyped-def]
    from edge_service.sim.motion import manoeuvre
    from edge_service.virtualclip import start_virtual_clip

    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/ward-3/box-1/#")
    with start_virtual_clip(manoeuvre("fair"), side="right", seed=5, realtime=True) as clip:
        cfg = tmp_path / "dgs.toml"
        cfg.write_text(
            f"""
[session]
side = "right"
protocol = "fair"
recordings_dir = "{tmp_path / "rec"}"
state_dir = "{tmp_path / "state"}"
max_duration_s = 6
[source]
kind = "phantom"
fps_hz = 4
[clip]
port = "{clip.port}"
[mqtt]
url = "{mosquitto.url}"
site = "ward-3"
device = "box-1"
"""
        )
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.run(
            [*DGS_EDGE, "run", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    assert proc.returncode == 0, proc.stderr
    sessions = list((tmp_path / "rec").iterdir())
    assert len(sessions) == 1
    doc = json.loads((sessions[0] / "result.json").read_text())
    assert doc["side"] == "right"
    assert doc["data_quality"]["n_frames"] >= 20  # 6 s at 4 fps
    assert doc["angles"]["available"] and doc["angles"]["coverage"] > 0.8
    got = col.wait_docs("/result", 1, timeout_s=20)
    assert got[0]["session_id"] == doc["session_id"]
    assert sum(1 for _ in (sessions[0] / "imu.jsonl").open()) > 300  # clip data recorded


def test_shipped_example_config_validates() -> None:
    example = Path(__file__).resolve().parents[1] / "deploy" / "dgs-edge.example.toml"
    cfg = load_config(example)
    assert cfg.source.kind == "uvc" and cfg.mqtt.use_tls


def test_session_id_with_trailing_newline_is_refused() -> None:
    from edge_service.mqtt import topics

    with pytest.raises(ValueError, match="pseudonymous slug"):
        topics.session("s", "d", "abc\n", "result")
    assert topics.session("s", "d", "abc", "result").endswith("/sessions/abc/result")


@pytest.mark.parametrize("where", ["under_file", "is_file"])
def test_unusable_state_dir_is_one_line(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    state = blocker / "state" if where == "under_file" else blocker
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[session]\nstate_dir = "{state}"\nrecordings_dir = "{tmp_path / "rec"}"\n'
        'use_clip = false\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n'
    )
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg"))
    proc = subprocess.run(
        [*DGS_EDGE, "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert str(state) in proc.stderr


_MEMTUNE_CHILD = r"""
import ctypes, json, numpy as np
from edge_service import memtune

class MI(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MI

def mmapped_growth(nbytes):
    before = libc.mallinfo2().hblkhd
    a = np.ones(nbytes, np.uint8)  # written: a real, resident block
    grew = libc.mallinfo2().hblkhd - before
    del a
    return grew

big = np.ones(16 << 20, np.uint8)
del big  # freeing a 16 MiB mmap'd block raises glibc's dynamic threshold to 16 MiB
frame = 640 * 480 * 3
out = {"before": mmapped_growth(frame)}
out["applied"] = memtune.configure()
out["trim"] = memtune.trim()  # the free heap top goes back (else it would serve the block)
out["after"] = mmapped_growth(frame)
out["hugepage"] = bool(np._core.multiarray._get_madvise_hugepage())
print(json.dumps(out))
"""


def test_memtune_keeps_frame_sized_blocks_off_the_heap() -> None:
    """The soak's RSS creep: once a large block is freed, glibc serves frame-sized arrays
    from the heap (kept there, fragmented). After memtune.configure() they come from mmap
    again (returned on free), numpy's MADV_HUGEPAGE is off, and trim() works."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "NUMPY_MADV"))}
    r = subprocess.run(
        [sys.executable, "-c", _MEMTUNE_CHILD], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    frame = 640 * 480 * 3
    assert out["before"] < frame  # the mechanism: the dynamic threshold put it on the heap
    assert out["after"] >= frame  # fixed threshold: mmap'd, given back when freed
    assert out["applied"] == {"mmap_threshold": True, "numpy_hugepage": False}
    assert out["hugepage"] is False and out["trim"] is True


def test_systemd_unit_sets_the_same_memory_settings() -> None:
    """The unit's environment matches memtune (it also covers allocations before import)."""
    from edge_service import memtune

    unit = (Path(__file__).parents[1] / "deploy" / "systemd" / "dgs-edge.service").read_text()
    env = dict(
        line.removeprefix("Environment=").split("=", 1)
        for line in unit.splitlines()
        if line.startswith("Environment=")
    )
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) == memtune.MMAP_THRESHOLD_BYTES
    assert env["NUMPY_MADVISE_HUGEPAGE"] == "0"


@pytest.mark.sim
def test_floor_crossed_before_the_first_frame_keeps_the_service_running(
    tmp_path: Path,
    mosquitto,
    collector_factory,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """Found by the soak: the disk filled between the free-space check before a session and
    its first frame; the service exited 2. Now the empty session is parked (a `parked` event
    tells the consumer that saw `started`), disk_low is raised and the service goes on
    waiting for space. The race is forced: the pre-session check is told there is space
    while the floor (min_free_mb far above any disk) stops acquisition at once."""
    import argparse
    import threading

    from edge_service.cli import edge_run

    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/ward-3/box-1/#")
    cfg = tmp_path / "dgs.toml"
    cfg.write_text(
        f"""
[session]
recordings_dir = "{tmp_path / "rec"}"
state_dir = "{tmp_path / "state"}"
use_clip = false
max_duration_s = 5
[source]
kind = "phantom"
fps_hz = 4
[mqtt]
url = "{mosquitto.url}"
site = "ward-3"
device = "box-1"
[storage]
min_free_mb = 100000000
"""
    )
    answers = iter([True, False])  # space for one session (the race), then stop waiting
    monkeypatch.setattr(edge_run, "_wait_for_space", lambda svc, stop, finite: next(answers))
    monkeypatch.setattr(edge_run.signal, "signal", lambda *a: None)  # not the main thread's
    rc: list[int] = []
    t = threading.Thread(
        target=lambda: rc.append(
            edge_run.run(argparse.Namespace(config=cfg, validate_config=False, sessions=0))
        )
    )
    t.start()
    t.join(120)
    assert rc == [0]  # not exit 2
    (session,) = list((tmp_path / "rec").iterdir())
    parked = json.loads((session / "parked.json").read_text())
    assert "free-space floor before the first frame" in parked["reason"]
    events = col.wait_docs("/events", 2, timeout_s=20)
    assert [e["event"] for e in events] == ["started", "parked"]
    assert events[1]["data"]["result_msg_id"] is None
    status = [d for d in col.docs("/status") if d.get("alarms")]
    assert any("disk_low" in d["alarms"] for d in status)
