"""Live workstation path vs today's `run_session`, on one recorded session replayed as a probe.

A phantom exam (left, affected side: rest, FAIR x2, seated piriformis stretch) is recorded
once at 10 fps with its clip angles, then replayed by `ReplayRig` at 30 and 60 fps (decoded
up front, so the source costs nothing) for `DURATION_S` of probe time:

- live: the live service behind the running workstation (uvicorn on loopback) with the page
  open in headless Chromium (Selenium + the system chromedriver); the lag is measured in the
  browser, from the frame's acquisition time to the overlay event's arrival in the page.
- run_session: today's pipeline (detection on the acquisition thread, then a full second
  detection pass in `analyze_session`), on the same replay; its lag is frame time -> the
  detection of that frame (it has no live view at all).

"Result after the last frame" is from the last frame's probe time until the result document
is written. CPU: per-core busy share of the whole machine (it is shared with other jobs, so
this is an upper bound for our process) and this process's CPU seconds per wall second.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DURATION_S = 60.0
QUICK_S = 15.0


def _record(d: Path) -> Path:
    """The phantom exam, rendered as fast as the CPU allows, written as a recording."""
    from edge_service.live.rig import exam_motion
    from edge_service.phantom import PhantomConfig, PhantomSimulator
    from edge_service.recording import RecordingWriter, SessionMeta

    motion = exam_motion()
    cfg = PhantomConfig(side="left", nerve="swollen", calcification=True, gliding="restricted")
    sim = PhantomSimulator(cfg, seed=11)
    t0 = 1_800_000_000.0
    out = d / "rec"
    meta = SessionMeta(side="left", protocol="exam", source={"kind": "phantom", "seed": 11})
    with RecordingWriter(out, meta) as w:
        for pf in sim.run(motion, fps=10.0, t0=t0):
            w.add_frame(pf.frame)
        ts, ang = motion.sample(100.0)
        for i, (t, a) in enumerate(zip(ts, ang, strict=True)):
            w.add_imu({"t": t0 + float(t), "seq": i, "flexion_deg": float(a[0]),
                       "adduction_deg": float(a[1]), "rotation_deg": float(a[2]), "status": 0})  # fmt: skip
    return out


class _Cpu:
    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.t0 = psutil.cpu_times(percpu=True)
        self.p0 = time.process_time()
        self.w0 = time.monotonic()

    def done(self) -> tuple[list[float], float]:
        t1 = self.psutil.cpu_times(percpu=True)
        busy = []
        for a, b in zip(self.t0, t1, strict=True):
            tot = sum(b) - sum(a)
            idle = (b.idle - a.idle) + (getattr(b, "iowait", 0) - getattr(a, "iowait", 0))
            busy.append(100.0 * (tot - idle) / tot if tot > 0 else 0.0)
        own = (time.process_time() - self.p0) / (time.monotonic() - self.w0)
        return busy, own


def _pct(v: list[float], q: float) -> float | None:
    return float(np.percentile(v, q)) if v else None


def _live(rec: Path, fps: float, dur: float, detector: Any, tmp: Path) -> dict[str, Any]:
    import httpx

    from edge_service.live.rig import ReplayRig
    from edge_service.live.service import LiveService, ServiceSettings
    from edge_service.workstation.server import BackgroundServer
    from edge_service.workstation.settings import WorkstationSettings
    from tests.workstation.test_browser import make_driver

    rig = ReplayRig(rec, fps, repeat_to_s=dur)
    svc = LiveService(rig, detector, ServiceSettings(recordings_dir=tmp / f"live{fps:g}",
                                                     min_free_disk_mb=1))  # fmt: skip
    srv = BackgroundServer(svc, WorkstationSettings(port=0), port=0).start()
    drv = make_driver()
    try:
        drv.get(srv.url + "/")
        deadline = time.monotonic() + 20
        while not drv.execute_script("return window.dgs && window.dgs.images !== undefined"):
            if time.monotonic() > deadline:
                raise RuntimeError("the page did not load")
            time.sleep(0.1)
        time.sleep(1.0)  # the live socket is open
        drv.execute_script("window.dgs.lags = []; window.dgs.overlays = 0; window.dgs.images = 0;")
        c = httpx.Client(base_url=srv.url, timeout=30)
        cpu = _Cpu()
        sid = c.post("/api/v1/sessions", json={"side": "left", "protocol": "exam",
                                               "accession_number": "BENCH",
                                               "patient_id": "BENCH"}).json()["id"]  # fmt: skip
        while True:
            d = c.get(f"/api/v1/sessions/{sid}").json()
            if d["state"] in ("done", "failed"):
                break
            time.sleep(0.02)
        busy, own = cpu.done()
        if d["state"] != "done":
            raise RuntimeError(f"live session failed: {d['error']}")
        lags = [float(x) for x in drv.execute_script("return window.dgs.lags")]
        images = int(drv.execute_script("return window.dgs.images"))
        dq = d["result"]["data_quality"]
        entry = svc.get(sid)
        assert entry.live is not None and rig.last_t is not None
        result_after = (entry.live.result_ready_t or 0) - rig.last_t
        n_rec = len((entry.path / "frames.csv").read_text().splitlines()) - 1
        return {
            "delivered": rig.delivered,
            "recorded": n_rec,
            "analysed": dq["frames_analysed"],
            "dropped_det": dq["dropped_for_detection"],
            "analysed_per_s": dq["frames_analysed"] / (rig.delivered / fps),
            "lag_p50": _pct(lags, 50),
            "lag_p95": _pct(lags, 95),
            "lag_where": f"browser ({len(lags)} overlays, {images} images)",
            "result_after_s": result_after,
            "busy": busy,
            "own_cores": own,
            "restricted": d["result"]["gliding"]["restricted"],
            "ap": d["result"]["nerve"]["ap_diameter_mm"],
        }
    finally:
        drv.quit()
        svc.close()
        srv.stop()


def _today(rec: Path, fps: float, dur: float, detector: Any, tmp: Path) -> dict[str, Any]:
    from edge_service.live.rig import ReplayRig
    from edge_service.pipeline import run_session
    from edge_service.recording import SessionMeta

    rig = ReplayRig(rec, fps, repeat_to_s=dur)
    inp = rig.open("left", "exam")
    lags: list[float] = []

    class Timed:
        def __init__(self, det: Any) -> None:
            self.det = det
            self.live = True

        def detect(self, frame: Any) -> Any:
            r = self.det.detect(frame)
            if self.live:
                lags.append((time.time() - frame.t) * 1e3)
            return r

    timed = Timed(detector)
    done_acq: list[float] = []

    def progress(p: Any) -> None:
        if p.phase == "analysing" and not done_acq:
            timed.live = False  # the second, offline pass is not live lag
            done_acq.append(time.time())

    cpu = _Cpu()
    res = run_session(frames=inp.frames, out_dir=tmp / f"today{fps:g}",
                      meta=SessionMeta(side="left", protocol="exam"), detector=timed,
                      timeline=inp.timeline, progress=progress)  # fmt: skip
    t_res = time.time()
    busy, own = cpu.done()
    assert rig.last_t is not None
    n = res["data_quality"]["n_frames"]
    return {
        "delivered": rig.delivered,
        "recorded": n,
        "analysed": n,
        "dropped_det": 0,
        "analysed_per_s": n / (done_acq[0] - (rig.last_t - (rig.delivered - 1) / fps)),
        "lag_p50": _pct(lags, 50),
        "lag_p95": _pct(lags, 95),
        "lag_where": "frame -> detection (no live view)",
        "result_after_s": t_res - rig.last_t,
        "busy": busy,
        "own_cores": own,
        "restricted": res["gliding"]["restricted"],
        "ap": res["nerve"]["ap_diameter_mm"],
    }


def _f(v: Any, nd: int = 0) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _ratio_words(live: float, old: float) -> str:
    # run_session's lag is frame -> detection with no browser hop, so it can be the lower one
    # when it keeps up; say so instead of printing "0x lower".
    if old >= live:
        return f"{old / live:.0f}× lower"
    return f"run_session's frame→detection lag is {live / old:.1f}× lower: no browser hop, no live view"


def run(quick: bool = False) -> str:
    from edge_service.detector import Detector

    dur = QUICK_S if quick else DURATION_S
    detector = Detector.load()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmpd:
        tmp = Path(tmpd)
        rec = _record(tmp)
        for fps in (30.0, 60.0):
            for name, fn in (("live workstation", _live), ("today's run_session", _today)):
                r = fn(rec, fps, dur, detector, tmp)
                rows.append((fps, name, r))
    lines = [
        "## Live workstation path vs `run_session` (recorded exam replayed as a probe)",
        "",
        f"{dur:g} s of probe time per run; shipped model, 1 onnxruntime thread; page open in "
        "headless Chromium for the live runs. Goals: every delivered frame recorded; live lag "
        "p95 ≤ 100 ms at 30 fps; result ≤ 2 s after the last frame of a 60 s session.",
        "",
        "| fps | pipeline | frames delivered / recorded | analysed (dropped for detection) | "
        "analysed/s | live lag p50 / p95 ms | lag measured at | result after last frame s | "
        "machine CPU busy per core % | own CPU cores | AP mm / restricted |",
        "|---:|---|---:|---:|---:|---:|---|---:|---|---:|---|",
    ]
    for fps, name, r in rows:
        lines.append(
            f"| {fps:g} | {name} | {r['delivered']} / {r['recorded']} | {r['analysed']} "
            f"({r['dropped_det']}) | {r['analysed_per_s']:.1f} | {_f(r['lag_p50'])} / "
            f"{_f(r['lag_p95'])} | {r['lag_where']} | {r['result_after_s']:.2f} | "
            f"{' / '.join(f'{b:.0f}' for b in r['busy'])} | {r['own_cores']:.2f} | "
            f"{_f(r['ap'], 1)} / {r['restricted']} |"
        )
    by = {(fps, name): r for fps, name, r in rows}
    lines.append("")
    for fps in (30.0, 60.0):
        a, b = by[(fps, "live workstation")], by[(fps, "today's run_session")]
        if a["lag_p95"] and b["lag_p95"]:
            lines.append(
                f"- {fps:g} fps: live lag p95 {a['lag_p95']:.0f} ms vs {b['lag_p95']:.0f} ms "
                f"({_ratio_words(a['lag_p95'], b['lag_p95'])}); result after the last frame "
                f"{a['result_after_s']:.2f} s vs {b['result_after_s']:.1f} s "
                f"({b['result_after_s'] / max(a['result_after_s'], 1e-3):.0f}× sooner)."
            )
    lines.append(
        "- The live result is built from the analysed frames only (drop-to-latest); the "
        "offline `dgs-edge analyze` still detects every recorded frame."
    )
    return "\n".join(lines)
