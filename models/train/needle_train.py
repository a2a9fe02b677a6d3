"""`python -m models.train.needle_train`: train the needle model on CPU, export
models/needle.onnx and models/needle.train.json.

A small U-Net over (frame, frame - frame[-1], frame - frame[-3]) with two output maps:
shaft (logit of "visible needle shaft") and tip (logit of a Gaussian tip heat map, trained
with the CenterNet focal loss). Only the TRAINING generator's sessions are used; the
benchmark tests on the held-out generator. Reproducible from --seed; --minutes is a safety
stop for the shared machine (the card records the steps actually run).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edge_service.acquisition.frame import Roi
from edge_service.needle.postprocess import peak_subpixel, sigmoid
from edge_service.needle.preprocess import DIFF_GAIN, IN_H, IN_W, LAGS, roi_scale, to_frame
from edge_service.phantom import PHANTOM_REVISION
from models.train.needle_data import Sample, generate

log = logging.getLogger("models.train.needle")
MODELS = Path(__file__).resolve().parents[1]
TIP_FOUND = 0.3  # heat-map peak above which a tip is reported (validated below)


def _block(cin: int, cout: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class NeedleNet(nn.Module):
    def __init__(self, cin: int = 1 + len(LAGS), widths: tuple[int, ...] = (8, 16, 24, 32)) -> None:
        super().__init__()
        self.widths = widths
        self.enc = nn.ModuleList()
        c = cin
        for i, w in enumerate(widths):
            self.enc.append(_block(c, w, 1 if i == 0 else 2))
            c = w
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.dec.append(_block(c + w, w, 1))
            c = w
        self.head = nn.Conv2d(c, 2, 1)
        with torch.no_grad():  # tip prior ~1 %: starts the focal loss sensibly
            assert self.head.bias is not None
            self.head.bias[1] = -4.6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, blk in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = blk(x)
            skips.append(x)
        skips.pop()
        for blk in self.dec:
            s = skips.pop()
            x = F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, s], 1))
        return self.head(x)


def focal(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = (target >= 0.999).float()
    pos_l = -((1 - p) ** 2) * torch.log(p) * pos
    neg_l = -((1 - target) ** 4) * (p**2) * torch.log(1 - p) * (1 - pos)
    return (pos_l.sum() + neg_l.sum()) / pos.sum().clamp(min=1.0)


def loss_fn(out: torch.Tensor, shaft: torch.Tensor, tip: torch.Tensor) -> torch.Tensor:
    s = out[:, 0]
    bce = F.binary_cross_entropy_with_logits(s, shaft, pos_weight=torch.tensor(5.0))
    p = torch.sigmoid(s)
    dice = 1 - (2 * (p * shaft).sum() + 1) / (p.sum() + shaft.sum() + 1)
    return bce + dice + focal(out[:, 1], tip)


def _arrays(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.stack([s.x for s in samples])
    sh = np.stack([s.shaft for s in samples])
    tp = np.stack([s.tip for s in samples])
    return x, sh, tp


def evaluate(model: nn.Module, samples: list[Sample], thr: float = TIP_FOUND) -> dict[str, float]:
    model.eval()
    errs, fp, n_neg, tp_n, n_pos = [], 0, 0, 0, 0
    with torch.no_grad():
        for s in samples:
            out = model(torch.from_numpy(s.x.astype(np.float32))[None]).numpy()[0]
            r, c, v = peak_subpixel(sigmoid(out[1]))
            roi = Roi(*s.roi)
            if s.has_tip and s.tip_px is not None:
                n_pos += 1
                if v >= thr:
                    tp_n += 1
                    fr, fc = to_frame(r, c, roi, roi_scale(roi))
                    errs.append(math.hypot(fr - s.tip_px[0], fc - s.tip_px[1]) * s.spacing)
            elif s.kind in ("none", "reflector"):
                n_neg += 1
                fp += v >= thr
    model.train()
    e = np.array(errs) if errs else np.array([np.nan])
    return {
        "tip_err_median_mm": float(np.median(e)),
        "tip_err_p95_mm": float(np.percentile(e, 95)),
        "detection_rate": tp_n / max(n_pos, 1),
        "false_tip_rate_no_needle": fp / max(n_neg, 1),
        "n_pos": n_pos,
        "n_neg": n_neg,
    }


def augment(x: np.ndarray, sh: np.ndarray, tp: np.ndarray, rng: np.random.Generator) -> tuple:
    x = x.astype(np.float32)
    sh = sh.astype(np.float32)
    tp = tp.astype(np.float32)
    flip = rng.random(len(x)) < 0.5
    x[flip] = x[flip][..., ::-1]
    sh[flip] = sh[flip][..., ::-1]
    tp[flip] = tp[flip][..., ::-1]
    gain = rng.uniform(0.8, 1.2, (len(x), 1, 1)).astype(np.float32)
    x[:, 0] = np.clip(x[:, 0] * gain, 0, 1)
    x[:, 1:] = np.clip(x[:, 1:] * gain[:, None], -1, 1)
    return np.ascontiguousarray(x), np.ascontiguousarray(sh), np.ascontiguousarray(tp)


def export(model: nn.Module, path: Path, meta: dict[str, str]) -> None:
    import onnx

    model.eval()
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        model,
        (torch.zeros(1, 1 + len(LAGS), IN_H, IN_W),),
        str(tmp),
        input_names=["frames"],
        output_names=["maps"],
        opset_version=17,
        dynamo=False,
    )
    m = onnx.load(str(tmp))
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, str(path))
    tmp.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.train.needle_train", description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--per-session", type=int, default=40)
    ap.add_argument("--val-sessions", type=int, default=6)
    ap.add_argument("--val-per-session", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--minutes", type=float, default=30.0, help="stop training after this")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--out", type=Path, default=MODELS / "needle.onnx")
    ap.add_argument("--init", type=Path, help="warm start from this checkpoint (.pt)")
    ap.add_argument("--data-cache", type=Path, help="reuse/save the generated samples here (.pkl)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    key = (args.sessions, args.per_session, args.val_sessions, args.val_per_session, args.seed)
    cached = None
    if args.data_cache is not None and args.data_cache.is_file():
        with args.data_cache.open("rb") as fh:
            cached = pickle.load(fh)
        if cached.get("key") != key or cached.get("rev") != PHANTOM_REVISION:
            cached = None
    if cached is not None:
        train, val = cached["train"], cached["val"]
    else:
        train = generate(args.sessions, args.per_session, 10_000, args.seed, "train")
        val = generate(args.val_sessions, args.val_per_session, 90_000, args.seed + 1, "train")
        if args.data_cache is not None:
            args.data_cache.parent.mkdir(parents=True, exist_ok=True)
            with args.data_cache.open("wb") as fh:
                pickle.dump({"key": key, "rev": PHANTOM_REVISION, "train": train, "val": val}, fh)
    t_data = time.time() - t0
    log.info("data: %d train, %d val samples in %.0f s", len(train), len(val), t_data)
    x, sh, tp = _arrays(train)
    model = NeedleNet()
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
    best: tuple[float, dict] | None = None
    best_state = None
    t1 = time.time()
    step = 0
    history = []
    for step in range(1, args.steps + 1):
        idx = rng.integers(0, len(x), args.batch)
        xb, sb, tb = augment(x[idx], sh[idx], tp[idx], rng)
        out = model(torch.from_numpy(xb))
        loss = loss_fn(out, torch.from_numpy(sb), torch.from_numpy(tb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        over = (time.time() - t1) / 60.0 > args.minutes
        if step % args.eval_every == 0 or step == args.steps or over:
            m = evaluate(model, val)
            m["step"] = step
            m["loss"] = float(loss.detach())
            history.append(m)
            log.info("step %d loss %.4f val %s", step, float(loss), m)
            score = (
                m["tip_err_median_mm"]
                + 5 * (1 - m["detection_rate"])
                + 5 * m["false_tip_rate_no_needle"]
            )
            if math.isfinite(score) and (best is None or score < best[0]):
                best = (score, m)
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if over:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    t_train = time.time() - t1
    meta = {
        "dgs.model": "needle",
        "dgs.lags": json.dumps(list(LAGS)),
        "dgs.diff_gain": str(DIFF_GAIN),
        "dgs.outputs": json.dumps(["shaft", "tip"]),
        "dgs.phantom_revision": str(PHANTOM_REVISION),
    }
    export(model, args.out, meta)
    ckpt = MODELS / "runs" / (args.out.stem + ".pt")
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), ckpt)
    card = {
        "model": args.out.name,
        "input": [1, 1 + len(LAGS), IN_H, IN_W],
        "lags": list(LAGS),
        "diff_gain": DIFF_GAIN,
        "widths": list(model.widths),
        "params": int(sum(p.numel() for p in model.parameters())),
        "generator": "train (edge_service.phantom.needle.TRAIN)",
        "train_samples": len(train),
        "val_samples": len(val),
        "sessions": args.sessions,
        "val_sessions": args.val_sessions,
        "steps_run": step,
        "batch": args.batch,
        "seed": args.seed,
        "data_s": round(t_data),
        "train_s": round(t_train),
        "threads": args.threads,
        "best_val": best[1] if best else None,
        "history": history,
        "phantom_revision": PHANTOM_REVISION,
    }
    args.out.with_suffix(".train.json").write_text(json.dumps(card, indent=1))
    log.info("exported %s; best val %s", args.out, best[1] if best else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
