"""View / out-of-distribution gate benchmark (`python -m benchmarks ood`).

Two gates side by side on every row: the default `classifier` gate (the auxiliary view
classifier models/view_cls.onnx) and the previous `features` gate (Mahalanobis distance of
the segmentation model's features), with their cost per frame.

1. Every DICOM in pydicom + pydicom-data that the sources read (echo, obstetric, abdominal
   ultrasound, and CT/MR/CR/secondary captures): frames, frames rejected by the gate (by
   reason), nerves and calcifications reported (goal 0), side by side with the same
   detector with the gate off (what the issue found).
2. Held-out own-phantom FAIR sessions (seeds 0+, as bench_detector): the fraction of good
   frames accepted (goal >= 99 %).
3. Synthetic negatives per category (benchmarks/ood_negatives.py): rejection rate, by reason.
4. The calibration curve: acceptance of good frames vs rejection of negatives and real
   files by the learned score alone, at several thresholds; the calibrated one marked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.bench_detector import _sessions
from benchmarks.ood_negatives import CATEGORIES, negatives, phantom_frame
from edge_service.acquisition.frame import Frame
from edge_service.detector import Detection, Detector, DetectorSettings
from edge_service.detector.preprocess import content_roi, prepare_input
from edge_service.detector.view_classifier import classifier_calibration_path
from edge_service.errors import DgsError
from edge_service.phantom import PhantomSimulator
from edge_service.sim.motion import manoeuvre

log = logging.getLogger(__name__)
# models/view_train.py uses 1_234_567 (training) and 7_777_777 (calibration negatives).
BENCH_NEG_SEED = 4_242_424


@dataclass
class FileRow:
    name: str
    source: str
    modality: str
    frames: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    nerves: int = 0
    calcs: int = 0
    nerves_ungated: int = 0
    calcs_ungated: int = 0
    accepted_old: int = 0
    nerves_old: int = 0
    scores: list[float] = field(default_factory=list)


def real_files() -> list[tuple[str, str]]:
    """(path, package) of every DICOM test file of pydicom and pydicom-data."""
    from pydicom.data import get_testdata_files

    from edge_service.acquisition.factory import is_dicom_file

    out = []
    for f in sorted(set(get_testdata_files()), key=lambda p: Path(p).name):
        p = Path(f)
        if p.is_file() and is_dicom_file(p):
            out.append(
                (f, "pydicom-data" if "pydicom_data" in f or "pydicom-data" in f else "pydicom")
            )
    return out


def scan_file(
    path: str, gated: Detector, ungated: Detector, max_frames: int | None, old: Detector
) -> FileRow | None:
    from edge_service.acquisition.factory import open_path

    gated.reset()
    old.reset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = open_path(path)
            with src:
                row = FileRow(Path(path).name, "", str(src.info.extra.get("modality") or "-"))
                for frame in src.frames():
                    if max_frames is not None and row.frames >= max_frames:
                        break
                    d = gated.detect(frame, require_spacing=False)
                    u = ungated.detect(frame, require_spacing=False)
                    o = old.detect(frame, require_spacing=False)
                    row.accepted_old += o.view_ok
                    row.nerves_old += o.nerve.found
                    row.frames += 1
                    row.rejected += not d.view_ok
                    if d.view_reason:
                        row.reasons[d.view_reason] += 1
                    row.nerves += d.nerve.found
                    row.calcs += d.calcification.present
                    row.nerves_ungated += u.nerve.found
                    row.calcs_ungated += u.calcification.present
                    if d.view_score is not None:
                        row.scores.append(float(d.view_score))
    except (DgsError, ValueError, OSError) as exc:
        log.info("%s: not readable (%s)", path, exc)
        return None
    return row if row.frames else None


@dataclass
class Stats:
    """One gate on one set of frames."""

    n: int = 0
    acc: int = 0
    nerves: int = 0
    scores: list[float] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    gate_ms: list[float] = field(default_factory=list)

    def add(self, d: Detection) -> None:
        self.n += 1
        self.acc += d.view_ok
        self.nerves += d.nerve.found
        self.scores.append(float(d.view_score or 0.0))
        if d.view_reason:
            self.reasons[d.view_reason] += 1

    @property
    def pct(self) -> float:
        return 100 * self.acc / max(self.n, 1)


def _gate_ms(det: Detector, frame: Frame) -> float:
    """Wall time of the gate's own work on one frame (explicit checks + learned score; the
    `features` method's features come out of the segmentation run and are not counted)."""
    assert det.gate is not None
    roi = frame.roi or content_roi(frame.pixels)
    if roi is not None and frame.roi is None:
        frame = dataclasses.replace(frame, roi=roi)
    x = prepare_input(frame.pixels, frame.region, det.seg.in_h, det.seg.in_w)
    _, feats = det.seg.run_all(x)
    det.gate.reset()
    t0 = time.perf_counter()
    reason = det.gate.pre_check(frame)
    det.gate.judge(frame, feats, reason, x)
    return (time.perf_counter() - t0) * 1000.0


def _run(
    sessions: Iterable[Iterable[Frame]], dets: dict[str, Detector], time_every: int = 10
) -> dict[str, Stats]:
    out = {k: Stats() for k in dets}
    k = 0
    for frames in sessions:
        for d in dets.values():
            d.reset()
        for fr in frames:
            for name, det in dets.items():
                out[name].add(det.detect(fr, require_spacing=False))
            if k % time_every == 0:
                for name, det in dets.items():
                    out[name].gate_ms.append(_gate_ms(det, fr))
                    det.reset()
            k += 1
    return out


def phantom_sessions(quick: bool) -> Iterator[Iterator[Frame]]:
    """Held-out FAIR sessions (bench_detector's seeds)."""
    fps = 0.25 if quick else 1.0
    for seed, cfg in _sessions(quick):
        sim = PhantomSimulator(cfg, seed=seed)
        yield (pf.frame for pf in sim.run(manoeuvre("fair"), fps=fps))


def realism_sessions(quick: bool) -> Iterator[Iterator[Frame]]:
    """The same seeds with the phantom's realism knobs drawn."""
    for seed, cfg in _sessions(quick):
        cfg = cfg.realistic(np.random.default_rng([seed, 0x5EA1]))
        yield (pf.frame for pf in PhantomSimulator(cfg, seed=seed).run(manoeuvre("fair"), fps=0.25))


def foreign_sessions(quick: bool) -> Iterator[Iterator[Frame]]:
    """The foreign simulator's detector sessions: deep-gluteal short-axis views from a
    simulator family the model and the gate never saw (test only)."""
    from benchmarks.foreign.bench import detector_sessions
    from edge_service.recording import open_recording

    for fs in detector_sessions(quick):
        yield open_recording(fs.path).frames()


def generator_negatives(per_cat: int) -> Iterator[tuple[str, Frame]]:
    """models/view_negatives.py images from a seed no training or calibration uses, shown as
    a 320 x 480 frame without ROI (the detector crops to the content box)."""
    import cv2

    from models.view_negatives import CATEGORIES as GEN
    from models.view_negatives import negative

    rng = np.random.default_rng(BENCH_NEG_SEED)
    for cat in GEN:
        for i in range(per_cat):
            img = cv2.resize(negative(cat, rng), (480, 320), interpolation=cv2.INTER_LINEAR)
            px = (img.clip(0, 1) * 255).round().astype(np.uint8)
            yield cat, Frame(px, float(i), i, (0.2, 0.2))


@dataclass
class NegRow:
    category: str
    frames: int = 0
    rejected: int = 0
    rejected_old: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    scores: list[float] = field(default_factory=list)
    findings: int = 0  # accepted frames with a nerve or calcification reported

    def add(self, d: Detection, o: Detection) -> None:
        self.frames += 1
        self.rejected += not d.view_ok
        self.rejected_old += not o.view_ok
        if d.view_reason:
            self.reasons[d.view_reason] += 1
        self.findings += d.nerve.found or d.calcification.present
        self.scores.append(float(d.view_score or 0.0))


def negative_rows(det: Detector, old: Detector, per_cat: int) -> list[NegRow]:
    rows = []
    for cat in CATEGORIES:
        row = NegRow(f"{cat} (benchmarks/ood_negatives.py)")
        for f in negatives(cat, per_cat):
            det.reset()
            old.reset()
            row.add(det.detect(f, require_spacing=False), old.detect(f, require_spacing=False))
        rows.append(row)
    gen: dict[str, NegRow] = {}
    for cat, f in generator_negatives(per_cat):
        row = gen.setdefault(cat, NegRow(f"{cat} (models/view_negatives.py, held-out seed)"))
        det.reset()
        old.reset()
        row.add(det.detect(f, require_spacing=False), old.detect(f, require_spacing=False))
    rows += gen.values()
    # Frozen: the same good frame twice in a row (the second must be refused).
    row = NegRow("frozen (repeat of the previous frame)")
    for i in range(per_cat):
        f = phantom_frame(31_000 + i)
        again = dataclasses.replace(f, index=f.index + 1, t=f.t + 0.05)
        pair = []
        for d in (det, old):
            d.reset()
            d.detect(f)
            pair.append(d.detect(again))
        row.add(pair[0], pair[1])
    rows.append(row)
    return rows


def _reasons(c: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "-"


def _ms(v: list[float]) -> str:
    return f"{np.median(v):.2f} / {np.percentile(v, 90):.2f}" if v else "-"


def run(quick: bool = False) -> str:
    det = Detector.load(threads=1)
    old = Detector.load(threads=1, settings=DetectorSettings(view_method="features"))
    assert det.gate is not None and det.gate.classifier is not None and old.gate is not None
    ungated = Detector.load(threads=1, settings=DetectorSettings(view_gate=False))
    alpha = det.gate.alpha
    clf = det.gate.classifier
    cal = json.loads(classifier_calibration_path(clf.path).read_text())
    old_raw = old.gate.cal.raw if old.gate.cal is not None else {}
    dets = {"new": det, "old": old}

    files = real_files()
    rows = [r for f, pkg in files if (r := scan_file(f, det, ungated, 40 if quick else None, old))]
    pkg_of = {Path(f).name: pkg for f, pkg in files}
    n_frames = sum(r.frames for r in rows)
    n_rej = sum(r.rejected for r in rows)
    n_nerve = sum(r.nerves for r in rows)
    n_calc = sum(r.calcs for r in rows)
    n_nerve_u = sum(r.nerves_ungated for r in rows)
    n_calc_u = sum(r.calcs_ungated for r in rows)
    us_rows = [r for r in rows if r.modality == "US"]
    us_frames = sum(r.frames for r in us_rows)
    us_rej = sum(r.rejected for r in us_rows)
    files_with_nerve = [r.name for r in rows if r.nerves or r.calcs]

    ph = _run(phantom_sessions(quick), dets)
    re_ = _run(realism_sessions(quick), dets)
    fo = _run(foreign_sessions(quick), dets, time_every=3)
    neg = negative_rows(det, old, 4 if quick else 12)
    s = cal["summary"]

    lines = [
        "## View / out-of-distribution gate",
        "",
        f"Gate (default, `view_method: classifier`): explicit checks (too_small, blank, "
        f"no_contact, colour, frozen) + an auxiliary view classifier `{cal['model_file']}` "
        f"(small CNN on the detector's 128 x 192 input, ONNX; {cal['method']}); frames with "
        f"`view_score < {alpha:g}` are `ood`. Positives: {cal['provenance']['positives']}; "
        f"negatives: {cal['provenance']['negatives']}; null set (calibration, held out): "
        f"{cal['provenance']['null']}. {cal['provenance']['data']}: the foreign-simulator "
        "frames and the real files below are a pure test set. The previous gate (`view_method: "
        "features`: Mahalanobis distance of the segmentation model's pooled encoder features, "
        f"{old_raw.get('provenance', {}).get('fit', '?')}) is measured side by side.",
        "",
        f"Calibration (held out): {100 * s['held_out_positives_accepted']:.1f} % of the null "
        f"set (raw + augmented phantom) accepted, {100 * s['held_out_raw_positives_accepted']:.1f} % "
        f"of its raw frames; held-out synthetic negatives rejected "
        f"{100 * s['held_out_synthetic_negatives_rejected']:.1f} %, phantom non-views rejected "
        f"{100 * s['held_out_phantom_non_views_rejected']:.1f} %; by category: "
        + ", ".join(f"{k} {100 * v:.0f} %" for k, v in s["negatives_rejected_by_category"].items())
        + f". Trained {s['steps']} steps.",
        "",
        "### Side by side: what should pass vs what must be refused",
        "",
        "| frames | n | classifier gate: accepted | accepted % | view_score p1 / median | "
        "rejected by reason | features gate (previous): accepted % | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, st, goal in (
        ("own phantom, held-out (seeds 0-39, 1 fps)", ph, ">= 99 %"),
        ("own phantom + realism knobs, held-out", re_, ">= 95 %"),
        ("foreign simulator, deep gluteal short axis (other family)", fo, ">= 90 %"),
    ):
        new, o = st["new"], st["old"]
        lines.append(
            f"| {name} | {new.n} | {new.acc} | {new.pct:.1f} % | "
            f"{np.percentile(new.scores, 1):.4f} / {np.median(new.scores):.3f} | "
            f"{_reasons(new.reasons)} | {o.pct:.1f} % | {goal} |"
        )
    lines += [
        f"| real US files of other anatomy | {us_frames} | {us_frames - us_rej} | "
        f"{100 * (us_frames - us_rej) / max(us_frames, 1):.1f} % | - | - | "
        f"{100 * sum(r.accepted_old for r in us_rows) / max(us_frames, 1):.1f} % | "
        "0 findings per file |",
        f"| all real DICOM files | {n_frames} | {n_frames - n_rej} | "
        f"{100 * (n_frames - n_rej) / max(n_frames, 1):.1f} % | - | - | "
        f"{100 * sum(r.accepted_old for r in rows) / max(n_frames, 1):.1f} % | "
        "0 findings per file |",
        "",
        "Cost of the gate per frame (explicit checks + learned score; median / p90 ms, one "
        "thread, measured on every 10th own and every 3rd foreign frame on this shared "
        f"2-core host): classifier {_ms(ph['new'].gate_ms + fo['new'].gate_ms)} ms, "
        f"features (previous) {_ms(ph['old'].gate_ms + fo['old'].gate_ms)} ms (its features "
        "come out of the segmentation run and are not counted). Nerves reported on the "
        f"accepted foreign frames: {fo['new'].nerves}/{fo['new'].acc}.",
        "",
        "### Real DICOM files of other anatomy (pydicom + pydicom-data)",
        "",
        f"All readable files: **{n_frames} frames, {n_rej} rejected, nerves reported "
        f"{n_nerve} (goal 0), calcifications reported {n_calc} (goal 0); files with any "
        f"finding: {len(files_with_nerve)}{' (' + ', '.join(files_with_nerve) + ')' if files_with_nerve else ''}**; "
        f"the same detector without the gate reports nerves in {n_nerve_u} and calcifications "
        f"in {n_calc_u} frames. Ultrasound files: {len(us_rows)}, {us_frames} frames, nerves "
        f"{sum(r.nerves for r in us_rows)}, calcifications {sum(r.calcs for r in us_rows)} "
        f"(ungated {sum(r.nerves_ungated for r in us_rows)} / "
        f"{sum(r.calcs_ungated for r in us_rows)}).",
        "",
        "| file | package | modality | frames | rejected | by reason | nerves (goal 0) | "
        "calcifications (goal 0) | ungated nerves / calcs | features gate: accepted / nerves "
        "| max view_score |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r.modality != "US", r.name)):
        lines.append(
            f"| {r.name} | {pkg_of.get(r.name, '?')} | {r.modality} | {r.frames} | {r.rejected} | "
            f"{_reasons(r.reasons)} | {r.nerves} | {r.calcs} | {r.nerves_ungated} / "
            f"{r.calcs_ungated} | {r.accepted_old} / {r.nerves_old} | "
            f"{max(r.scores) if r.scores else 0:.4f} |"
        )
    lines += [
        "",
        "### Synthetic negatives",
        "",
        "benchmarks/ood_negatives.py (held-out phantom seeds 30_000+; not used by training) and "
        f"models/view_negatives.py at seed {BENCH_NEG_SEED} (a seed neither training nor "
        "calibration uses; the same generator as the training negatives, so these rows are "
        "in-family, not independent).",
        "",
        "| category | frames | rejected | rejection rate | by reason | frames with a nerve or "
        "calcification reported | max view_score | features gate (previous): rejection rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for nr in neg:
        lines.append(
            f"| {nr.category} | {nr.frames} | {nr.rejected} | "
            f"{100 * nr.rejected / max(nr.frames, 1):.0f} % | {_reasons(nr.reasons)} | "
            f"{nr.findings} | {max(nr.scores) if nr.scores else float('nan'):.4f} | "
            f"{100 * nr.rejected_old / max(nr.frames, 1):.0f} % |"
        )
    real_scores = [v for r in rows for v in r.scores]
    neg_scores = [v for nr in neg for v in nr.scores]
    lines += [
        "",
        "### Calibration curve (classifier score alone, explicit checks ignored)",
        "",
        "| threshold on view_score | own phantom accepted | realism phantom accepted | "
        "foreign-sim accepted (test) | synthetic negatives rejected | real-file frames rejected "
        "(test) |",
        "|---|---|---|---|---|---|",
    ]
    for a in sorted({0.0005, 0.001, 0.002, alpha, 0.01, 0.02, 0.05, 0.1}):
        mark = " (calibrated)" if a == alpha else ""
        lines.append(
            f"| {a:g}{mark} | {100 * np.mean(np.asarray(ph['new'].scores) >= a):.1f} % | "
            f"{100 * np.mean(np.asarray(re_['new'].scores) >= a):.1f} % | "
            f"{100 * np.mean(np.asarray(fo['new'].scores) >= a):.1f} % | "
            f"{100 * np.mean(np.asarray(neg_scores) < a):.1f} % | "
            f"{100 * np.mean(np.asarray(real_scores) < a):.1f} % |"
        )
    lines += [
        "",
        f"view_score is the fraction of the {len(cal['null_logits'])} held-out null inputs whose "
        "logit is at most the frame's, so on frames like the null set it is ~uniform and the "
        "expected rejection is ~alpha; raw phantom frames are easier than the augmented null "
        "inputs, hence their higher acceptance. The threshold was fixed on the null set "
        "before any test row was run.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))
