"""`python -m models.train.eval_postprocess`: the detector's transfer post-processing options
side by side on own validation sets and (only to report, never to choose) the foreign
simulator - the table "Transfer post-processing" in docs/model.md.

Sets (held-out seeds 0-39 of bench_detector, FAIR at 0.5 fps, 680 frames each): `plain`,
`real` (+ realism knobs, stream [seed, 0x5EA1]), `rf` (rendered by rf_family.RfRenderer,
stream [seed, 0xBEEF]); `foreign` = benchmarks/foreign's 16 detector sessions (96 frames).
Frames are cached as pickles in --cache (the RF set takes ~15 min to render on a busy host).
The network runs once per frame; each variant re-runs only the post-processing.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge_service.detector import Detector
from edge_service.detector.settings import DetectorSettings

VARIANTS: list[dict[str, Any]] = [
    {"calcification_max_extent_mm": None},
    {},
    {"calcification_max_extent_mm": None, "nerve_size_from": "rim"},
    {"calcification_max_extent_mm": None, "nerve_relative_threshold": 0.5},
]


def _own(kind: str) -> list[dict[str, Any]]:
    from benchmarks.bench_detector import REALISM_STREAM, _sessions
    from edge_service.phantom import PhantomSimulator
    from edge_service.sim.motion import manoeuvre
    from models.train.rf_family import RfRenderer

    out = []
    motion = manoeuvre("fair")
    for seed, cfg in _sessions(False):
        if kind == "real":
            cfg = cfg.realistic(np.random.default_rng([seed, REALISM_STREAM]))
        sim = PhantomSimulator(cfg, seed=seed)
        tr = sim.truth()
        frames = []
        if kind == "rf":
            r = RfRenderer(sim, np.random.default_rng([seed, 0xBEEF]))
            t, angs = motion.sample(0.5)
            pfs: Iterator[Any] = (r.render(a, float(tt)) for tt, a in zip(t, angs, strict=True))
        else:
            pfs = sim.run(motion, fps=0.5)
        for pf in pfs:
            frames.append((pf.frame, pf.masks["nerve"], pf.masks["calcification"]))
        out.append({"calc": bool(cfg.calcification), "nerve": tr["nerve"], "frames": frames})
    return out


def _foreign() -> list[dict[str, Any]]:
    from benchmarks.foreign.bench import detector_sessions
    from edge_service.recording import open_recording

    out = []
    for fs in detector_sessions(False):
        rec = open_recording(fs.path)
        frames = []
        for i, fr in enumerate(rec.frames()):
            m = fs.frame_masks(i)
            frames.append((fr, m["nerve"], m["calcification"]))
        calc = bool(fs.truth["calcification"]["present"])
        out.append({"calc": calc, "nerve": fs.truth["nerve"], "frames": frames})
    return out


def load_set(name: str, cache: Path) -> list[dict[str, Any]]:
    path = cache / f"{name}.pkl"
    if path.exists():
        with path.open("rb") as f:
            data: list[dict[str, Any]] = pickle.load(f)
            return data
    data = _foreign() if name == "foreign" else _own(name)
    cache.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(data, f)
    return data


def session_calls(sess: list[tuple[bool, bool]]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(truth, called) per session -> (right, of) for the calcified sessions (sensitivity)
    and for the calcification-free ones (specificity)."""
    pos = [d for t, d in sess if t]
    neg = [d for t, d in sess if not t]
    return (sum(pos), len(pos)), (sum(not d for d in neg), len(neg))


def evaluate(det: Detector, data: list[dict[str, Any]], variant: dict[str, Any]) -> str:
    probs = [[det.probabilities(fr) for fr, _, _ in s["frames"]] for s in data]
    det.settings = DetectorSettings(view_gate=False, **variant)
    ap: list[float] = []
    wd: list[float] = []
    csa: list[float] = []
    found = frames = 0
    sess = []
    for s, ps in zip(data, probs, strict=True):
        hits = 0
        for (fr, _, _), p in zip(s["frames"], ps, strict=True):
            d = det._segment(fr, p)
            frames += 1
            n = d.nerve
            if n.found and n.ap_mm and n.width_mm and n.csa_mm2:
                found += 1
                ap.append(abs(n.ap_mm - s["nerve"]["ap_mm"]))
                wd.append(abs(n.width_mm - s["nerve"]["width_mm"]))
                csa.append(abs(n.csa_mm2 - s["nerve"]["csa_mm2"]))
            hits += int(d.calcification.present)
        sess.append((s["calc"], hits >= len(s["frames"]) / 2))
    sens, spec = session_calls(sess)

    def med(v: list[float]) -> str:
        return f"{statistics.median(v):.2f}" if v else "n/a"

    return (
        f"{med(ap)} / {med(wd)} / {med(csa)}; found {found}/{frames}; "
        f"calc {sens[0]}/{sens[1]}, {spec[0]}/{spec[1]}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m models.train.eval_postprocess", description=__doc__
    )
    ap.add_argument("--sets", default="plain,real,rf,foreign")
    ap.add_argument("--model", default=None, help="ONNX file (default: the shipped model)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dgs_eval_postprocess"))
    args = ap.parse_args(argv)
    det = Detector.load(path=args.model, threads=2, settings=DetectorSettings(view_gate=False))
    for name in args.sets.split(","):
        data = load_set(name, args.cache)
        for v in VARIANTS:
            print(f"| {name} | {json.dumps(v)} | {evaluate(det, data, v)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
