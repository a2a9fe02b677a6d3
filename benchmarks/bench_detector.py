"""Detector benchmark: the shipped ONNX model vs a classical threshold+morphology baseline.

Held-out phantom sessions (seeds 0-999 are never used in training: training uses 10000+,
validation 5000+), FAIR manoeuvre sampled at a low frame rate. Per class Dice at frame
resolution, median absolute error of AP/width/CSA against the phantom's truth, calcification
sensitivity/specificity per session (a session is positive when >= half its frames show a
calcification), detect+measure time per 640x480 frame with one onnxruntime thread.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.detector import Detector
from edge_service.detector.measure import ellipse_fit
from edge_service.detector.model import shipped_model
from edge_service.phantom import PhantomConfig, PhantomSimulator
from edge_service.sim.motion import manoeuvre

MODELS = Path(__file__).resolve().parents[1] / "models"


# -- classical baseline -----------------------------------------------------------------
@dataclass
class BaselineResult:
    nerve: np.ndarray | None
    calc: np.ndarray | None


def baseline(frame: Frame) -> BaselineResult:
    """Smoothing, Otsu thresholds (bright and dark), morphology, and shape rules.

    Nerve: the most elliptical blob of plausible size (20-300 mm^2, flattening 1-3) in the
    middle third of the depth, hyperechoic or hypoechoic. Calcification: a small very bright
    blob (top 1 % of echoes) with a dark band beneath it (acoustic shadow).
    """
    dx, dy = frame.spacing_mm or (1.0, 1.0)
    px = frame.pixels
    fan = px > 0
    sm = cv2.GaussianBlur(px, (0, 0), 1.2 / dx)
    vals = sm[fan]
    h = px.shape[0]
    ys_fan = np.nonzero(fan.any(axis=1))[0]
    top, bot = ys_fan.min(), ys_fan.max()
    band = np.zeros_like(fan)
    band[top + (bot - top) // 4 : top + 3 * (bot - top) // 4] = True
    kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, int(2 / dx)) | 1,) * 2)
    best, best_score = None, 0.0
    thr_bright = np.percentile(vals, 85)
    thr_dark = np.percentile(vals, 15)
    for binary in (sm >= thr_bright, (sm <= thr_dark) & fan):
        b = cv2.morphologyEx((binary & band).astype(np.uint8), cv2.MORPH_OPEN, kern)
        b = cv2.morphologyEx(b, cv2.MORPH_CLOSE, kern)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(b, connectivity=8)
        for i in range(1, n):
            area = stats[i, cv2.CC_STAT_AREA] * dx * dy
            if not 20.0 <= area <= 300.0:
                continue
            m = lab == i
            major, minor, _, _, _ = ellipse_fit(m, dx, dy)
            if minor <= 0 or not 1.0 <= major / minor <= 3.0:
                continue
            fill = area / (np.pi / 4 * major * minor)  # 1.0 for a perfect ellipse
            score = min(fill, 1 / max(fill, 1e-6))
            if score > best_score:
                best, best_score = m, score
    calc = None
    b = (sm >= np.percentile(vals, 99)).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(b, connectivity=8)
    for i in range(1, n):
        area = stats[i, cv2.CC_STAT_AREA] * dx * dy
        if not 3.0 <= area <= 60.0:
            continue
        x, y, w, hh = stats[i, :4]
        above = sm[max(y - int(8 / dy), 0) : y, x : x + w]
        below = sm[min(y + hh + int(1 / dy), h) : min(y + hh + int(9 / dy), h), x : x + w]
        if above.size and below.size and below.mean() < 0.5 * above.mean():
            calc = lab == i
            break
    return BaselineResult(best, calc)


# -- evaluation -------------------------------------------------------------------------
@dataclass
class Tally:
    # pooled Dice: summed overlap and sizes over all frames (empty frames add nothing)
    dice: dict[str, list[float]] = field(
        default_factory=lambda: {"nerve": [0.0, 0.0], "calcification": [0.0, 0.0]}
    )
    err: dict[str, list[float]] = field(
        default_factory=lambda: {
            "ap": [],
            "width": [],
            "csa": [],
            "calc_long": [],
            "calc_thick": [],
        }
    )
    found: int = 0
    frames: int = 0
    sessions: list[tuple[bool, bool]] = field(default_factory=list)  # (truth, detected)
    ms: list[float] = field(default_factory=list)

    def row(self, name: str) -> str:
        def med(v: list[float]) -> str:
            return f"{statistics.median(v):.2f}" if v else "n/a"

        def pooled(v: list[float]) -> str:
            return f"{2 * v[0] / v[1]:.3f}" if v[1] else "n/a"

        pos = [d for t, d in self.sessions if t]
        neg = [d for t, d in self.sessions if not t]
        sens = f"{sum(pos) / len(pos):.0%} ({sum(pos)}/{len(pos)})" if pos else "n/a"
        spec = (
            f"{sum(not d for d in neg) / len(neg):.0%} ({sum(not d for d in neg)}/{len(neg)})"
            if neg
            else "n/a"
        )
        return (
            f"| {name} | {pooled(self.dice['nerve'])} | {pooled(self.dice['calcification'])} | "
            f"{self.found}/{self.frames} | {med(self.err['ap'])} | {med(self.err['width'])} | "
            f"{med(self.err['csa'])} | {sens} | {spec} | {med(self.err['calc_long'])} / "
            f"{med(self.err['calc_thick'])} | {med(self.ms)} ({min(self.ms):.1f}) |"
        )


def _dice(acc: list[float], a: np.ndarray | None, b: np.ndarray) -> None:
    if a is not None:
        acc[0] += float((a & b).sum())
        acc[1] += float(a.sum())
    acc[1] += float(b.sum())


N_SESSIONS = {True: 6, False: 40}


def _sessions(quick: bool) -> list[tuple[int, PhantomConfig]]:
    """Seeds 0-11: a fixed grid of side/nerve/calcification/gliding/depth/frequency; 12+:
    fully randomized acquisitions (gain, dynamic range, TGC error, noise, probe geometry),
    calcification on every other seed, drawn like the training data but never trained on."""
    out = []
    for i in range(N_SESSIONS[quick]):
        if i < 12:
            cfg = PhantomConfig(
                side="left" if i % 2 == 0 else "right",
                nerve="swollen" if (i // 2) % 2 == 0 else "normal",
                calcification=(i // 4) % 2 == 0,
                gliding="restricted" if i % 3 == 0 else "free",
                depth_mm=70.0 + 5.0 * (i % 5),
                frequency_mhz=3.0 + 0.25 * (i % 8),
            )
        else:
            cfg = PhantomConfig.randomized(np.random.default_rng(i)).model_copy(
                update={"calcification": i % 2 == 0}
            )
        out.append((i, cfg))
    return out


def _measure_truth(tally: Tally, truth: dict, ap: float, width: float, csa: float) -> None:
    tally.err["ap"].append(abs(ap - truth["ap_mm"]))
    tally.err["width"].append(abs(width - truth["width_mm"]))
    tally.err["csa"].append(abs(csa - truth["csa_mm2"]))


def run(quick: bool = False) -> str:
    fps = 0.25 if quick else 0.5
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    det32 = Detector.load(threads=1)
    det8 = Detector.load(path=shipped_model("int8"), threads=1)
    res = {"model fp32": Tally(), "model int8": Tally(), "baseline": Tally()}
    motion = manoeuvre("fair")
    render_ms: list[float] = []
    for seed, cfg in _sessions(quick):
        sim = PhantomSimulator(cfg, seed=seed)
        truth = sim.truth()["nerve"]
        calc_truth = sim.truth()["calcification"] if cfg.calcification else None
        calc_hits = {k: 0 for k in res}
        n = 0
        t_render = time.perf_counter()
        for pf in sim.run(motion, fps=fps):
            render_ms.append((time.perf_counter() - t_render) * 1000)
            n += 1
            fr = pf.frame
            dx, dy = fr.spacing_mm or (1.0, 1.0)
            for name, det in (("model fp32", det32), ("model int8", det8)):
                t0 = time.perf_counter()
                d = det.detect(fr)
                tally = res[name]
                tally.ms.append((time.perf_counter() - t0) * 1000)
                tally.frames += 1
                _dice(tally.dice["nerve"], d.nerve.mask, pf.masks["nerve"])
                _dice(tally.dice["calcification"], d.calcification.mask, pf.masks["calcification"])
                if d.nerve.found:
                    tally.found += 1
                    assert d.nerve.ap_mm and d.nerve.width_mm and d.nerve.csa_mm2
                    _measure_truth(tally, truth, d.nerve.ap_mm, d.nerve.width_mm, d.nerve.csa_mm2)
                calc_hits[name] += int(d.calcification.present)
                c = d.calcification
                if calc_truth and c.present and c.long_axis_mm and c.thickness_mm:
                    tally.err["calc_long"].append(abs(c.long_axis_mm - calc_truth["long_axis_mm"]))
                    tally.err["calc_thick"].append(abs(c.thickness_mm - calc_truth["thickness_mm"]))
            t0 = time.perf_counter()
            b = baseline(fr)
            tb = res["baseline"]
            tb.ms.append((time.perf_counter() - t0) * 1000)
            tb.frames += 1
            _dice(tb.dice["nerve"], b.nerve, pf.masks["nerve"])
            _dice(tb.dice["calcification"], b.calc, pf.masks["calcification"])
            if b.nerve is not None:
                tb.found += 1
                major, minor, *_ = ellipse_fit(b.nerve, dx, dy)
                _measure_truth(tb, truth, minor, major, float(b.nerve.sum()) * dx * dy)
            calc_hits["baseline"] += int(b.calc is not None)
            if calc_truth and b.calc is not None:
                major, minor, *_ = ellipse_fit(b.calc, dx, dy)
                tb.err["calc_long"].append(abs(major - calc_truth["long_axis_mm"]))
                tb.err["calc_thick"].append(abs(minor - calc_truth["thickness_mm"]))
            t_render = time.perf_counter()
        for k, tally in res.items():
            tally.sessions.append((cfg.calcification, calc_hits[k] >= n / 2))
    flops, params = model_cost(shipped_model("fp32"))
    sizes = {k: shipped_model(k).stat().st_size / 1e6 for k in ("fp32", "int8")}
    lines = [
        "## Detector (nerve / calcification segmentation and measurement)",
        "",
        "| method | Dice nerve | Dice calc | nerve found | AP MAE mm (median) | width MAE mm | CSA MAE mm² | calc sens (sessions) | calc spec (sessions) | calc long / thick MAE mm | ms/frame median (min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[t.row(k) for k, t in res.items()],
        "",
        f"Model: U-Net, {params / 1e3:.0f} k parameters, {flops / 1e9:.2f} GFLOP per frame "
        f"(2 x MACs at the {det32.input_hw[0]}x{det32.input_hw[1]} input); files "
        f"{sizes['fp32']:.2f} MB fp32, {sizes['int8']:.2f} MB int8. Phantom: "
        f"{statistics.median(render_ms):.0f} ms per 640x480 frame (median, min "
        f"{min(render_ms):.0f} ms).",
        f"Method: {N_SESSIONS[quick]} held-out phantom sessions (seeds 0-{N_SESSIONS[quick] - 1}: "
        "0-11 a grid of side/nerve/calcification/gliding, depth 70-90 mm, 3-4.75 MHz; 12+ fully "
        f"randomized acquisitions), FAIR at {fps:g} fps; a session counts as calcified when "
        ">= half its frames show one; "
        "errors vs phantom truth over frames where the nerve (calcification) was found; time = detect() incl. "
        "pre/post-processing on a 640x480 frame, onnxruntime 1 thread, process pinned to one core "
        "of this 2-core machine shared with other jobs (the median carries their load; the "
        "minimum is the closest to an idle core).",
    ]
    # Foreign-simulator columns (benchmarks/foreign, owned there): rows + own-vs-foreign gap.
    from benchmarks.foreign.bench import detector_section
    from edge_service.detector.settings import DetectorSettings

    # On data the model was not made for the view gate refuses frames (what the appliance
    # shows); the gate-off row measures what the network itself would have reported there.
    det32_open = Detector.load(threads=1, settings=DetectorSettings(view_gate=False))
    # The same held-out seeds with the phantom's realism knobs (revision 3: bone cortex as
    # bright as a calcification, fasciae, attenuation vs TGC, beam): harder own data.
    real = realism_rows({"model fp32": det32, GATE_OFF: det32_open}, quick, fps)
    lines[4 + len(res) : 4 + len(res)] = real
    lines.insert(
        6 + len(res) + len(real),
        "Rows 'own phantom + realism': the same seeds and configurations with "
        "PhantomConfig.realistic() drawn from stream [seed, 0x5EA1] (phantom revision 3).",
    )
    foreign = {"model fp32": det32, "model int8": det8, GATE_OFF: det32_open}
    rows, gap = detector_section(foreign, res, quick)
    lines[4 + len(res) + len(real) : 4 + len(res) + len(real)] = rows
    lines += gap
    return "\n".join(lines)


GATE_OFF = "model fp32, view gate off"
REALISM_STREAM = 0x5EA1


def realism_rows(detectors: dict[str, Detector], quick: bool, fps: float) -> list[str]:
    """bench rows for the held-out sessions rendered with the realism knobs drawn."""
    res = {k: Tally() for k in detectors}
    motion = manoeuvre("fair")
    for seed, cfg in _sessions(quick):
        cfg = cfg.realistic(np.random.default_rng([seed, REALISM_STREAM]))
        sim = PhantomSimulator(cfg, seed=seed)
        truth = sim.truth()["nerve"]
        calc_truth = sim.truth()["calcification"] if cfg.calcification else None
        hits = {k: 0 for k in res}
        n = 0
        for pf in sim.run(motion, fps=fps):
            n += 1
            for name, det in detectors.items():
                t0 = time.perf_counter()
                d = det.detect(pf.frame)
                tally = res[name]
                tally.ms.append((time.perf_counter() - t0) * 1000)
                tally.frames += 1
                _dice(tally.dice["nerve"], d.nerve.mask, pf.masks["nerve"])
                _dice(tally.dice["calcification"], d.calcification.mask, pf.masks["calcification"])
                nv = d.nerve
                if nv.found and nv.ap_mm and nv.width_mm and nv.csa_mm2:
                    tally.found += 1
                    _measure_truth(tally, truth, nv.ap_mm, nv.width_mm, nv.csa_mm2)
                c = d.calcification
                hits[name] += int(c.present)
                if calc_truth and c.present and c.long_axis_mm and c.thickness_mm:
                    tally.err["calc_long"].append(abs(c.long_axis_mm - calc_truth["long_axis_mm"]))
                    tally.err["calc_thick"].append(abs(c.thickness_mm - calc_truth["thickness_mm"]))
        for k, tally in res.items():
            tally.sessions.append((cfg.calcification, hits[k] >= n / 2))
    return [t.row(f"{k}, own phantom + realism") for k, t in res.items()]


def model_cost(path: Path) -> tuple[float, int]:
    """(FLOPs = 2 x conv MACs, parameter count) from the ONNX graph."""
    import onnx
    from onnx import numpy_helper, shape_inference

    m = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    macs = 0
    for node in m.graph.node:
        if node.op_type == "Conv" and node.output[0] in shapes:
            w = inits.get(node.input[1])
            if w is None:
                continue
            out = shapes[node.output[0]]
            macs += int(np.prod(out)) * int(np.prod(w.shape[1:]))
    params = sum(int(v.size) for v in inits.values())
    return 2.0 * macs, params


if __name__ == "__main__":
    print(run(quick=True))
