"""`python -m models.train`: generate phantom data, train the U-Net on CPU, export ONNX + int8.

Reproducible: the data, the augmentation stream and the weight init all derive from --seed
(torch is forced to deterministic CPU kernels). `--max-minutes` is a safety stop for shared
machines; the model card records the step count actually run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from edge_service.phantom import PHANTOM_REVISION
from models.train.augment import augment, randomize_targets
from models.train.data import (
    TRAIN_SEED_BASE,
    VAL_REAL_SEED_BASE,
    VAL_RF_SEED_BASE,
    VAL_SEED_BASE,
    Batch,
    generate,
)
from models.train.net import CLASSES, UNet, count_macs

log = logging.getLogger("models.train")
HERE = Path(__file__).resolve().parent
# Calcification is ~0.2 % of pixels (nerve ~1.5 %): weighted CE so it is not ignored.
CLASS_WEIGHTS = torch.tensor([1.0, 2.0, 8.0])


def soft_targets(y: torch.Tensor) -> torch.Tensor:
    """(N,2,H,W) nerve/calc fractions -> (N,3,H,W) class probabilities."""
    bg = (1.0 - y.sum(1, keepdim=True)).clamp(0, 1)
    return torch.cat([bg, y], 1)


def loss_fn(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits, 1)
    ce = -(t * logp * CLASS_WEIGHTS.view(1, 3, 1, 1)).sum(1).mean()
    p = logp.exp()[:, 1:]
    tt = t[:, 1:]
    inter = (p * tt).sum((0, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((0, 2, 3)) + tt.sum((0, 2, 3)) + 1)
    return ce + dice.mean()


def dice_scores(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    model.eval()
    inter = np.zeros(2)
    tot = np.zeros(2)
    with torch.no_grad():
        for i in range(0, len(x), 32):
            xb = torch.from_numpy(x[i : i + 32].astype(np.float32))[:, None]
            pred = model(xb).argmax(1).numpy()
            yb = y[i : i + 32] >= 128
            for c in range(2):
                p = pred == c + 1
                inter[c] += (p & yb[:, c]).sum()
                tot[c] += p.sum() + yb[:, c].sum()
    model.train()
    d = 2 * inter / np.maximum(tot, 1)
    return {"nerve": float(d[0]), "calcification": float(d[1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.train", description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patients", type=int, default=600, help="training patients (seeds)")
    ap.add_argument("--frames-per-patient", type=int, default=4)
    ap.add_argument("--val-patients", type=int, default=60)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--input", default="128x192", help="model input HxW")
    ap.add_argument("--widths", default="8,16,24,32,48")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="data generation processes")
    ap.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="size --steps to this training time budget from the speed of the first "
        "--warm-steps (0 = use --steps as given); the chosen count is recorded",
    )
    ap.add_argument("--warm-steps", type=int, default=10)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="hard stop (0 = never)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dgs_train_cache.npz"))
    ap.add_argument(
        "--init", type=Path, default=None, help="start from this checkpoint (fine-tuning)"
    )
    ap.add_argument(
        "--no-randomize",
        action="store_true",
        help="only the basic augmentation (no domain randomisation: augment.py)",
    )
    ap.add_argument(
        "--realism",
        type=float,
        default=0.7,
        help="fraction of training patients with the phantom's realism knobs "
        "(PhantomConfig.realistic: bright cortex, rounded spine, fasciae, attenuation, beam)",
    )
    ap.add_argument(
        "--rf-family",
        type=float,
        default=0.0,
        help="fraction of training patients rendered through the second image-formation "
        "family (models/train/rf_family.py: RF convolution speckle); >0 adds its own "
        "validation split (seeds 7000+)",
    )
    ap.add_argument(
        "--targets",
        type=float,
        default=0.0,
        help="fraction of each batch whose nerve appearance (contrast to the tissue, inner "
        "texture, epineurial rim) is redrawn (augment.randomize_targets); >0 adds a "
        "validation split: the realism split with every nerve redrawn once (fixed seed)",
    )
    ap.add_argument(
        "--base-cache",
        type=Path,
        default=None,
        help="frames of an earlier run's --cache (its train and validation splits) to train on "
        "together with the --patients generated now (their seeds start after the base's)",
    )
    ap.add_argument(
        "--new-weight",
        type=float,
        default=0.0,
        help="with --base-cache: fraction of every batch drawn from the newly generated frames "
        "(0 = uniform over all frames)",
    )
    ap.add_argument(
        "--own-tolerance",
        type=float,
        default=-1.0,
        help=">=0: select the step with the best mean Dice over the realism/RF/target splits among "
        "those whose plain-phantom nerve and calcification Dice stay within this of the "
        "start (keeps the own-phantom accuracy); <0: best mean Dice over all splits",
    )
    ap.add_argument(
        "--val-every",
        type=int,
        default=150,
        help="validate every N steps and keep the best weights (own generator only)",
    )
    ap.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="also save the weights of every validated step to --out (stepNNNNNN.pt)",
    )
    ap.add_argument(
        "--export-dir",
        type=Path,
        default=HERE.parent,
        help="where the ONNX files, fixture, .pt and train record go (default: models/)",
    )
    ap.add_argument(
        "--out", type=Path, default=HERE.parent / "runs", help="checkpoints (git-ignored)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    in_h, in_w = (int(v) for v in args.input.split("x"))
    widths = tuple(int(v) for v in args.widths.split(","))
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    n_new = 0
    key = (
        f"r{PHANTOM_REVISION}-{args.seed}-{args.patients}-{args.frames_per_patient}-"
        f"{args.val_patients}-{in_h}x{in_w}-real{args.realism:g}-rf{args.rf_family:g}"
        f"-base{args.base_cache}"
    )
    if args.cache.exists() and str(np.load(args.cache)["key"]) == key:
        z = np.load(args.cache)
        xtr, ytr = z["xtr"], z["ytr"]
        xva, yva, xvr, yvr = z["xva"], z["yva"], z["xvr"], z["yvr"]
        xvf, yvf = z["xvf"], z["yvf"]
        n_new = int(z["n_new"])
        log.info("loaded cache %s", args.cache)
    else:
        base = TRAIN_SEED_BASE + 1000 * args.seed
        hw = (in_h, in_w)
        if args.base_cache is not None:
            # The base run used seeds base .. base + its patient count - 1.
            zb = np.load(args.base_cache)
            base += int(str(zb["key"]).split("-")[2])
        tr = generate(
            base,
            args.patients,
            args.frames_per_patient,
            hw,
            args.workers,
            args.realism,
            args.rf_family,
        )
        if args.base_cache is not None:
            va = Batch(zb["xva"], zb["yva"])
            vr = Batch(zb["xvr"], zb["yvr"])
            n_new = len(tr.x)
            tr = Batch(np.concatenate([zb["xtr"], tr.x]), np.concatenate([zb["ytr"], tr.y]))
        else:
            va = generate(VAL_SEED_BASE, args.val_patients, 2, hw, args.workers, 0.0)
            vr = generate(VAL_REAL_SEED_BASE, args.val_patients, 2, hw, args.workers, 1.0)
        if args.rf_family > 0:
            vf = generate(VAL_RF_SEED_BASE, args.val_patients, 2, hw, args.workers, 0.5, 1.0)
            xvf, yvf = vf.x, vf.y
        else:
            xvf, yvf = xvr[:0], yvr[:0]
        xtr, ytr, xva, yva, xvr, yvr = tr.x, tr.y, va.x, va.y, vr.x, vr.y
        np.savez(
            args.cache,
            key=key,
            xtr=xtr,
            ytr=ytr,
            xva=xva,
            yva=yva,
            xvr=xvr,
            yvr=yvr,
            xvf=xvf,
            yvf=yvf,
            n_new=n_new,
        )
    gen_s = time.time() - t0
    log.info(
        "data: %d train, %d + %d + %d val frames in %.0f s",
        len(xtr),
        len(xva),
        len(xvr),
        len(xvf),
        gen_s,
    )

    xvt = xvr[:0]
    if args.targets > 0:
        # Own data only: the realism validation frames with the nerve redrawn (fixed seed).
        xvt = (
            randomize_targets(
                torch.from_numpy(xvr.astype(np.float32))[:, None],
                torch.from_numpy(yvr.astype(np.float32) / 255.0),
                torch.Generator().manual_seed(8_000 + args.seed),
                p=1.0,
            )[:, 0]
            .numpy()
            .astype(np.float16)
        )

    def validate() -> dict[str, float]:
        """Dice on the own-generator validation splits; `score` (their mean) selects."""
        a = dice_scores(model, xva, yva)
        b = dice_scores(model, xvr, yvr)
        out = {**a, "real_nerve": b["nerve"], "real_calcification": b["calcification"]}
        if len(xvf):
            c = dice_scores(model, xvf, yvf)
            out.update({"rf_nerve": c["nerve"], "rf_calcification": c["calcification"]})
        if len(xvt):
            t = dice_scores(model, xvt, yvr)
            out.update({"tgt_nerve": t["nerve"], "tgt_calcification": t["calcification"]})
        out["score"] = float(np.mean(list(out.values())))
        if args.own_tolerance >= 0:
            shifted = [v for k, v in out.items() if k.startswith(("real_", "rf_", "tgt_"))]
            out["transfer_score"] = float(np.mean(shifted))
        return out

    def better(d: dict[str, float]) -> bool:
        """Selection on own validation data only (never the foreign test family)."""
        if args.own_tolerance < 0:
            return d["score"] > best["score"]
        tol = args.own_tolerance
        keeps_own = d["nerve"] >= start["nerve"] - tol and (
            d["calcification"] >= start["calcification"] - tol
        )
        return keeps_own and d["transfer_score"] > best["transfer_score"]

    model = UNet(widths, len(CLASSES))
    if args.init is not None:
        ck = torch.load(args.init, map_location="cpu", weights_only=True)
        if tuple(ck["widths"]) != widths or list(ck["input"]) != [in_h, in_w]:
            raise SystemExit(f"--init {args.init}: widths/input differ from --widths/--input")
        model.load_state_dict(ck["state"])
        log.info("fine-tuning from %s", args.init)
    best = start = validate()
    best_step = 0
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    log.info("val at start %s", best)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr / 10, weight_decay=1e-4)
    g = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    def train_step() -> torch.Tensor:
        if n_new and args.new_weight > 0:
            k = int(rng.binomial(args.batch, args.new_weight))
            idx = np.concatenate(
                [
                    rng.integers(len(xtr) - n_new, len(xtr), k),
                    rng.integers(0, len(xtr) - n_new, args.batch - k),
                ]
            )
        else:
            idx = rng.integers(0, len(xtr), args.batch)
        xb = torch.from_numpy(xtr[idx].astype(np.float32))[:, None]
        yb = torch.from_numpy(ytr[idx].astype(np.float32) / 255.0)
        xb, yb = augment(xb, yb, g, randomize=not args.no_randomize, targets=args.targets)
        loss = loss_fn(model(xb), soft_targets(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    # Warm-up steps at a low constant LR; they also time this machine for --minutes.
    t1 = time.time()
    for _ in range(args.warm_steps):
        train_step()
    per_step = (time.time() - t1) / max(args.warm_steps, 1)
    budget_s = args.minutes * 60.0
    if args.minutes:
        # On a shared machine the speed drifts: the LR follows the fraction of the time
        # budget used, so the schedule always completes (anneals) when the budget ends.
        log.info("%.2f s/step at start; time-based schedule over %.1f min", per_step, args.minutes)
    t_sched = time.time()

    def progress(step: int) -> float:
        if args.minutes:
            return min(1.0, (time.time() - t_sched) / budget_s)
        return min(1.0, step / args.steps)

    def lr_at(p: float) -> float:
        # 10 % linear warm-up, then cosine decay to 1 % (the OneCycle shape)
        if p < 0.1:
            return args.lr * (0.1 + 0.9 * p / 0.1)
        return args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (p - 0.1) / 0.9)))

    step = 0
    history = []
    while (p := progress(step)) < 1.0:
        step += 1
        for grp in opt.param_groups:
            grp["lr"] = lr_at(p)
        loss = train_step()
        if step % 50 == 0:
            el = time.time() - t1
            log.info(
                "step %d p=%.2f loss %.4f (%.1f img/s)",
                step,
                p,
                loss.item(),
                step * args.batch / el,
            )
        if step % args.val_every == 0:
            d = validate()
            history.append({"step": step, "loss": float(loss.item()), **d})
            log.info("val dice %s", d)
            if args.keep_checkpoints:
                torch.save(
                    {"state": model.state_dict(), "widths": widths, "input": [in_h, in_w]},
                    args.out / f"step{step:06d}.pt",
                )
            if better(d):
                best, best_step = d, step
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if args.max_minutes and time.time() - t1 > args.max_minutes * 60:
            log.warning("max-minutes reached at step %d", step)
            break
    train_s = time.time() - t1
    d = validate()
    history.append({"step": step, "loss": float(loss.item()), **d})
    if better(d):
        best, best_step = d, step
        best_state = {k: v.clone() for k, v in model.state_dict().items()}
    # Model selection on the own generator's validation splits only (never the foreign set).
    model.load_state_dict(best_state)
    val = best
    torch.save(
        {"state": model.state_dict(), "widths": widths, "input": [in_h, in_w]}, args.out / "unet.pt"
    )
    info = {
        "seed": args.seed,
        "phantom_revision": PHANTOM_REVISION,
        "train_frames": len(xtr),
        "train_patients": args.patients,
        "val_frames": len(xva) + len(xvr) + len(xvf),
        "realism_fraction": args.realism,
        "rf_family_fraction": args.rf_family,
        "target_randomisation": args.targets,
        "base_cache_frames": len(xtr) - n_new if args.base_cache is not None else 0,
        "new_weight": args.new_weight,
        "own_tolerance": args.own_tolerance,
        "selected_step": best_step,
        "steps_run": step,
        "schedule": f"time-based, {args.minutes} min" if args.minutes else f"{args.steps} steps",
        "warm_steps": args.warm_steps,
        "batch": args.batch,
        "lr": args.lr,
        "widths": list(widths),
        "input_hw": [in_h, in_w],
        "params": sum(p.numel() for p in model.parameters()),
        "macs": count_macs(model, in_h, in_w),
        "data_seconds": gen_s,
        "train_seconds": train_s,
        "val_dice": val,
        "history": history,
        "torch": torch.__version__,
        "init": None if args.init is None else args.init.name,
        "domain_randomisation": not args.no_randomize,
    }
    (args.out / "train_info.json").write_text(json.dumps(info, indent=1))
    log.info("trained: %s", info)
    from models.train.export import export_all

    args.export_dir.mkdir(parents=True, exist_ok=True)
    export_all(args.out / "unet.pt", args.export_dir, np.concatenate([xva[:32], xvr[:32]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
