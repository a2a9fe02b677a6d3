"""Train, export and calibrate the view classifier (`models/view_cls.onnx`), the learned part
of the view gate (docs/model.md, "View gate").

`python -m models.view_train [--minutes M] [--threads T] [--cache]` (needs the train extra:
torch). An auxiliary view-classification network in the sense of Hendrycks et al. 2019
("outlier exposure"): a small CNN on the detector's model input (the B-mode region at
128 x 192) that says "short-axis view of the deep gluteal space" or not.

- Positives: phantom frames (models/train/data.py renders; training seeds 10_000+, with
  and without the revision-3 realism knobs), under the segmentation training's full domain
  randomisation (models/train/augment.py: depth presets, linear geometry, letterboxing, TGC,
  frequency, speckle, compounding, persistence, burned-in text, JPEG) and, for a third of
  them, re-rendered with a speckle / PSF model of our own (models/view_negatives.respeckle).
- Negatives: other anatomy from models/view_negatives.py (cardiac, fetal, abdominal, linear
  vessels / thyroid, bladder, lung, muscle-only, bone-only, gel only, screens), under the
  same augmentation, plus phantom frames turned into non-views (a phased-array sector
  footprint, upside down, tiles shuffled).
- Calibration (held out, never trained on): phantom seeds 21_000+ (raw and augmented) are
  the null set: `view_score` is the conformal p-value of a frame's logit against their
  logits; `alpha` is the threshold. Held-out synthetic negatives (seed 7_777_777) give the
  rejection rate stored in the calibration. The foreign simulator (benchmarks/foreign) and
  the pydicom / pydicom-data files are never used here: they are the test.

The classifier does not read the segmentation network's features, so retraining the
segmentation model does not invalidate it (unlike the `features` method).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import time
from pathlib import Path

import numpy as np

from edge_service.detector.view import file_sha256
from edge_service.detector.view_classifier import CLASSIFIER_FORMAT, classifier_calibration_path
from models.view_negatives import CATEGORIES, negatives, respeckle

log = logging.getLogger("models.view_train")
MODELS = Path(__file__).resolve().parent
IN_HW = (128, 192)
TRAIN_CACHES = (Path("/tmp/dgs_train_cache.npz"), Path("/tmp/t2_train_cache.npz"))
HELD_CACHE = Path("/tmp/dgs_view_calib_cache.npz")
NEG_TRAIN_SEED = 1_234_567
NEG_HELD_SEED = 7_777_777


def _positives(cache: bool, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """(training positives, held-out positives) as float32 (N, H, W)."""
    if cache and all(p.exists() for p in (*TRAIN_CACHES, HELD_CACHE)):
        tr = np.concatenate([np.load(p)["xtr"].astype(np.float32) for p in TRAIN_CACHES])
        held = np.load(HELD_CACHE)["null"].astype(np.float32)
        return tr, held
    from models.train.data import generate

    a = generate(10_000, 600, 3, IN_HW, workers, realism=0.0).x
    b = generate(10_000, 600, 3, IN_HW, workers, realism=0.7).x
    held = generate(21_000, 150, 3, IN_HW, workers, realism=0.7).x
    return np.concatenate([a, b]).astype(np.float32), held.astype(np.float32)


def phantom_non_views(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phantom content that is no gluteal short-axis view: a phased-array footprint (point
    apex, the near field stretched), upside down, or its tiles shuffled."""
    h, w = x.shape
    k = rng.integers(3)
    if k == 0:
        import cv2

        yy, xx = np.mgrid[0:h, 0:w]
        ang = np.degrees(np.arctan2(xx - w / 2, np.maximum(yy + 1.0, 1e-6)))
        keep = (np.abs(ang) < rng.uniform(30, 45)) & (np.hypot(xx - w / 2, yy) < h)
        top = x[: int(h * rng.uniform(0.4, 0.7))]
        return np.where(keep, cv2.resize(top, (w, h)), 0).astype(np.float32)
    if k == 1:
        return np.ascontiguousarray(x[::-1]).astype(np.float32)
    n = int(rng.choice([3, 4, 5]))
    bh, bw = h // n, w // n
    out = x.copy()
    blocks = [x[i * bh : (i + 1) * bh, j * bw : (j + 1) * bw] for i in range(n) for j in range(n)]
    for t, b in enumerate(rng.permutation(len(blocks))):
        i, j = divmod(t, n)
        out[i * bh : (i + 1) * bh, j * bw : (j + 1) * bw] = blocks[b]
    return out


def build_net():  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    class ViewNet(nn.Module):
        """128x192 -> avg-pool 4 to 32x48 (the anatomy's layout, not the speckle: the
        speckle grain is what differs most between scanners and simulators) -> 4 conv
        blocks -> coarse 2x3 layout + global mean -> one logit (in-distribution view)."""

        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AvgPool2d(4)
            self.body = nn.Sequential(
                block(1, 12),
                nn.MaxPool2d(2),
                block(12, 24),
                nn.MaxPool2d(2),
                block(24, 32),
                block(32, 48),
            )
            self.layout = nn.AdaptiveAvgPool2d((2, 3))
            self.drop = nn.Dropout(0.2)
            self.head = nn.Linear(48 * 6 + 48, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head_from_pooled(self.pool(x))

        def head_from_pooled(self, xp: torch.Tensor) -> torch.Tensor:
            f = self.body(xp)
            z = torch.cat([self.layout(f).flatten(1), f.mean(dim=(2, 3))], 1)
            return self.head(self.drop(z))

    return ViewNet()


def _linear_maps(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps of models/train/augment.py's linear-array unwarp (sector -> rectangle)."""
    half = math.radians(rng.uniform(25.0, 36.0))
    r0 = rng.uniform(0.35, 0.8)
    outer = r0 + 1.0
    top = r0 * math.cos(half)
    width = 2 * outer * math.sin(half)
    height = outer - top
    v = (np.arange(h, dtype=np.float32) + 0.5) / h
    u = (np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1
    rr = r0 + v[:, None]
    th = u[None, :] * half * 0.92
    xs = rr * np.sin(th) / (width / 2)
    ys = ((rr * np.cos(th)) - top) / height * 2 - 1
    return ((xs + 1) * w / 2 - 0.5).astype(np.float32), ((ys + 1) * h / 2 - 0.5).astype(np.float32)


def augment_fast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One image, the ranges of models/train/augment.py (augment + domain_randomize) in
    OpenCV: mirror, scale/aspect/shift/rotation, depth preset zoom, linear-array unwarp,
    letterboxing, gain/contrast/log-curve, TGC, anisotropic blur (frequency/beam), speckle
    grain, speckle-reduction smoothing, persistence, noise, burned-in annotations, JPEG.
    (The torch version costs ~0.2 s per image on this shared machine; this ~1 ms.)"""
    import cv2

    from models.train.augment import burn_annotations

    h, w = img.shape
    x = img.astype(np.float32)
    if rng.random() < 0.2:
        mx, my = _linear_maps(h, w, rng)
        x = cv2.remap(x, mx, my, cv2.INTER_LINEAR, borderValue=0.0)
    scale, aspect = rng.uniform(0.85, 1.2), rng.uniform(0.9, 1.1)
    if rng.random() < 0.35:
        scale *= rng.uniform(0.75, 1.25)  # depth preset
    rot = rng.uniform(-6, 6)
    m = cv2.getRotationMatrix2D((w / 2, 0.0), rot, 1.0)
    m[:, :2] = m[:, :2] @ np.diag([scale * aspect, scale / aspect])
    if rng.random() < 0.5:
        m[0] = -m[0]
        m[0, 2] += w
    m[:, 2] += (rng.uniform(-0.1, 0.1) * w / 2, rng.uniform(-0.1, 0.1) * h / 2)
    if rng.random() < 0.15:  # letterbox
        s = rng.uniform(0.7, 0.92)
        lb = (
            np.array([[s, 0, (1 - s) * w / 2], [0, 1, 0]])
            if rng.random() < 0.5
            else (np.array([[1, 0, 0], [0, s, (1 - s) * h / 2]]))
        )
        m = lb @ np.vstack([m, [0, 0, 1]])
    x = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    fan = x > 0.004
    if rng.random() < 0.3:
        f = rng.uniform(1.3, 2.2)
        x = cv2.resize(
            cv2.resize(x, (int(w / f), int(h / f)), interpolation=cv2.INTER_AREA), (w, h)
        )
    if rng.random() < 0.5:
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=rng.uniform(0.3, 2.0), sigmaY=rng.uniform(0.3, 1.4))
    x = ((x + rng.uniform(-0.15, 0.15) - 0.3) * rng.uniform(0.7, 1.4) + 0.3).clip(0, 1)
    x = x ** rng.uniform(0.7, 1.5)
    if rng.random() < 0.5:  # TGC
        knots = rng.uniform(-0.12, 0.12, 6)
        x = x + np.interp(np.linspace(0, 1, h), np.linspace(0, 1, 6), knots)[:, None]
    if rng.random() < 0.35:  # speckle grain
        k = rng.uniform(1.5, 8.0)
        field = cv2.GaussianBlur(
            rng.gamma(k, 1.0 / k, (h, w)).astype(np.float32), (0, 0), *(rng.uniform(0.4, 1.6),) * 2
        )
        x = x * np.sqrt((field / field.mean()).clip(0.2, 3.0))
    if rng.random() < 0.3:  # speckle reduction (edge-preserving)
        x = cv2.bilateralFilter(x.astype(np.float32), 5, rng.uniform(0.03, 0.15), 3)
    if rng.random() < 0.25:  # persistence
        p = rng.uniform(0.2, 0.5)
        x = (1 - p) * x + p * np.roll(x, tuple(rng.integers(-1, 2, 2)), (0, 1))
    x = x * (1 + rng.uniform(0, 0.15) * rng.standard_normal((h, w))) + rng.uniform(
        0, 0.04
    ) * rng.standard_normal((h, w))
    x = np.where(fan, x, 0).clip(0, 1)
    u8 = np.ascontiguousarray((x * 255).round().astype(np.uint8))
    if rng.random() < 0.3:
        burn_annotations(u8, rng)
    if rng.random() < 0.3:
        ok, enc = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 85))])
        if ok:
            u8 = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
    return u8.astype(np.float32) / 255.0


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.stack([augment_fast(xi, rng) for xi in x])


def _pool4(x: np.ndarray) -> np.ndarray:
    """(N, 128, 192) -> (N, 32, 48) block means (= the network's AvgPool2d(4))."""
    n, h, w = x.shape
    return x.reshape(n, h // 4, 4, w // 4, 4).mean(axis=(2, 4)).astype(np.float32)


def logits(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.array(
        [float(sess.run(None, {name: xi[None, None].astype(np.float32)})[0].ravel()[0]) for xi in x]
    )


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=MODELS,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.view_train", description=__doc__)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64, help="per class")
    ap.add_argument("--pool", type=int, default=5000, help="augmented inputs per class")
    ap.add_argument("--negatives", type=int, default=4000)
    ap.add_argument("--alpha", type=float, default=0.005)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=MODELS / "view_cls.onnx")
    ap.add_argument("--cache", action="store_true", help="reuse /tmp phantom renders (dev)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.time()
    pos, held = _positives(args.cache, args.workers)
    neg, _ = negatives(args.negatives, NEG_TRAIN_SEED)
    log.info("data: %d positives, %d negatives (%.0f s)", len(pos), len(neg), time.time() - t0)
    # One augmented pool (augmentation is the costly part on this shared CPU), reduced to
    # the network's 32x48 working size once; epochs over it add mirror + small shifts.
    rng = np.random.default_rng(2)
    n_pool = args.pool
    p_idx = rng.integers(len(pos), size=n_pool)
    p = pos[p_idx].copy()
    for i in np.flatnonzero(rng.random(n_pool) < 0.33):
        p[i] = respeckle(p[i], rng)
    n_syn = n_pool * 3 // 4
    nb = neg[rng.integers(len(neg), size=n_syn)]
    nv = np.stack(
        [phantom_non_views(pos[j], rng) for j in rng.integers(len(pos), size=n_pool - n_syn)]
    )
    xs = []
    for k, chunk in enumerate(np.array_split(np.concatenate([p, nb, nv]), 40)):
        xs.append(_pool4(_augment(chunk, rng)))
        log.info("augmented %d/40 chunks (%.0f s)", k + 1, time.time() - t0)
    xp = torch.from_numpy(np.concatenate(xs)[:, None])
    yp = torch.cat([torch.ones(n_pool), torch.zeros(n_pool)])
    net = build_net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    b = args.batch
    step = 0
    t_train = time.time()
    deadline = t_train + 60 * args.minutes
    losses: list[float] = []
    while time.time() < deadline:
        idx = torch.from_numpy(rng.integers(len(xp), size=2 * b))
        x = xp[idx]
        flip = torch.from_numpy(rng.random(2 * b) < 0.5)
        x[flip] = x[flip].flip(-1)
        dy, dx = (int(v) for v in rng.integers(-2, 3, 2))
        x = torch.roll(x, (dy, dx), (2, 3))
        net.train()
        out = net.head_from_pooled(x)[:, 0]
        loss = F.binary_cross_entropy_with_logits(out, yp[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 200 == 0:
            frac = (time.time() - t_train) / (deadline - t_train)
            for grp in opt.param_groups:  # cosine decay over the time budget
                grp["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
            log.info("step %d loss %.4f (%.0f s)", step, np.mean(losses[-200:]), time.time() - t0)
    net.eval()
    torch.onnx.export(
        net,
        (torch.zeros(1, 1, *IN_HW),),
        str(args.out),
        input_names=["image"],
        output_names=["logit"],
        opset_version=17,
        dynamo=False,
    )
    log.info("exported %s after %d steps", args.out, step)

    # Calibration on held-out data only.
    r_held = np.random.default_rng(99)
    held_all = np.concatenate([held, _augment(held, r_held), _augment(held, r_held)])
    null = np.sort(logits(args.out, held_all))
    hneg, hcat = negatives(13 * 40, NEG_HELD_SEED)
    hnv = np.stack([phantom_non_views(h, np.random.default_rng(i)) for i, h in enumerate(held)])
    neg_logit = logits(args.out, hneg)
    nv_logit = logits(args.out, hnv)
    thr = float(np.quantile(null, args.alpha))
    per_cat = {
        c: round(float(np.mean(neg_logit[hcat == k] < thr)), 4) for k, c in enumerate(CATEGORIES)
    }
    doc = {
        "format": CLASSIFIER_FORMAT,
        "method": "auxiliary view classifier with outlier exposure on synthetic other-anatomy "
        "negatives (Hendrycks et al. 2019); view_score = conformal p-value of the logit against "
        "held-out in-distribution logits",
        "model_file": args.out.name,
        "model_sha256": file_sha256(args.out),
        "input_hw": list(IN_HW),
        "alpha": args.alpha,
        "null_logits": [round(float(v), 4) for v in null],
        "summary": {
            "steps": step,
            "final_loss": round(float(np.mean(losses[-200:])), 4) if losses else None,
            "held_out_positives_accepted": round(float(np.mean(null >= thr)), 4),
            "held_out_raw_positives_accepted": round(
                float(np.mean(logits(args.out, held) >= thr)), 4
            ),
            "held_out_synthetic_negatives_rejected": round(float(np.mean(neg_logit < thr)), 4),
            "held_out_phantom_non_views_rejected": round(float(np.mean(nv_logit < thr)), 4),
            "negatives_rejected_by_category": per_cat,
        },
        "provenance": {
            "command": "python -m models.view_train",
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git_commit": _git_commit(),
            "positives": "phantom training renders (seeds 10_000+, realism 0 and 0.7) under "
            "models/train/augment.py domain randomisation, 1/3 re-speckled",
            "negatives": f"models/view_negatives.py ({args.negatives} images, seed "
            f"{NEG_TRAIN_SEED}) + phantom non-views, same augmentation",
            "null": f"phantom seeds 21_000+ ({len(held)} frames, realism 0.7), raw + 2 "
            f"augmented copies ({len(null)} inputs)",
            "held_out_negatives": f"{len(hneg)} images seed {NEG_HELD_SEED} + {len(hnv)} "
            "phantom non-views",
            "data": "simulated frames only; no real image and no foreign-simulator frame used",
        },
    }
    cal = classifier_calibration_path(args.out)
    cal.write_text(json.dumps(doc, indent=1) + "\n")
    log.info("calibration %s: %s", cal, json.dumps(doc["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
