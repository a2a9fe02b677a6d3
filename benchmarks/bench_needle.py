"""Needle benchmark: the learned locator (models/needle.onnx) and the classical peer
(ridge filter + Hough/RANSAC, scikit-image) side by side on the same frames.

Own data: phantom needle sessions of the HELD-OUT generator configuration (needle angles,
gauge, specular lobe, probe frequency and speckle density the model never trained on;
edge_service.phantom.needle.HELD_OUT): whole procedures (tip error, angle error, detection
with visible and with faint shafts), intraneural approaches (is the approach flagged, tip or
projected path within 1 mm of the nerve outline, before the tip crosses the epineurium),
sessions without a needle and with a needle-like reflector (false needles per minute).
Foreign data: frames of the independent foreign simulator (benchmarks/foreign, no needle)
and the real pydicom / pydicom-data ultrasound files (no needle): false-needle rates.

Both locators get the same frames in the same order; the learned one keeps its frame
history (its temporal cue), the classical one is stateless. The classical peer runs on
every CLASSICAL_EVERY-th frame (it is ~10x slower); the side-by-side rows use exactly
those frames for both.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.needle_procedure import (
    NegTally,
    ProcTally,
    SessionProcedure,
    breakdown_rows,
    category,
    procedure_rows,
)
from edge_service.detector import Detector
from edge_service.needle.classical import ClassicalLocator
from edge_service.needle.geometry import measure
from edge_service.needle.learned import LearnedLocator
from edge_service.needle.types import NeedleResult
from edge_service.phantom.needle_session import make_session

FPS = 8.0
CLASSICAL_EVERY = 3
ALARM_MM = 1.0  # "stop" distance: tip or projected path within 1 mm of the epineurium
CAUTION_MM = 3.0
FAINT = 0.5  # visible shaft fraction below which a shaft counts as faint
DEBOUNCE = 2  # consecutive flagged frames that make an alarm (one frame can be noise)
GOALS = {"tip_median_mm": 0.5, "false_per_10min": 1.0}

FULL: dict[str, list[tuple[int, float | None]]] = {
    "procedure": [(500, None), (501, None)],
    "intraneural": [(510, None), (511, None), (512, None), (513, None), (514, None)],
    "reflector": [(520, 180.0), (521, 180.0)],
    "none": [(530, 180.0), (531, 180.0)],
    # held out of plane: faint shafts (out-of-plane drift at the steep held-out angles)
    "faint": [(540, None), (541, None), (542, None)],
}
QUICK: dict[str, list[tuple[int, float | None]]] = {
    "procedure": [(500, 25.0)],
    "intraneural": [(510, None)],
    "reflector": [(520, 6.0)],
    "none": [(530, 6.0)],
    "faint": [(542, None)],
}


@dataclass
class Col:
    """One locator's tallies."""

    tip_err: list[float] = field(default_factory=list)
    tip_err_vis: list[float] = field(default_factory=list)
    tip_err_faint: list[float] = field(default_factory=list)
    ang_err: list[float] = field(default_factory=list)
    n_vis: int = 0
    found_vis: int = 0
    n_faint: int = 0
    found_faint: int = 0
    neg_frames: int = 0
    neg_found: int = 0
    neg_events: int = 0
    neg_near_nerve_events: int = 0
    neg_minutes: float = 0.0
    reflector_frames: int = 0
    reflector_found: int = 0
    latency: list[float] = field(default_factory=list)
    intraneural: list[tuple[bool, float | None]] = field(default_factory=list)


def _q(v: list[float], q: float) -> float:
    return float(np.percentile(v, q)) if v else float("nan")


def _f(v: float, nd: int = 2) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{nd}f}"


def _err_mm(res: NeedleResult, truth: dict[str, Any], spacing: float) -> float:
    assert res.tip_px is not None
    return (
        math.hypot(res.tip_px[0] - truth["tip_px"][0], res.tip_px[1] - truth["tip_px"][1]) * spacing
    )


class Events:
    """Counts runs of consecutive positive frames (one run = one event)."""

    def __init__(self) -> None:
        self.run = 0
        self.events = 0

    def add(self, pos: bool) -> None:
        if pos:
            self.run += 1
            if self.run == DEBOUNCE:
                self.events += 1
        else:
            self.run = 0


Plan = dict[str, list[tuple[int, float | None]]]


def run_sessions(
    quick: bool, plan: Plan | None = None, source: Any = None
) -> tuple[dict[str, Col], dict[str, Col], dict[str, Any]]:
    """(all frames per locator, classical-subset frames per locator, info)."""
    learned = LearnedLocator()
    classical = ClassicalLocator()
    det = Detector.load()
    every: dict[str, Col] = {"learned": Col()}
    same: dict[str, Col] = {"learned": Col(), "classical": Col()}
    info: dict[str, Any] = {
        "sessions": 0,
        "frames": 0,
        "render_s": 0.0,
        "proc": {},
        "neg": {},
        "errs": {"learned": {}, "classical": {}},
    }
    proc: dict[str, ProcTally] = info["proc"]
    neg: dict[str, NegTally] = info["neg"]
    if plan is None:
        plan = QUICK if quick else FULL
    source = source or make_session
    info["plan"] = plan
    for kind, specs in plan.items():
        for seed, dur in specs:
            ses = source(kind, seed, "held-out", duration_s=dur)
            info["sessions"] += 1
            learned.reset()
            det.reset()
            t_cross = ses.info.get("epineurium_cross_t")
            plan_ = ses.scene.plan
            cinfo: dict[str, Any] = {
                "t_insert": None if plan_ is None else plan_.t_insert,
                "bolus_durations": {}
                if plan_ is None
                else {i: inj.duration_s for i, inj in enumerate(plan_.injections)},
                "epineurium_cross_t": t_cross,
                "fps": FPS,
            }
            prev_angle: float | None = None
            sp_an = SessionProcedure(kind) if kind in ("procedure", "reflector", "none") else None
            flags = {k: 0 for k in ("every", "learned", "classical")}
            first_flag: dict[str, float | None] = {k: None for k in flags}
            neg_ev = {k: (Events(), Events()) for k in ("every", "learned", "classical")}
            n_frames = 0
            t_r = time.perf_counter()
            t_last = 0.0
            for i, pf in enumerate(ses.frames(FPS)):
                n_frames += 1
                t_last = pf.truth["t_rel_s"]
                fr = pf.frame
                sp = float(fr.spacing_mm[0]) if fr.spacing_mm else 0.0
                truth = pf.truth["needle"]
                d = det.detect(fr) if kind != "faint" else None
                if sp_an is not None:
                    sp_an.add(fr, d, pf.truth)
                cat = None
                if truth.get("present") and truth.get("tip_in_image"):
                    cat = category(kind, pf.truth, pf.truth["t_rel_s"], cinfo, prev_angle)
                    prev_angle = truth["angle_from_skin_deg"]
                else:
                    prev_angle = None
                t0 = time.perf_counter()
                lr = learned.locate(fr)
                lat_l = (time.perf_counter() - t0) * 1000.0
                results = {"every": lr}
                sub = i % CLASSICAL_EVERY == 0
                if sub:
                    t0 = time.perf_counter()
                    cr = classical.locate(fr)
                    lat_c = (time.perf_counter() - t0) * 1000.0
                    results["learned"] = lr
                    results["classical"] = cr
                for key, res in results.items():
                    col = every["learned"] if key == "every" else same[key]
                    if key == "classical":
                        col.latency.append(lat_c)
                    elif key == "learned":
                        col.latency.append(lat_l)
                    if key != "every" and cat is not None and res.found and _scored(truth):
                        info["errs"][key].setdefault(cat, []).append(_err_mm(res, truth, sp))
                    if d is not None and res.found and kind != "procedure":
                        nerve_mask = d.nerve.mask if d.nerve.found and d.view_ok else None
                        res = measure(
                            res, fr.spacing_mm, fr.pixels.shape, nerve_mask, None, fr.region
                        )
                    _tally(col, kind, res, truth, sp)
                    if kind in ("none", "reflector"):
                        ev_any, ev_near = neg_ev[key]
                        ev_any.add(res.found)
                        near = res.found and (
                            (
                                res.nerve_distance_mm is not None
                                and res.nerve_distance_mm <= CAUTION_MM
                            )
                            or (
                                res.path_nerve_distance_mm is not None
                                and res.path_nerve_distance_mm <= CAUTION_MM
                            )
                        )
                        ev_near.add(bool(near))
                    if kind == "intraneural" and first_flag[key] is None:
                        hit = res.found and (
                            (
                                res.nerve_distance_mm is not None
                                and res.nerve_distance_mm <= ALARM_MM
                            )
                            or (
                                res.path_nerve_distance_mm is not None
                                and res.path_nerve_distance_mm <= ALARM_MM
                            )
                        )
                        flags[key] = flags[key] + 1 if hit else 0
                        if flags[key] >= (DEBOUNCE if key == "every" else 1):
                            first_flag[key] = pf.truth["t_rel_s"]
            info["frames"] += n_frames
            info["render_s"] += time.perf_counter() - t_r
            minutes = n_frames / FPS / 60.0
            if sp_an is not None:
                # aliquots that started (and had time to spread) within the frames played
                aliq = (
                    []
                    if plan_ is None
                    else [
                        (i.t_start, i.volume_ml)
                        for i in plan_.injections
                        if i.t_start + 1.0 <= t_last
                    ]
                )
                sp_an.finish(aliq, proc, neg, minutes)
            for key in ("every", "learned", "classical"):
                col = every["learned"] if key == "every" else same[key]
                if kind in ("none", "reflector"):
                    col.neg_minutes += minutes
                    col.neg_events += neg_ev[key][0].events
                    col.neg_near_nerve_events += neg_ev[key][1].events
                if kind == "intraneural" and t_cross is not None:
                    ff = first_flag[key]
                    col.intraneural.append(
                        (ff is not None and ff < t_cross, None if ff is None else t_cross - ff)
                    )
    return every, same, info


def _scored(truth: dict[str, Any]) -> bool:
    """A frame whose tip is in the image and can be seen: it echoes or it moves (a tip that
    does neither cannot be seen by anyone: not scored)."""
    if not truth.get("present") or not truth.get("tip_in_image"):
        return False
    return not (
        truth["tip_visibility"] < 0.3
        and truth["visible_fraction"] < 0.05
        and truth["tip_step_mm"] < 0.05
    )


def _tally(col: Col, kind: str, res: NeedleResult, truth: dict[str, Any], sp: float) -> None:
    if kind in ("none", "reflector"):
        col.neg_frames += 1
        col.neg_found += res.found
        if kind == "reflector":
            col.reflector_frames += 1
            col.reflector_found += res.found
        return
    if not _scored(truth):
        return
    faint = truth["visible_fraction"] < FAINT
    if faint:
        col.n_faint += 1
    else:
        col.n_vis += 1
    if not res.found or res.tip_px is None:
        return
    if faint:
        col.found_faint += 1
    else:
        col.found_vis += 1
    e = _err_mm(res, truth, sp)
    col.tip_err.append(e)
    (col.tip_err_faint if faint else col.tip_err_vis).append(e)
    if res.angle_deg is not None:
        col.ang_err.append(abs(res.angle_deg - truth["angle_deg"]))


def foreign_frames(quick: bool) -> list[Any]:
    """Recordings of the foreign simulator (motion sessions, consecutive frames) from its
    cache; generated when the cache has none (slow: pymust)."""
    from benchmarks.foreign.bench import gliding_cases, gliding_session
    from benchmarks.foreign.session import CACHE

    paths = sorted(p.parent for p in Path(CACHE).glob("s3*-*/truth.json"))
    if not paths:
        paths = [gliding_session(*c, fps=8.0, reps=1).path for c in gliding_cases(True)]
    return paths[:1] if quick else paths


def scan_negatives(
    sources: list[tuple[str, Any]], max_frames: int | None
) -> dict[str, dict[str, float]]:
    """False needles on needle-free sources: raw locators and the appliance's gated guide."""
    from edge_service.acquisition.factory import open_path
    from edge_service.errors import DgsError
    from edge_service.needle.guide import NeedleGuide

    learned = LearnedLocator()
    classical = ClassicalLocator()
    det = Detector.load()
    guide = NeedleGuide(learned)
    out: dict[str, dict[str, float]] = {}
    for label, path in sources:
        tally = out.setdefault(
            label, {"files": 0, "frames": 0, "learned": 0, "classical": 0, "gated": 0}
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                src = open_path(path)
                with src:
                    guide.reset()
                    det.reset()
                    n = 0
                    for fr in src.frames():
                        if max_frames is not None and n >= max_frames:
                            break
                        n += 1
                        d = det.detect(fr, require_spacing=False)
                        g = guide.analyse(fr, d)  # the learned locator, then the gate
                        tally["gated"] += g.found
                        tally["learned"] += guide.last_raw.found
                        tally["classical"] += classical.locate(fr).found
                    tally["frames"] += n
                    tally["files"] += 1 if n else 0
        except (DgsError, ValueError, OSError):
            continue
    return out


def _rate(found: int, n: int) -> str:
    return "n/a" if n == 0 else f"{found}/{n} ({100.0 * found / n:.1f} %)"


def run(quick: bool = False) -> str:
    return run_plan(quick)


def run_plan(
    quick: bool, plan: Plan | None = None, source: Any = None, foreign: bool = True
) -> str:
    """The benchmark over `plan` (default FULL / QUICK); `source(kind, seed, generator,
    duration_s=)` makes a session (default make_session; a replay of recorded sessions gives
    the same frames); foreign=False leaves out the foreign-data section."""
    every, same, info = run_sessions(quick, plan, source)
    L, C, A = same["learned"], same["classical"], every["learned"]
    lines = [
        "## Needle tip tracking (issue 16)",
        "",
        f"Held-out generator configuration (`edge_service.phantom.needle.HELD_OUT`: 23 G, "
        f"42-50 deg, wide specular lobe, 4.4-5 MHz, dense speckle; the model trained on "
        f"`TRAIN` only), {info['sessions']} sessions, {info['frames']} frames at {FPS:g} fps. "
        f"Side-by-side columns: the same {CLASSICAL_EVERY}-frame subset for both locators. "
        f"Sessions (kind: seeds): "
        f"{'; '.join(f'{k}: ' + ', '.join(str(sd) for sd, _ in v) for k, v in info['plan'].items())}. "
        f"Faint shaft: less than {FAINT:.0%} of the in-image shaft echoes (steep insonation "
        f"or out-of-plane drift); frames whose tip neither echoes nor moves are not scored.",
        "",
        "| metric | learned (all frames) | learned | classical peer | goal |",
        "|---|---|---|---|---|",
        f"| tip error median (mm) | {_f(statistics.median(A.tip_err) if A.tip_err else float('nan'))} "
        f"| {_f(statistics.median(L.tip_err) if L.tip_err else float('nan'))} "
        f"| {_f(statistics.median(C.tip_err) if C.tip_err else float('nan'))} | <= 0.5 |",
        f"| tip error p95 (mm) | {_f(_q(A.tip_err, 95))} | {_f(_q(L.tip_err, 95))} | {_f(_q(C.tip_err, 95))} | |",
        f"| tip error median, visible shaft (mm) | {_f(_q(A.tip_err_vis, 50))} | {_f(_q(L.tip_err_vis, 50))} | {_f(_q(C.tip_err_vis, 50))} | |",
        f"| tip error median, faint shaft (mm) | {_f(_q(A.tip_err_faint, 50))} | {_f(_q(L.tip_err_faint, 50))} | {_f(_q(C.tip_err_faint, 50))} | |",
        f"| shaft angle error median / p95 (deg) | {_f(_q(A.ang_err, 50), 1)} / {_f(_q(A.ang_err, 95), 1)} "
        f"| {_f(_q(L.ang_err, 50), 1)} / {_f(_q(L.ang_err, 95), 1)} | {_f(_q(C.ang_err, 50), 1)} / {_f(_q(C.ang_err, 95), 1)} | |",
        f"| detection, visible shaft | {_rate(A.found_vis, A.n_vis)} | {_rate(L.found_vis, L.n_vis)} | {_rate(C.found_vis, C.n_vis)} | |",
        f"| detection, faint shaft | {_rate(A.found_faint, A.n_faint)} | {_rate(L.found_faint, L.n_faint)} | {_rate(C.found_faint, C.n_faint)} | |",
    ]

    def per10(col: Col, ev: int) -> str:
        return (
            "n/a"
            if col.neg_minutes <= 0
            else f"{ev} in {col.neg_minutes:.1f} min ({10 * ev / col.neg_minutes:.1f} per 10 min)"
        )

    lines += [
        f"| false needle events, no needle / reflector sessions (any needle, >= {DEBOUNCE} frames) "
        f"| {per10(A, A.neg_events)} | {per10(L, L.neg_events)} | {per10(C, C.neg_events)} | <= 1 per 10 min |",
        f"| false proximity events (needle reported within {CAUTION_MM:g} mm of the nerve) "
        f"| {per10(A, A.neg_near_nerve_events)} | {per10(L, L.neg_near_nerve_events)} | {per10(C, C.neg_near_nerve_events)} | <= 1 per 10 min |",
        f"| frames with a needle on the needle-like reflector | {_rate(A.reflector_found, A.reflector_frames)} "
        f"| {_rate(L.reflector_found, L.reflector_frames)} | {_rate(C.reflector_found, C.reflector_frames)} | 0 |",
    ]

    def intra(col: Col) -> str:
        if not col.intraneural:
            return "n/a"
        ok = sum(1 for f, _ in col.intraneural if f)
        leads = [lead for f, lead in col.intraneural if f and lead is not None]
        lead = f", lead median {statistics.median(leads):.1f} s" if leads else ""
        return f"{ok}/{len(col.intraneural)} flagged before crossing{lead}"

    lines.append(
        f"| intraneural approaches flagged (tip or path <= {ALARM_MM:g} mm) before the tip crosses "
        f"the epineurium | {intra(A)} | {intra(L)} | {intra(C)} | all |"
    )
    la, lc = _q(L.latency, 50), _q(C.latency, 50)
    lines += [
        f"| latency per frame median / p95 (ms) | {_f(_q(A.latency or L.latency, 50), 1)} / "
        f"{_f(_q(A.latency or L.latency, 95), 1)} | {_f(la, 1)} / {_f(_q(L.latency, 95), 1)} "
        f"| {_f(lc, 1)} / {_f(_q(C.latency, 95), 1)} | |",
        f"| latency ratio classical / learned (median) | | {_f(lc / la if la else float('nan'), 1)} x | | |",
        "| alarm latency, frame time to the page (bench_needle_alarm) | see the alarm section | | | p95 <= 100 ms |",
        "",
    ]
    lines += [
        "### Injections found by the procedure logic (held-out procedure sessions)",
        "",
        f"Each aliquot of the phantom (0.2 mL) is found when the procedure logic logs an "
        f"injection from {0.5:g} s before to {3:g} s after its start. The volume is an "
        f"ESTIMATE (edge_service/procedure/injections.py: the changed-echo area around the "
        f"resting tip = the bolus + the ring of tissue it pushed, sphere seen in its central "
        f"plane, ring width fitted on the TRAIN generator).",
        "",
        *procedure_rows(info["proc"], info["neg"]),
        "",
        "### Tip error by what the frame shows (side-by-side subset)",
        "",
        "Categories in this order (a frame counts in the first that applies): the first 3 s "
        "after insertion; faint shaft (< 50 % of it echoes); a bolus being injected (its "
        "duration + 2 s); the true shaft angle changing (> 0.5 deg/s, a redirect); "
        "intraneural frames within 3 s of the tip crossing the epineurium (bright edge); the "
        "rest.",
        "",
        *breakdown_rows(info["errs"]),
        "",
    ]
    if not foreign:
        lines.append(f"Rendering + detection wall time {info['render_s']:.0f} s.")
        return "\n".join(lines)
    # Foreign data: no needle anywhere.
    sources: list[tuple[str, Any]] = [
        ("foreign simulator (pymust)", p / "cine.dcm") for p in foreign_frames(quick)
    ]
    try:
        from benchmarks.bench_ood import real_files

        files = [f for f, _ in real_files()]
        sources += [
            ("real DICOM (pydicom, pydicom-data)", f) for f in (files[:6] if quick else files)
        ]
    except ImportError:
        pass
    neg = scan_negatives(sources, 20 if quick else 60)
    lines += [
        "### No needle on foreign data (false-needle frames)",
        "",
        "| source | files | frames | learned (no view gate) | classical (no view gate) | appliance (learned + view gate) |",
        "|---|---|---|---|---|---|",
    ]
    for label, t in neg.items():
        n = int(t["frames"])
        lines.append(
            f"| {label} | {int(t['files'])} | {n} | {_rate(int(t['learned']), n)} "
            f"| {_rate(int(t['classical']), n)} | {_rate(int(t['gated']), n)} |"
        )
    lines += [
        "",
        "A false needle on a foreign frame is any frame where a needle is reported. The view "
        "gate refuses frames that are not a deep-gluteal short-axis view, and the appliance "
        "reports no needle on them.",
        f"Rendering + detection wall time {info['render_s']:.0f} s (shared 2-core machine).",
    ]
    return "\n".join(lines)
