"""Training data: phantom frames with randomized patients and acquisition settings.

Each "patient" (seed) gets a fresh PhantomConfig.randomized() draw (probe radius and fan
angle, depth 60-100 mm, 3-5 MHz, gain, dynamic range, TGC error, noise, jitter, scatterer
density, side, nerve class, calcification) and a few frames at random hip angles. Frames
are reduced to the model input with the detector's own preprocessing; masks become soft
per-class area fractions at the same resolution (sub-pixel boundary information).

Seed ranges (documented in the model card): training 10_000+, validation 5_000+ (revision-2
appearance), 6_000+ (every patient with the revision-3 realism knobs) and 7_000+ (every
patient rendered through the RF convolution family, half with realism), and the
benchmark/tests hold out 0-999, so reported metrics never see a training patient.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from edge_service.detector.preprocess import crop_roi, prepare_input, resize_area
from edge_service.phantom import PhantomConfig, PhantomFrame, PhantomSimulator
from models.train.rf_family import RfRenderer

log = logging.getLogger(__name__)

TRAIN_SEED_BASE = 10_000
VAL_SEED_BASE = 5_000
# Validation with the realism knobs drawn on every patient (phantom revision 3).
VAL_REAL_SEED_BASE = 6_000
REALISM_STREAM = 0x5EA1
# Validation rendered through the second image-formation family (models/train/rf_family.py).
VAL_RF_SEED_BASE = 7_000
RF_STREAM = 0x2F0F


@dataclass
class Batch:
    x: np.ndarray  # (N, H, W) float16 input in [0, 1]
    y: np.ndarray  # (N, 2, H, W) uint8: nerve and calcification area fraction * 255


def patient_frames(
    seed: int, frames: int, realism: float, rf: float
) -> tuple[PhantomConfig, PhantomSimulator, list[PhantomFrame]]:
    """One patient's draws and frames at random hip angles: the configuration, the
    simulator (its truth) and the rendered frames with their masks."""
    rng = np.random.default_rng(seed)
    cfg = PhantomConfig.randomized(rng)
    # Realism knobs from their own stream, so the revision-2 draws of a seed stay the same.
    real_rng = np.random.default_rng([seed, REALISM_STREAM])
    if real_rng.random() < realism:
        cfg = cfg.realistic(real_rng)
    sim = PhantomSimulator(cfg, seed=seed)
    # Second rendering family from its own stream too (same anatomy and labels).
    rf_rng = np.random.default_rng([seed, RF_STREAM])
    renderer = RfRenderer(sim, rf_rng) if rf_rng.random() < rf else None
    out = []
    for _ in range(frames):
        ang = np.array([rng.uniform(0, 90), rng.uniform(0, 20), rng.uniform(-10, 40)])
        t_rel = float(rng.uniform(0, 40))
        out.append(
            sim.render(ang, t_rel=t_rel) if renderer is None else renderer.render(ang, t_rel)
        )
    return cfg, sim, out


def _patient(
    args: tuple[int, int, int, int, float] | tuple[int, int, int, int, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """(seed, frames, in_h, in_w, realism[, rf fraction]) -> one patient's inputs and labels."""
    seed, frames, in_h, in_w, realism = args[:5]
    rf = float(args[5]) if len(args) > 5 else 0.0
    xs, ys = [], []
    for pf in patient_frames(seed, frames, realism, rf)[2]:
        roi = pf.frame.roi
        xs.append(prepare_input(pf.frame.pixels, roi, in_h, in_w)[0, 0].astype(np.float16))
        y = np.stack(
            [
                resize_area(crop_roi(pf.masks[k], roi).astype(np.float32), in_h, in_w)
                for k in ("nerve", "calcification")
            ]
        )
        ys.append(np.round(np.clip(y, 0, 1) * 255).astype(np.uint8))
    return np.stack(xs), np.stack(ys)


def generate(
    seed_base: int,
    patients: int,
    frames_per_patient: int,
    in_hw: tuple[int, int],
    workers: int = 2,
    realism: float = 0.0,
    rf: float = 0.0,
) -> Batch:
    """`realism`: fraction of patients drawn with PhantomConfig.realistic() on top;
    `rf`: fraction of patients rendered through the RF convolution family (rf_family.py)."""
    jobs = [
        (seed_base + i, frames_per_patient, in_hw[0], in_hw[1], realism, rf)
        for i in range(patients)
    ]
    xs, ys = [], []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, (x, y) in enumerate(pool.map(_patient, jobs, chunksize=4)):
            xs.append(x)
            ys.append(y)
            if (i + 1) % 50 == 0:
                log.info("generated %d/%d patients", i + 1, patients)
    return Batch(np.concatenate(xs), np.concatenate(ys))
