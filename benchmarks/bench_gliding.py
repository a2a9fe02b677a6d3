"""Gliding benchmark: excursion error vs phantom truth, restricted/free accuracy, and the
tracker side by side with OpenCV (phaseCorrelate, Farnebäck), scikit-image
(phase_cross_correlation) and pymust (sptrack) on the same frames; analyze throughput.

Phantom sessions use seeds never used in development (9001+). Every method tracks the
same two regions (nerve, landmark) from the first frame, boxes taken from the phantom's
ground-truth masks, and reports the nerve's lateral displacement relative to the landmark
in mm; the truth is the phantom's `nerve_displacement_mm`. Peers follow the region with
a window moved by their previous estimate (frame-to-reference, as ours) so that large
glides stay inside the window.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.analysis.session import SessionAnalyzer
from edge_service.analysis.tracker import Box, GlidingTracker
from edge_service.phantom import PhantomConfig, PhantomSimulator
from edge_service.phantom.oracle import truth_detection
from edge_service.sim.motion import manoeuvre

FPS = 10.0
# (seed, side, calcification, gliding, manoeuvre) - fresh seeds, both classes, both sides.
FULL = [
    (9001, "left", True, "restricted", "fair"),
    (9002, "right", False, "free", "fair"),
    (9003, "left", False, "free", "piriformis"),
    (9004, "right", True, "restricted", "piriformis"),
    (9005, "left", True, "free", "fair"),
    (9006, "right", False, "restricted", "fair"),
    (9007, "left", False, "restricted", "piriformis"),
    (9008, "right", True, "free", "piriformis"),
]
QUICK = FULL[:2]


class _Follower:
    """A peer's region tracker, in one of two ways of chaining a shift estimator:
    "f2f": frame to frame - the shift between the previous and the current frame, both
    cropped where the region was last seen, is accumulated (errors random-walk);
    "ref": against the first frame's crop, the current crop taken where the region was
    last seen (no accumulation, but the region decorrelates as it glides away)."""

    def __init__(
        self,
        ref: np.ndarray,
        box: Box,
        shift_fn: Callable[[np.ndarray, np.ndarray], tuple[float, float]],
        mode: str = "f2f",
    ) -> None:
        self.prev = ref
        self.box = box
        self.fn = shift_fn
        self.mode = mode
        self.ref0 = ref[box.y0 : box.y1, box.x0 : box.x1].astype(np.float32)
        self.est = np.zeros(2)

    def _crop(self, img: np.ndarray) -> tuple[np.ndarray, int, int]:
        ox, oy = (int(v) for v in np.round(self.est))
        h, w = img.shape
        b = self.box
        x0 = min(max(b.x0 + ox, 0), w - (b.x1 - b.x0))
        y0 = min(max(b.y0 + oy, 0), h - (b.y1 - b.y0))
        return img[y0 : y0 + b.y1 - b.y0, x0 : x0 + b.x1 - b.x0].astype(np.float32), x0, y0

    def update(self, img: np.ndarray) -> np.ndarray:
        if self.mode == "ref":
            cur, x0, y0 = self._crop(img)
            dx, dy = self.fn(self.ref0, cur)
            self.est = np.array([x0 - self.box.x0 + dx, y0 - self.box.y0 + dy])
            return self.est
        ref, _, _ = self._crop(self.prev)
        cur, _, _ = self._crop(img)
        dx, dy = self.fn(ref, cur)
        self.est = self.est + np.array([dx, dy])
        self.prev = img
        return self.est


def _cv_phase(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    win = cv2.createHanningWindow(ref.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(ref, cur, win)
    return dx, dy


def _sk_phase(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(ref, cur, upsample_factor=20)
    return -float(shift[1]), -float(shift[0])  # skimage returns the shift that registers cur


def _pymust(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    import pymust

    # sptrack indexes past the window grid on non-square inputs: use the central square.
    n = min(ref.shape)
    y0, x0 = (ref.shape[0] - n) // 2, (ref.shape[1] - n) // 2
    ref, cur = ref[y0 : y0 + n, x0 : x0 + n], cur[y0 : y0 + n, x0 : x0 + n]
    p = pymust.utils.Param()
    # Its interpolation needs >= 4 windows per side: 16 px windows (50 % overlap) on small crops.
    p.winsize = np.array([[32, 32], [16, 16]]) if n >= 112 else np.array([[16, 16]])
    di, dj = pymust.sptrack(np.stack([ref, cur], axis=2).astype(float), p)[:2]
    # This port returns the horizontal component first (checked on synthetic shifts).
    return float(np.nanmedian(di)), float(np.nanmedian(dj))


def _pad(b: Box, px: int, shape: tuple[int, int]) -> Box:
    h, w = shape
    return Box(max(b.x0 - px, 0), max(b.y0 - px, 0), min(b.x1 + px, w), min(b.y1 + px, h))


def _session(seed: int, side: str, calc: bool, glide: str, kind: str, reps: int) -> dict[str, Any]:
    cfg = PhantomConfig(
        side=side,  # type: ignore[arg-type]
        calcification=calc,
        gliding=glide,  # type: ignore[arg-type]
        nerve="swollen" if glide == "restricted" else "normal",
    )
    sim = PhantomSimulator(cfg, seed=seed)
    motion = manoeuvre(kind, repetitions=reps)  # type: ignore[arg-type]
    frames = list(sim.run(motion, fps=FPS, t0=1.0e9))
    return {"sim": sim, "frames": frames, "truth": sim.truth(), "side": side, "kind": kind}


def _methods(s: dict[str, Any]) -> dict[str, tuple[list[float], float] | str]:
    """Per method: (per-frame lateral relative displacement in mm, seconds per frame)."""
    frames = s["frames"]
    f0 = frames[0]
    an = SessionAnalyzer(s["side"])
    an.add_frame(f0.frame, truth_detection(f0.masks, s["truth"]), None)
    assert an.tracker is not None
    boxes = {k: an.tracker.boxes[k] for k in ("nerve", "landmark")}
    lat = 1.0 if s["side"] == "left" else -1.0
    sp = f0.frame.spacing_mm[0]
    ref = f0.frame.pixels
    out: dict[str, tuple[list[float], float] | str] = {}

    tr = GlidingTracker(ref, boxes, f0.frame.spacing_mm)
    t0 = time.perf_counter()
    vals = [lat * tr.update(pf.frame.pixels).nerve_vs_landmark_mm[0] for pf in frames[1:]]
    out["dgs-edge NCC blocks + drift guard (ours)"] = (
        [0.0, *vals],
        (time.perf_counter() - t0) / (len(frames) - 1),
    )

    pad = round(2.0 / sp)
    peers: dict[str, tuple[Callable[[np.ndarray, np.ndarray], tuple[float, float]], str]] = {
        "OpenCV phaseCorrelate, vs first frame": (_cv_phase, "ref"),
        "OpenCV phaseCorrelate, frame to frame": (_cv_phase, "f2f"),
        "scikit-image phase_cross_correlation, vs first frame": (_sk_phase, "ref"),
        "scikit-image phase_cross_correlation, frame to frame": (_sk_phase, "f2f"),
        "pymust sptrack, frame to frame": (_pymust, "f2f"),
    }
    for name, (fn, mode) in peers.items():
        try:
            fol = {k: _Follower(ref, _pad(b, pad, ref.shape), fn, mode) for k, b in boxes.items()}
            t0 = time.perf_counter()
            vals = []
            for pf in frames[1:]:
                e = {k: f.update(pf.frame.pixels) for k, f in fol.items()}
                vals.append(lat * (e["nerve"][0] - e["landmark"][0]) * sp)
            out[name] = ([0.0, *vals], (time.perf_counter() - t0) / (len(frames) - 1))
        except Exception as exc:  # a peer that cannot run here is reported, not fatal
            out[name] = f"failed: {type(exc).__name__}: {exc}"[:120]

    # Farnebäck dense flow, reference -> current, over the box that holds both regions.
    nb, lb = boxes["nerve"], boxes["landmark"]
    roi = _pad(
        Box(min(nb.x0, lb.x0), min(nb.y0, lb.y0), max(nb.x1, lb.x1), max(nb.y1, lb.y1)),
        4 * pad,
        ref.shape,
    )
    r0 = ref[roi.y0 : roi.y1, roi.x0 : roi.x1]
    nmask = f0.masks["nerve"][roi.y0 : roi.y1, roi.x0 : roi.x1]
    lmask = np.zeros_like(nmask)
    lmask[lb.y0 - roi.y0 : lb.y1 - roi.y0, lb.x0 - roi.x0 : lb.x1 - roi.x0] = True
    t0 = time.perf_counter()
    vals = []
    for pf in frames[1:]:
        cur = pf.frame.pixels[roi.y0 : roi.y1, roi.x0 : roi.x1]
        flow = cv2.calcOpticalFlowFarneback(r0, cur, None, 0.5, 4, 21, 5, 7, 1.5, 0)  # type: ignore[call-overload]
        vals.append(
            lat
            * (float(np.median(flow[..., 0][nmask])) - float(np.median(flow[..., 0][lmask])))
            * sp
        )
    out["OpenCV Farnebäck dense flow, vs first frame"] = (
        [0.0, *vals],
        (time.perf_counter() - t0) / (len(frames) - 1),
    )
    return out


def _throughput(s: dict[str, Any]) -> tuple[float, float, str]:
    """(analyze frames/s with the shipped ONNX model, tracking-only frames/s), one thread."""
    cv2.setNumThreads(1)
    frames: list[Frame] = [pf.frame for pf in s["frames"]]
    masks = [pf.masks for pf in s["frames"]]
    an = SessionAnalyzer(s["side"])
    t0 = time.perf_counter()
    for f, m in zip(frames, masks, strict=True):
        an.add_frame(f, truth_detection(m, s["truth"]), (0.0, 0.0, 0.0))
    an.finish()
    track_fps = len(frames) / (time.perf_counter() - t0)
    try:
        from edge_service.detector import Detector

        det = Detector.load(threads=1)
    except Exception as exc:
        return float("nan"), track_fps, f"detector unavailable: {exc}"
    an = SessionAnalyzer(s["side"])
    t0 = time.perf_counter()
    for f in frames:
        an.add_frame(f, det.detect(f), (0.0, 0.0, 0.0))
    an.finish()
    return len(frames) / (time.perf_counter() - t0), track_fps, ""


def _foreign(seed: int, side: str, calc: bool, glide: str, kind: str, reps: int) -> dict[str, Any]:
    """A foreign-simulator session (benchmarks/foreign) in the same shape as _session()."""
    from benchmarks.foreign.bench import gliding_session
    from edge_service.recording import open_recording

    fs = gliding_session(seed, side, calc, glide == "restricted", kind, FPS, reps)
    frames = [
        SimpleNamespace(frame=fr, masks=fs.frame_masks(i), truth=fs.truth["frames"][i])
        for i, fr in enumerate(open_recording(fs.path).frames())
    ]
    return {"frames": frames, "truth": fs.truth, "side": side, "kind": kind}


def _analyse(s: dict[str, Any], seed: int, detector: Any = None) -> dict[str, Any]:
    """SessionAnalyzer over the session with true angles per frame; regions from the truth
    masks (oracle) or from `detector` (what a user gets)."""
    an = SessionAnalyzer(s["side"], session={"session_id": f"bench-{seed}", "protocol": s["kind"]})
    for pf in s["frames"]:
        det = (
            truth_detection(pf.masks, s["truth"]) if detector is None else detector.detect(pf.frame)
        )
        an.add_frame(pf.frame, det, pf.truth["angles_deg"])
    return an.finish()


def _family(
    cases: list[tuple[int, str, bool, str, str]],
    make: Callable[..., dict[str, Any]],
    reps: int,
    detector: dict[str, Any],
) -> dict[str, Any]:
    """Excursion rows, per-method tracking RMS and error lists for one simulator family."""
    per_method: dict[str, list[tuple[float, float]]] = {}
    notes: dict[str, str] = {}
    rows: list[str] = []
    errs: dict[str, list[float]] = {m: [] for m in MODES}
    right: dict[str, list[bool]] = {m: [] for m in MODES}
    called: dict[str, list[bool]] = {m: [] for m in MODES}
    first = None
    for seed, side, calc, glide, kind in cases:
        s = make(seed, side, calc, glide, kind, reps)
        first = first or s
        truth = np.array([pf.truth["nerve_displacement_mm"] for pf in s["frames"]])
        # Every tracker starts at 0 in frame 0; the seated start is already flexed (d != 0).
        truth_rel = truth - truth[0]
        for name, res in _methods(s).items():
            if isinstance(res, str):
                notes[name] = res
                continue
            est, dt = res
            rms = float(np.sqrt(np.mean((np.array(est) - truth_rel) ** 2)))
            per_method.setdefault(name, []).append((rms, dt))
        true_exc = float(truth.max() - truth.min())
        cells = []
        for mode in MODES:
            r = _analyse(s, seed, detector.get(mode))
            g = r["gliding"]
            est = g["excursion_mm"]
            err = abs(est - true_exc) if est is not None else float("nan")
            errs[mode].append(err)
            restricted = g["restricted"]
            ok = restricted is (glide == "restricted")
            right[mode].append(ok)
            wrong = restricted is not None and not ok  # undetermined is a refusal, not an error
            called[mode].append(restricted is not None)
            call = (
                "undetermined" if restricted is None else ("restricted" if restricted else "free")
            )
            slope = g["per_10deg_ir_mm"]
            cells.append(
                f"{'-' if est is None else f'{est:.2f}'} | {err:.3f} | "
                f"{'-' if slope is None else f'{slope:.2f}'} | {call}{' ✗' if wrong else ''}"
            )
        rows.append(
            f"| {seed} | {side} | {kind} | {'calc' if calc else 'ligament'} | {glide} | "
            f"{true_exc:.2f} | {' | '.join(cells)} |"
        )
    return {
        "rows": rows,
        "per_method": per_method,
        "notes": notes,
        "errs": errs,
        "right": right,
        "called": called,
        "first": first,
    }


MODES = ("oracle", "detector", "gate off")


def _med(v: list[float]) -> float:
    a = np.asarray(v, float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def _worst(v: list[float]) -> float:
    a = np.asarray(v, float)
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else float("nan")


def run(quick: bool = False) -> str:
    from benchmarks.foreign.bench import GOALS, gliding_cases

    cases = QUICK if quick else FULL
    reps = 1 if quick else 2
    fcases = [
        (seed, side, calc, "restricted" if restr else "free", kind)
        for seed, side, calc, restr, kind in gliding_cases(quick)
    ]
    try:
        from edge_service.detector import Detector
        from edge_service.detector.settings import DetectorSettings

        # "gate off": the same model without the view gate, which refuses every frame of the
        # foreign simulator (not a view the model was made for); it measures what the network
        # itself would track there. The appliance runs with the gate (the "detector" columns).
        dets: dict[str, Any] = {
            "oracle": None,
            "detector": Detector.load(threads=1),
            "gate off": Detector.load(threads=1, settings=DetectorSettings(view_gate=False)),
        }
    except Exception as exc:  # the tracking half of the benchmark still runs
        dets, why_det = {}, f"detector unavailable: {exc}"
    else:
        why_det = ""
    fam = {
        "own phantom": _family(cases, _session, reps, dets),
        "foreign sim": _family(fcases, _foreign, reps, dets),
    }
    first = fam["own phantom"]["first"]
    fps_an, fps_track, why = _throughput(first)

    head = (
        "| seed | side | manoeuvre | landmark | class | true exc. | "
        "oracle: measured | abs. error | mm/10° IR | call | "
        "detector: measured | abs. error | mm/10° IR | call | "
        "gate off: measured | abs. error | mm/10° IR | call |"
    )
    sep = "|---" * 18 + "|"
    lines = ["## Gliding (speckle tracking, session analysis)", ""]
    for name, f in fam.items():
        lines += [
            f"Excursion per session, **{name}** (hold vs preceding rest, mm) against truth; "
            "oracle = tracked regions from the truth masks, detector = regions from the shipped "
            "ONNX model (the user's path, view gate on), gate off = the same model without its "
            "view gate; ✗ = wrong restricted/free call (undetermined is a refusal, not an error):",
            "",
            head,
            sep,
            *f["rows"],
            "",
        ]
    o, f = fam["own phantom"], fam["foreign sim"]
    lines += [
        "Own phantom vs foreign simulator (median over sessions; gap = foreign - own):",
        "",
        "| metric | own phantom | foreign sim | gap | goal (foreign) | met |",
        "|---|---|---|---|---|---|",
    ]
    notes_und: list[str] = []
    for mode in MODES:
        a, b = _med(o["errs"][mode]), _med(f["errs"][mode])
        goal = GOALS["excursion"]
        if np.isfinite(b):
            lines.append(
                f"| excursion median abs. error, {mode} regions (mm) | {a:.3f} | {b:.3f} | "
                f"{b - a:+.3f} ({b / a:.1f}x) | <= {goal:g} | {'yes' if b <= goal else '**no**'} |"
            )
        else:
            lines.append(
                f"| excursion median abs. error, {mode} regions (mm) | {a:.3f} | n/a (none "
                f"measured) | - | <= {goal:g} | **no** |"
            )
        wo, wf = _worst(o["errs"][mode]), _worst(f["errs"][mode])
        lines.append(
            f"| excursion worst session, {mode} regions (mm) | {wo:.3f} | {wf:.3f} | "
            f"{wf - wo:+.3f} | - | - |"
        )
        for fam_name, fam_d in (("own", o), ("foreign", f)):
            n_und = sum(not np.isfinite(e) for e in fam_d["errs"][mode])
            if n_und:
                notes_und.append(f"{fam_name}/{mode}: {n_und} session(s) without an excursion")
        ro, rf = o["right"][mode], f["right"][mode]
        do, df = o["called"][mode], f["called"][mode]
        lines.append(
            f"| restricted/free right, {mode} regions (of sessions with a call) | "
            f"{sum(ro)}/{sum(do)} of {len(ro)} | {sum(rf)}/{sum(df)} of {len(rf)} | "
            f"- | all called right | "
            f"{'n/a (no call)' if sum(df) == 0 else 'yes' if sum(rf) == sum(df) else '**no**'} |"
        )
    if notes_und:
        lines += ["", "Undetermined excursions (not in the medians): " + "; ".join(notes_und) + "."]
    lines += [
        "",
        "Per-frame nerve-vs-landmark lateral displacement on the same frames (RMS over sessions):",
        "",
        "| method | own: RMS error (mm) | own: worst session | foreign: RMS error (mm) | "
        "foreign: worst session | time per frame, 2 regions (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, vals in o["per_method"].items():
        fv = f["per_method"].get(name, [])
        rms = float(np.sqrt(np.mean([v[0] ** 2 for v in vals])))
        worst = max(v[0] for v in vals)
        frms = float(np.sqrt(np.mean([v[0] ** 2 for v in fv]))) if fv else float("nan")
        fworst = max((v[0] for v in fv), default=float("nan"))
        ms = 1e3 * float(np.median([v[1] for v in vals]))
        lines.append(f"| {name} | {rms:.3f} | {worst:.3f} | {frms:.3f} | {fworst:.3f} | {ms:.2f} |")
    for name, why_not in {**o["notes"], **f["notes"]}.items():
        lines.append(f"| {name} | - | - | - | - | {why_not} |")
    lines += [
        "",
        f"`analyze` throughput on one core (cv2 and onnxruntime 1 thread), {len(first['frames'])} frames "
        f"{first['frames'][0].frame.pixels.shape[1]}x{first['frames'][0].frame.pixels.shape[0]}: "
        f"**{fps_an:.1f} frames/s** with the shipped ONNX detector, {fps_track:.0f} frames/s tracking + "
        f"analysis alone{(' (' + why + ')') if why else ''}.",
        "",
        f"Method: {len(cases)} own-phantom sessions (seeds 9001+ unseen in development) and "
        f"{len(fcases)} foreign-simulator sessions (benchmarks/foreign: pymust PSFs, own anatomy, "
        "own hip trajectories with saturating gliding and hand-held probe wander; seeds 301+), "
        f"{'1 repetition' if quick else '2 repetitions'}, {FPS:g} fps, true hip angles per frame "
        "for both families. Oracle rows take the tracked regions from the truth masks so only "
        "tracking + analysis is compared; detector rows are the full pipeline"
        f"{(' (' + why_det + ')') if why_det else ''}; machine {platform.machine()}, "
        f"{os.cpu_count()} CPUs shared.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))
