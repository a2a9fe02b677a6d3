"""Calibrate the view / out-of-distribution gate for the shipped models (rerunnable).

`python -m models.calibrate_view [--patients N] [--null-patients N] [--alpha A]`

For each shipped ONNX model (fp32 and int8):
1. make sure it has the `features` output (models/view_features.py, idempotent);
2. render in-distribution frames the way the training data is made (models/train/data.py:
   randomized phantom patients, the detector's own preprocessing) from seeds no training,
   validation, benchmark or test uses (fit: 20_000+, null: 21_000+), each raw and once
   augmented like training (models/train/augment.py when torch is installed, else the numpy
   mirror below), so the gate accepts what the model was trained to handle;
3. fit a Gaussian to the pooled encoder features of the fit set (per-feature standardised,
   Ledoit-Wolf shrinkage; Lee et al. 2018 use the class-conditional version of this);
4. compute the Mahalanobis distances of the *held-out* null set: view_score is the conformal
   p-value of a frame's distance against them, view_ok = view_score >= alpha;
5. write `<model>.view.json` next to the model: mean, precision, null distances, alpha, the
   sha256 of the model file it belongs to, and the provenance.

Rerun after every retraining (the detector refuses a calibration made for another file).
No real image is used: the pydicom/pydicom-data files are the gate's test set.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

from edge_service.detector.view import (
    CALIBRATION_FORMAT,
    calibration_path,
    encode_array,
    file_sha256,
)
from models.view_features import FEATURE_OUTPUT, add_feature_output

log = logging.getLogger("models.calibrate_view")
MODELS = Path(__file__).resolve().parent
FIT_SEED_BASE = 20_000
NULL_SEED_BASE = 21_000
IN_HW = (128, 192)
# Fraction of calibration patients drawn with the phantom's realism knobs. 0: a gate fitted
# on the realism mixture + the full domain randomisation (the training distribution) was
# measured to accept a real echocardiography cine from pydicom-data (docs/model.md, "Why
# every foreign-simulator frame is refused"), so the gate stays on the narrow phantom.
REALISM = 0.0


def _render(args: tuple[int, int]) -> np.ndarray:
    from models.train.data import _patient

    seed, frames = args
    x, _ = _patient((seed, frames, IN_HW[0], IN_HW[1], REALISM))
    return x.astype(np.float32)


def render(seed_base: int, patients: int, frames: int, workers: int) -> np.ndarray:
    jobs = [(seed_base + i, frames) for i in range(patients)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return np.concatenate(list(pool.map(_render, jobs, chunksize=4)))


def augment_numpy(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ranges of models/train/augment.py (geometry, beam blur, gain, dynamic range,
    log-compression curve, noise) in numpy, for environments without torch."""
    out = np.empty_like(x)
    h, w = x.shape[1:]
    for i, img in enumerate(x):
        scale, aspect = rng.uniform(0.85, 1.2), rng.uniform(0.9, 1.1)
        rot = math.radians(rng.uniform(-6, 6))
        flip = -1.0 if rng.random() < 0.5 else 1.0
        sx, sy = flip / (scale * aspect), 1.0 / (scale / aspect)
        m = np.array(
            [[sy * math.cos(rot), math.sin(rot) * sx], [-math.sin(rot) * sy, sx * math.cos(rot)]]
        )
        c = np.array([(h - 1) / 2, (w - 1) / 2])
        shift = np.array([rng.uniform(-0.05, 0.05) * h, rng.uniform(-0.05, 0.05) * w])
        a = ndimage.affine_transform(img, m, offset=c - m @ c + shift, order=1, cval=0.0)
        if rng.random() < 0.3:
            f = rng.uniform(1.3, 2.2)
            small = ndimage.zoom(a, 1 / f, order=1)
            a = ndimage.zoom(small, (h / small.shape[0], w / small.shape[1]), order=1)[:h, :w]
        if rng.random() < 0.3:
            a = ndimage.gaussian_filter(a, rng.uniform(0.5, 1.5))
        fan = a > 0.004
        gain, contrast, gamma = (
            rng.uniform(-0.15, 0.15),
            rng.uniform(0.7, 1.4),
            rng.uniform(0.7, 1.5),
        )
        a = np.clip((a + gain - 0.3) * contrast + 0.3, 0, 1) ** gamma
        sig, mul = rng.uniform(0, 0.04), rng.uniform(0, 0.15)
        a = a * (1 + mul * rng.standard_normal(a.shape)) + sig * rng.standard_normal(a.shape)
        out[i] = np.clip(a * fan, 0, 1)
    return out


def augment_like_training(x: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    try:
        import torch

        from models.train.augment import augment
    except ImportError:
        return augment_numpy(x, np.random.default_rng(seed)), "numpy mirror of augment.py"
    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x[:, None])
    yt = torch.zeros((len(x), 2, *x.shape[1:]))
    # Basic augmentation only (randomize=False), like the numpy mirror: with the domain
    # randomisation the fitted Gaussian becomes wide enough to take in real other-anatomy
    # ultrasound (measured, docs/model.md), whichever environment reruns this.
    xa, _ = augment(xt, yt, g, randomize=False)
    return xa[:, 0].numpy().astype(np.float32), "models/train/augment.py (torch, randomize=False)"


def features(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = [sess.run([FEATURE_OUTPUT], {name: xi[None, None]})[0].reshape(-1) for xi in x]
    return np.stack(out).astype(np.float64)


def ledoit_wolf(z: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf (2004) shrinkage covariance of centred rows z (n, p) and the shrinkage."""
    n, p = z.shape
    s = z.T @ z / n
    mu = float(np.trace(s)) / p
    d2 = float(((s - mu * np.eye(p)) ** 2).sum())
    x2 = (z**2).sum(1)
    b2_sum = float((x2**2).sum() - 2 * np.einsum("ij,jk,ik->", z, s, z) + n * (s**2).sum())
    b2 = min(b2_sum / n**2, d2)
    shrink = b2 / d2 if d2 > 0 else 1.0
    return shrink * mu * np.eye(p) + (1 - shrink) * s, shrink


def fit(feat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, precision of the standardised features, shrinkage). Standardising
    first keeps the stored float32 precision well conditioned and makes the shrinkage
    target (a multiple of I) scale-free."""
    mean = feat.mean(0)
    sd = feat.std(0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    cov, shrink = ledoit_wolf((feat - mean) / sd)
    prec = np.linalg.inv(cov)
    # Round-trip through float32 now, so the null distances are those the detector computes.
    mean, sd, prec = (
        a.astype(np.float32).astype(np.float64) for a in (mean, sd, (prec + prec.T) / 2)
    )
    return mean, sd, prec, shrink


def mahalanobis(feat: np.ndarray, mean: np.ndarray, sd: np.ndarray, prec: np.ndarray) -> np.ndarray:
    d = (feat - mean) / sd
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, prec, d), 0.0))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=MODELS, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.calibrate_view", description=__doc__)
    ap.add_argument("--patients", type=int, default=300, help="fit-set phantom patients")
    ap.add_argument("--null-patients", type=int, default=150, help="held-out null-set patients")
    ap.add_argument("--frames", type=int, default=3, help="frames per patient")
    ap.add_argument(
        "--alpha",
        type=float,
        default=0.005,
        help="view_ok when the conformal p-value >= alpha (expected rejection of good frames)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--models", nargs="*", type=Path, default=None)
    ap.add_argument(
        "--cache", action="store_true", help="reuse /tmp/dgs_view_calib_cache.npz renders (dev)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from edge_service.phantom import PHANTOM_REVISION

    models = args.models or [MODELS / "dgs_seg.onnx", MODELS / "dgs_seg.int8.onnx"]
    t0 = time.time()
    cache = Path("/tmp/dgs_view_calib_cache.npz")
    key = f"{PHANTOM_REVISION}-{args.patients}-{args.null_patients}-{args.frames}-{REALISM:g}"
    if args.cache and cache.exists() and str(np.load(cache)["key"]) == key:
        z = np.load(cache)
        x_fit, x_null = z["fit"], z["null"]
    else:
        x_fit = render(FIT_SEED_BASE, args.patients, args.frames, args.workers)
        x_null = render(NULL_SEED_BASE, args.null_patients, args.frames, args.workers)
        np.savez(cache, key=key, fit=x_fit, null=x_null)
    xa_fit, how = augment_like_training(x_fit, 1)
    xa_null, _ = augment_like_training(x_null, 2)
    x_fit = np.concatenate([x_fit, xa_fit])
    x_null = np.concatenate([x_null, xa_null])
    log.info(
        "rendered %d fit + %d null inputs in %.0f s", len(x_fit), len(x_null), time.time() - t0
    )
    for model in models:
        add_feature_output(model)
        f_fit = features(model, x_fit)
        f_null = features(model, x_null)
        mean, sd, prec, shrink = fit(f_fit)
        d_null = np.sort(mahalanobis(f_null, mean, sd, prec))
        d_fit = mahalanobis(f_fit, mean, sd, prec)
        doc = {
            "format": CALIBRATION_FORMAT,
            "method": "Mahalanobis distance of pooled encoder features (Lee et al. 2018), "
            "Ledoit-Wolf shrinkage on standardised features; view_score = conformal p-value "
            "against held-out in-distribution distances",
            "model_file": model.name,
            "model_sha256": file_sha256(model),
            "feature_output": FEATURE_OUTPUT,
            "n_features": int(mean.size),
            "alpha": args.alpha,
            "tail_scale": float(d_null.std()),
            "shrinkage": round(shrink, 6),
            "null_distances": [round(float(v), 4) for v in d_null],
            "summary": {
                "fit_distance_median": round(float(np.median(d_fit)), 4),
                "null_distance_median": round(float(np.median(d_null)), 4),
                "null_distance_max": round(float(d_null[-1]), 4),
            },
            "provenance": {
                "command": "python -m models.calibrate_view",
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "git_commit": _git_commit(),
                "phantom_revision": PHANTOM_REVISION,
                "fit": f"seeds {FIT_SEED_BASE}+ x {args.patients} patients x {args.frames} "
                f"frames, raw + augmented ({len(f_fit)} inputs)",
                "null": f"seeds {NULL_SEED_BASE}+ x {args.null_patients} patients x "
                f"{args.frames} frames, raw + augmented ({len(f_null)} inputs)",
                "augmentation": how,
                "data": "simulated phantom frames only (models/train/data.py); "
                "no real image was used",
            },
            "mean": encode_array(mean),
            "scale": encode_array(sd),
            "precision": encode_array(prec),
        }
        out = calibration_path(model)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        log.info(
            "%s: %d features, shrinkage %.3f, null distance median %.2f max %.2f -> %s",
            model.name,
            mean.size,
            shrink,
            np.median(d_null),
            d_null[-1],
            out,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
