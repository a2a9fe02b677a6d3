"""Soak: `dgs-edge run` for a long time with everything that goes wrong in a clinic.

The real service (`dgs-edge run --sessions 0`, a subprocess, niced) records phantom
sessions back to back with a virtual clip on a pty, publishes to a real Mosquitto and keeps
its recordings and outbox on a small tmpfs. Meanwhile this harness:

- restarts the broker (down for 15 s) every ~6 min (quick: once);
- unplugs the clip (virtual clip stopped, its port gone for 5 s) and plugs a new one in
  behind the same configured path (a symlink) every ~7 min (quick: once);
- fills the disk under the free-space floor for 60 s once (the service must stop cleanly,
  raise the alarm, wait and resume; retention deletes delivered sessions for space);
- freezes the probe image (the phantom repeats its last frame, see benchmarks/soak_service.py)
  every ~5 min until the service raises the probe_frozen alarm (quick: once);
- samples the service's RSS, open fds and threads every 10 s.

A subscriber with a persistent session counts distinct session ids of `started` events and
distinct result msg_ids: sessions started vs delivered, and which sessions had a freeze.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HERE = Path(__file__).resolve().parent


class _Counter:
    def __init__(self, host: str, port: int, topic: str) -> None:
        self.started: set[str] = set()
        self.results: dict[str, set[str]] = {}
        self.status: list[dict[str, Any]] = []
        self.last_started = ""
        self.frozen: dict[str, float] = {}  # session id -> when probe_frozen was first seen
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, "soak-counter", protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7200  # persistent: QoS 1 queued across broker restarts
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, 1)
        self.c.on_message = self._msg
        self.c.reconnect_delay_set(1, 2)
        self.c.connect_async(host, port, 30, clean_start=False, properties=props)
        self.c.loop_start()

    def _msg(self, c: Any, u: Any, m: Any) -> None:
        try:
            d = json.loads(m.payload)
        except ValueError:
            return
        with self.lock:
            if m.topic.endswith("/status"):
                self.status.append(d)
                if "probe_frozen" in d.get("alarms", []) and self.last_started:
                    self.frozen.setdefault(self.last_started, time.monotonic())
            elif m.topic.endswith("/events") and d.get("event") == "started":
                self.started.add(d["session_id"])
                self.last_started = d["session_id"]
            elif m.topic.endswith("/result"):
                self.results.setdefault(d["session_id"], set()).add(d["msg_id"])

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _proc_stats(pid: int) -> dict[str, float]:
    st = Path(f"/proc/{pid}/status").read_text()
    vals = dict(line.split(":", 1) for line in st.splitlines() if ":" in line)
    return {
        "rss_mb": int(vals["VmRSS"].split()[0]) / 1024,
        "threads": int(vals["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def _mount_tmpfs(path: Path, size_mb: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
    )
    return r.returncode == 0


def _fit_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope (units per hour) over the second half of the run (after warm-up)."""
    half = samples[len(samples) // 2 :]
    if len(half) < 3:
        return float("nan")
    n = len(half)
    mx = sum(t for t, _ in half) / n
    my = sum(v for _, v in half) / n
    sxx = sum((t - mx) ** 2 for t, _ in half)
    sxy = sum((t - mx) * (v - my) for t, v in half)
    return (sxy / sxx) * 3600 if sxx > 0 else float("nan")


def _freeze(counter: _Counter, flag: Path) -> tuple[float, str | None]:
    """Freeze the probe image until the service raises probe_frozen (or 60 s pass: a freeze
    that starts during analysis only counts once the next session acquires)."""
    with counter.lock:
        before = set(counter.frozen)
    flag.touch()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 60:
            with counter.lock:
                new = [(t, sid) for sid, t in counter.frozen.items() if sid not in before]
            if new:
                t, sid = new[0]
                return t - t0, sid
            time.sleep(0.2)
        return -1.0, None
    finally:
        flag.unlink(missing_ok=True)


def _floor(
    samples: list[tuple[float, float]], window_s: float = 120.0
) -> list[tuple[float, float]]:
    """The lowest sample of each window: RSS between analyses. A 10 s sample lands in
    acquisition or in an analysis (large arrays, mmap'd and returned after it) by chance;
    the window minimum is the steady level that a leak would raise."""
    out: dict[int, tuple[float, float]] = {}
    for t, v in samples:
        k = int(t // window_s)
        if k not in out or v < out[k][1]:
            out[k] = (t, v)
    return [out[k] for k in sorted(out)]


def _vma_class(v: list[Any]) -> str:
    """A mapping from soak_service._vmas(): what it most likely is (see that docstring)."""
    start, name, guard = int(v[0], 16), v[3], v[5]
    if name == "[heap]":
        return "malloc main heap ([heap])"
    if name:
        return "file-backed (copy-on-write)"
    if guard:
        return "thread stacks"
    if start % (64 << 20) == 0:
        return "malloc thread arenas"
    return "other anonymous mmaps"


def _memdiag_table(path: Path) -> list[str]:
    """In-service breakdown (DGS_SOAK_MEMDIAG): resident anonymous memory by kind, the
    lowest of the first and of the last five samples (a sample inside an analysis carries
    its transient arrays)."""
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []
    if len(rows) < 10:
        return []
    series: dict[str, list[float]] = {}
    for r in rows:
        agg: dict[str, float] = {}
        for v in r.get("vmas", []):
            k = _vma_class(v)
            agg[k] = agg.get(k, 0.0) + v[4] / 1024
        agg["all anonymous (smaps_rollup)"] = r.get("anon_mb", float("nan"))
        agg["malloc in use (mallinfo2)"] = r.get("heap_used_mb", float("nan"))
        agg["Python small-object arenas (count)"] = r.get("py_arenas", float("nan"))
        agg["Python objects tracked by gc (k)"] = r.get("gc_objects", 0) / 1000
        for k, val in agg.items():
            series.setdefault(k, []).append(val)
    span = f"{rows[0]['t'] / 60:.0f}–{rows[-1]['t'] / 60:.0f} min"
    out = [
        "",
        f"In-service memory by kind ({len(rows)} samples, {span}; MB unless stated; lowest of "
        "the first 5 → lowest of the last 5 samples):",
        "",
        "| kind | first | last |",
        "|---|---|---|",
    ]
    for k, vals in sorted(series.items()):
        out.append(f"| {k} | {min(vals[:5]):.1f} | {min(vals[-5:]):.1f} |")
    return out


def run(quick: bool = False) -> str:
    from edge_service.mqtt.broker import Mosquitto
    from edge_service.sim.motion import manoeuvre
    from edge_service.virtualclip import start_virtual_clip

    duration_s = 150.0 if quick else float(os.environ.get("DGS_SOAK_S", "1860"))
    broker_every = 60.0 if quick else 360.0
    clip_every = 80.0 if quick else 420.0
    freeze_first, freeze_every = (40.0, 1e9) if quick else (150.0, 300.0)
    fill_at = 0.45 * duration_s
    work = Path(tempfile.mkdtemp(prefix="dgs-soak-"))
    disk = work / "disk"
    tmpfs = _mount_tmpfs(disk, 160)
    events: list[str] = []
    broker = Mosquitto(work / "broker")
    broker.start()
    counter = _Counter("127.0.0.1", broker.port, "dgs/v1/soak/box-1/#")
    clip_link = work / "clip"
    clip = start_virtual_clip(manoeuvre("fair"), side="left", seed=1, autostart=True)
    os.symlink(clip.port, clip_link)
    cfg = work / "dgs.toml"
    cfg.write_text(
        f"""
[session]
recordings_dir = "{disk / "rec"}"
state_dir = "{disk / "state"}"
max_duration_s = 20
[source]
kind = "phantom"
fps_hz = 4
[clip]
port = "{clip_link}"
[mqtt]
url = "{broker.url}"
site = "soak"
device = "box-1"
reconnect_max_s = 2.0
[storage]
min_free_mb = 40
target_free_mb = 70
check_interval_s = 1.0
"""
    )
    log = (work / "service.log").open("w")
    freeze_flag = work / "freeze"  # while it exists the phantom repeats its last image
    freezes: list[tuple[float, str | None]] = []  # (seconds to the alarm or -1, session id)
    svc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.soak_service", "-v", "run",
         "--config", str(cfg), "--sessions", "0"],
        stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent,
        env=dict(os.environ, PYTHONUNBUFFERED="1", DGS_SOAK_FREEZE_FILE=str(freeze_flag)),
        preexec_fn=lambda: os.nice(10),  # the machine is shared: the soak is background work
    )  # fmt: skip
    t0 = time.monotonic()
    samples: list[tuple[float, dict[str, float]]] = []
    next_broker, next_clip, filled, unfill_at = broker_every, clip_every, False, None
    next_freeze = freeze_first
    filler = disk / "filler.bin"
    try:
        while (el := time.monotonic() - t0) < duration_s:
            if svc.poll() is not None:
                events.append(f"{el:.0f} s: service exited with {svc.returncode}")
                break
            with counter.lock:
                warm = bool(counter.results)  # after the first delivered session (warm-up)
            if warm:
                with contextlib.suppress(OSError, KeyError):
                    samples.append((el, _proc_stats(svc.pid)))
            rss_now = f"RSS {samples[-1][1]['rss_mb']:.0f} MB" if samples else "warm-up"
            if el >= next_broker:
                broker.stop()
                time.sleep(15)  # the outage itself (a fixed length is the point here)
                broker.start()
                events.append(f"{el:.0f} s: broker down 15 s ({rss_now})")
                next_broker += broker_every
            if el >= next_clip:
                clip.stop()
                os.unlink(clip_link)
                time.sleep(5)  # unplugged for 5 s
                clip = start_virtual_clip(manoeuvre("fair"), side="left", seed=2, autostart=True)
                os.symlink(clip.port, clip_link)
                events.append(f"{el:.0f} s: clip unplugged 5 s, new clip plugged in ({rss_now})")
                next_clip += clip_every
            if el >= next_freeze:
                freezes.append(_freeze(counter, freeze_flag))
                secs = freezes[-1][0]
                events.append(
                    f"{el:.0f} s: probe frozen: "
                    + (
                        f"probe_frozen alarm after {secs:.1f} s"
                        if secs >= 0
                        else "NO alarm in 60 s"
                    )
                    + f" ({rss_now})"
                )
                next_freeze += freeze_every
            if tmpfs and not filled and el >= fill_at:
                free = shutil.disk_usage(disk).free
                with filler.open("wb") as f:  # leave ~20 MB: under the 40 MB floor
                    f.truncate(0)
                    chunk = b"\0" * (1 << 20)
                    for _ in range(max(0, (free >> 20) - 20)):
                        f.write(chunk)
                filled, unfill_at = True, el + 60
                events.append(f"{el:.0f} s: disk filled to ~20 MB free for 60 s ({rss_now})")
            if unfill_at is not None and el >= unfill_at:
                filler.unlink(missing_ok=True)
                unfill_at = None
                events.append(f"{el:.0f} s: filler removed")
            time.sleep(10 if not quick else 5)
    finally:
        filler.unlink(missing_ok=True)
        svc.send_signal(signal.SIGTERM)
        try:
            svc.wait(180)
        except subprocess.TimeoutExpired:
            svc.kill()
            events.append("service did not stop within 180 s of SIGTERM (killed)")
        # Anything the last session left queued: the contract command delivers it.
        rec = subprocess.run(
            [sys.executable, "-m", "edge_service.cli.edge", "recover", "--config", str(cfg),
             "--timeout", "60"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        events.append(f"final `dgs-edge recover`: exit {rec.returncode}: {rec.stdout.strip()}")
        time.sleep(3)
        clip.stop()
        counter.close()
        broker.stop()
        log.close()
    text = (work / "service.log").read_text(errors="replace")
    keep = Path(
        os.environ.get("DGS_SOAK_LOG", str(Path(tempfile.gettempdir()) / "dgs-soak-service.log"))
    )
    keep.write_text(text)  # for a closer look (the work dir is removed below)
    floor_stops = text.count("is under the floor")
    retention_deletes = text.count("retention: deleted")
    tracebacks = text.count("Traceback")
    with counter.lock:
        started = set(counter.started)
        results = {k: len(v) for k, v in counter.results.items()}
        bdseqs = [d.get("bdSeq") for d in counter.status if d.get("bdSeq") is not None]
        alarms = sorted({a for d in counter.status for a in d.get("alarms", [])})
        frozen_sids = [sid for _, sid in freezes if sid]
        cleared = not any("probe_frozen" in d.get("alarms", []) for d in counter.status[-1:])
    delivered = sum(1 for sid in started if results.get(sid, 0) >= 1)
    frozen_delivered = sum(1 for sid in frozen_sids if results.get(sid, 0) >= 1)
    dup = sum(1 for n in results.values() if n > 1)
    rss = [(t, s["rss_mb"]) for t, s in samples]
    floor = _floor(rss)
    first, last = samples[0][1], samples[-1][1]
    if tmpfs:
        subprocess.run(["umount", str(disk)], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    ratio = _compression_row()
    lines = [
        "## Soak: `dgs-edge run` unattended",
        "",
        f"Service ran {duration_s / 60:.0f} min ({'quick' if quick else 'full'}): phantom "
        f"sessions of 20 s at 4 fps back to back, virtual clip over a pty, real Mosquitto, "
        f"recordings + outbox on {'a 160 MB tmpfs' if tmpfs else 'a plain folder (tmpfs mount refused)'}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| sessions started (distinct `started` events) | {len(started)} |",
        f"| sessions delivered (result received) | {delivered} |",
        f"| results with more than one distinct msg_id | {dup} |",
        f"| samples (every 10 s after the first delivered session) | {len(samples)} |",
        f"| RSS start → end (MB) | {first['rss_mb']:.0f} → {last['rss_mb']:.0f} |",
        f"| RSS growth, 2nd half, least squares (MB/h) | {_fit_per_hour(rss):.1f} |",
        f"| RSS floor (lowest per 2 min) first → last window (MB) | {floor[0][1]:.0f} → {floor[-1][1]:.0f} |",
        f"| RSS floor growth, 2nd half, least squares (MB/h) | {_fit_per_hour(floor):.1f} |",
        f"| RSS min / max over the run (MB) | {min(v for _, v in rss):.0f} / {max(v for _, v in rss):.0f} |",
        f"| open fds start → end | {first['fds']:.0f} → {last['fds']:.0f} |",
        f"| threads start → end | {first['threads']:.0f} → {last['threads']:.0f} |",
        f"| tracebacks in the service log | {tracebacks} |",
        f"| status births seen (bdSeq first → last) | {len(bdseqs)} ({bdseqs[0] if bdseqs else '—'} → {bdseqs[-1] if bdseqs else '—'}) |",
        f"| alarms seen in the retained status | {', '.join(alarms) or 'none'} |",
        f"| free-space floor reached (log lines) / sessions deleted by retention | {floor_stops} / {retention_deletes} |",
        f"| probe freezes injected / detected (probe_frozen alarm) | {len(freezes)} / {len(frozen_sids)} |",
        f"| sessions with a freeze delivered / alarm cleared at the end | {frozen_delivered} of {len(frozen_sids)} / {'yes' if cleared else 'no'} |",
        "",
        "Events:",
        "",
        *(f"- {e}" for e in events),
        *(
            _memdiag_table(Path(os.environ["DGS_SOAK_MEMDIAG"]))
            if os.environ.get("DGS_SOAK_MEMDIAG")
            else []
        ),
        "",
        ratio,
    ]
    return "\n".join(lines)


def _compression_row() -> str:
    """cine.dcm size: JPEG-LS / RLE lossless vs native, on a phantom recording."""
    from edge_service.phantom import PhantomConfig, PhantomSimulator
    from edge_service.recording import RecordingWriter, SessionMeta, open_recording
    from edge_service.sim.motion import manoeuvre

    sim = PhantomSimulator(PhantomConfig(), seed=3)
    frames = [
        pf.frame
        for _, pf in zip(range(40), sim.run(manoeuvre("fair"), fps=4, t0=0.0), strict=False)
    ]
    sizes: dict[str, int] = {}
    secs: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        for comp in ("none", "jpegls", "rle"):
            out = Path(d) / comp
            w = RecordingWriter(out, SessionMeta(side="left", protocol="fair"), compression=comp)  # type: ignore[arg-type]
            for f in frames:
                w.add_frame(f)
            t = time.perf_counter()
            w.close()
            secs[comp] = (time.perf_counter() - t) / len(frames) * 1000
            sizes[comp] = (out / "cine.dcm").stat().st_size
            back = [f.pixels for f in open_recording(out).frames()]
            assert all((a == b.pixels).all() for a, b in zip(back, frames, strict=True))
    h, w_ = frames[0].pixels.shape
    return "\n".join(
        [
            f"### cine.dcm storage ({len(frames)} phantom frames {w_}×{h}, decoded bit-exact)",
            "",
            "| transfer syntax | bytes/frame | ratio vs native | close time ms/frame |",
            "|---|---|---|---|",
            *(
                f"| {name} | {sizes[k] / len(frames):,.0f} | {sizes['none'] / sizes[k]:.2f}× | {secs[k]:.1f} |"
                for k, name in (
                    ("none", "Explicit VR LE (native)"),
                    ("jpegls", "JPEG-LS lossless (default)"),
                    ("rle", "RLE lossless"),
                )
            ),
        ]
    )
