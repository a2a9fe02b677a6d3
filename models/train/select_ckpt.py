"""`python -m models.train.select_ckpt RUN_DIR`: choose among a training run's checkpoints
by what the detector reports (mm), on the own generator's VALIDATION patients only.

Dice on the training validation splits (what `python -m models.train` selects with) does not
say whether the measured AP / CSA or the calcification call got better or worse. This tool
runs the detector's own post-processing (view gate off) with each checkpoint's weights on
the validation patients of the three own splits, drawn exactly like the training record's
splits (models/train/data.py: plain seeds 5000+, realism 6000+, RF family 7000+), and
applies a rule fixed before any result is seen:

1. keep a checkpoint only if, on the plain split, its AP and CSA median errors are at most
   the start weights' (+0.005 mm, +0.1 mm²) and its calcification session sensitivity and
   specificity are not lower, and on the realism split its calcification calls are not
   worse either (the own-phantom numbers must not get worse);
2. among those, take the lowest mean of (AP error / start AP error, CSA error / start CSA
   error) over the realism and RF splits (the shifted own data).

The benchmark seeds (0-999) and the foreign simulator are never read here.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edge_service.detector import Detector
from edge_service.detector.settings import DetectorSettings
from models.train.data import (
    VAL_REAL_SEED_BASE,
    VAL_RF_SEED_BASE,
    VAL_SEED_BASE,
    patient_frames,
)
from models.train.eval_postprocess import session_calls
from models.train.export import load_model, to_onnx

log = logging.getLogger("models.train.select_ckpt")
# split -> (seed base, realism fraction, rf fraction), as models.train draws its val splits
SPLITS = {
    "plain": (VAL_SEED_BASE, 0.0, 0.0),
    "real": (VAL_REAL_SEED_BASE, 1.0, 0.0),
    "rf": (VAL_RF_SEED_BASE, 0.5, 1.0),
}
AP_SLACK_MM = 0.005
CSA_SLACK_MM2 = 0.1


def _patient(args: tuple[str, int, int]) -> dict[str, Any]:
    """The same draws as models.train.data (so the same patients and frames)."""
    split, seed, frames = args
    _, realism, rf = SPLITS[split]
    cfg, sim, pfs = patient_frames(seed, frames, realism, rf)
    frs = [pf.frame for pf in pfs]
    return {"calc": bool(cfg.calcification), "nerve": sim.truth()["nerve"], "frames": frs}


def load_split(split: str, patients: int, frames: int, cache: Path) -> list[dict[str, Any]]:
    path = cache / f"{split}-{patients}x{frames}.pkl"
    if path.exists():
        with path.open("rb") as f:
            data: list[dict[str, Any]] = pickle.load(f)
            return data
    base = SPLITS[split][0]
    with ProcessPoolExecutor(max_workers=2) as pool:
        data = list(pool.map(_patient, [(split, base + i, frames) for i in range(patients)]))
    cache.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(data, f)
    return data


@dataclass
class Scores:
    ap: float
    csa: float
    found: int
    frames: int
    sens: tuple[int, int]
    spec: tuple[int, int]

    def text(self) -> str:
        return (
            f"AP {self.ap:.3f} CSA {self.csa:.2f} found {self.found}/{self.frames} "
            f"calc {self.sens[0]}/{self.sens[1]} {self.spec[0]}/{self.spec[1]}"
        )


def score(det: Detector, data: list[dict[str, Any]]) -> Scores:
    ap: list[float] = []
    csa: list[float] = []
    found = frames = 0
    sess = []
    for s in data:
        hits = 0
        for fr in s["frames"]:
            d = det.detect(fr)
            frames += 1
            n = d.nerve
            if n.found and n.ap_mm and n.csa_mm2:
                found += 1
                ap.append(abs(n.ap_mm - s["nerve"]["ap_mm"]))
                csa.append(abs(n.csa_mm2 - s["nerve"]["csa_mm2"]))
            hits += int(d.calcification.present)
        sess.append((s["calc"], hits >= len(s["frames"]) / 2))
    sens, spec = session_calls(sess)
    return Scores(
        statistics.median(ap) if ap else float("inf"),
        statistics.median(csa) if csa else float("inf"),
        found,
        frames,
        sens,
        spec,
    )


def detector_for(ckpt: Path, tmp: Path) -> Detector:
    """The shipped detector's pre/post-processing and onnxruntime around a checkpoint's
    weights (exported to a temporary fp32 ONNX file, as the shipped export does)."""
    import onnx

    model, (h, w) = load_model(ckpt)
    path = tmp / f"{ckpt.stem}.onnx"
    onnx.save(to_onnx(model, h, w, path), str(path))
    return Detector.load(path=path, threads=2, settings=DetectorSettings(view_gate=False))


def choose(rows: dict[str, dict[str, Scores]], start: str) -> str:
    s0 = rows[start]
    best, best_v = start, 1.0
    for name, r in rows.items():
        p, q = r["plain"], s0["plain"]
        keeps_own = (
            p.ap <= q.ap + AP_SLACK_MM
            and p.csa <= q.csa + CSA_SLACK_MM2
            and p.sens[0] >= q.sens[0]
            and p.spec[0] >= q.spec[0]
            and r["real"].sens[0] >= s0["real"].sens[0]
            and r["real"].spec[0] >= s0["real"].spec[0]
        )
        if not keeps_own:
            continue
        v = statistics.mean(
            [r[k].ap / s0[k].ap for k in ("real", "rf")]
            + [r[k].csa / s0[k].csa for k in ("real", "rf")]
        )
        if v < best_v:
            best, best_v = name, v
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.train.select_ckpt", description=__doc__)
    ap.add_argument("run_dir", type=Path, help="the --out folder of a --keep-checkpoints run")
    ap.add_argument(
        "--start", type=Path, default=Path(__file__).resolve().parents[1] / "dgs_seg.pt"
    )
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--every", type=int, default=1, help="evaluate every Nth checkpoint")
    ap.add_argument("--from-step", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dgs_select_ckpt"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    data = {k: load_split(k, args.patients, args.frames, args.cache) for k in SPLITS}
    ckpts = sorted(args.run_dir.glob("step*.pt"))
    ckpts = [c for c in ckpts if int(c.stem[4:]) >= args.from_step][::-1][:: args.every][::-1]
    rows: dict[str, dict[str, Scores]] = {}
    for c in [args.start, *ckpts]:
        det = detector_for(c, args.cache)
        rows[c.name] = {k: score(det, v) for k, v in data.items()}
        log.info("%s: %s", c.name, " | ".join(f"{k} {s.text()}" for k, s in rows[c.name].items()))
    pick = choose(rows, args.start.name)
    table = {n: {k: s.__dict__ for k, s in r.items()} for n, r in rows.items()}
    (args.run_dir / "select_ckpt.json").write_text(
        json.dumps({"chosen": pick, "start": args.start.name, "rows": table}, indent=1)
    )
    print(f"chosen: {pick}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
