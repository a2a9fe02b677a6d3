"""Training data for the needle model: phantom needle sessions of the TRAINING generator
only (edge_service.phantom.needle.TRAIN; the benchmark's test sessions use HELD_OUT).

Each sample: the model input for a random moment of a session (the frame, and the frames
1 and 3 back at a random frame rate), a shaft mask (the shaft where its echo is strong
enough to show) and a tip heat map (a Gaussian at the sub-pixel tip, labelled when the tip
echoes in plane or moves; a still tip out of the beam is invisible and not labelled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_service.needle.preprocess import (
    IN_H,
    IN_W,
    LAGS,
    frame_plane,
    roi_scale,
    stack_planes,
    to_input,
)
from edge_service.phantom.needle_session import make_session

KIND_P = {"procedure": 0.5, "intraneural": 0.25, "reflector": 0.15, "none": 0.1}
FPS_CHOICES = (10.0, 15.0, 20.0, 30.0)
TIP_SIGMA = 1.2  # input px
MOVE_MM = 0.15  # a tip that moved this much over the longest lag shows by its motion


@dataclass
class Sample:
    x: np.ndarray  # (3, H, W) float16
    shaft: np.ndarray  # (H, W) uint8
    tip: np.ndarray  # (H, W) float16
    has_tip: bool
    tip_px: tuple[float, float] | None  # frame px truth
    spacing: float
    roi: tuple[int, int, int, int]
    kind: str
    visible_fraction: float


def _heat(r: float, c: float) -> np.ndarray:
    rr = np.arange(IN_H, dtype=np.float32)[:, None]
    cc = np.arange(IN_W, dtype=np.float32)[None, :]
    h = np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * TIP_SIGMA**2))
    ri, ci = round(r), round(c)
    if 0 <= ri < IN_H and 0 <= ci < IN_W:
        h[ri, ci] = 1.0  # the single positive of the focal loss
    return h.astype(np.float16)


def session_samples(
    kind: str, seed: int, n: int, rng: np.random.Generator, generator: str = "train"
) -> list[Sample]:
    ses = make_session(kind, seed, generator)
    sim, scene = ses.sim, ses.scene
    g = sim.geom
    roi = g.roi
    scale = roi_scale(roi)
    plan = scene.plan
    out: list[Sample] = []
    still = np.zeros(3)
    sim.render(still, 0.0)  # fixes the display reference like a session's first frame
    for _ in range(n):
        fps = float(rng.choice(FPS_CHOICES))
        if plan is not None and rng.random() < 0.85:
            t = float(rng.uniform(plan.t_insert, ses.duration_s))
        else:
            t = float(rng.uniform(0.0, ses.duration_s))
        planes = {}
        for lag in (0, *LAGS):
            pf = sim.render(still, max(0.0, t - lag / fps))
            planes[lag] = frame_plane(pf.frame.pixels, roi)
            if lag == 0:
                cur = pf
        x = stack_planes(planes[0], [planes[lag] for lag in LAGS])[0]
        shaft = np.zeros((IN_H, IN_W), np.uint8)
        tip_map = np.zeros((IN_H, IN_W), np.float16)
        has_tip = False
        tip_px = None
        vf = 0.0
        nd = cur.truth["needle"]
        if nd["present"]:
            vf = float(nd["visible_fraction"])
            sh = scene.shaft_samples(sim._pose(t), t)
            assert sh is not None
            seen = sh["seen"]
            if seen.any():
                r, c = to_input(sh["row"][seen], sh["col"][seen], roi, scale)  # type: ignore[arg-type]
                ri = np.clip(np.round(r).astype(int), 0, IN_H - 1)
                ci = np.clip(np.round(c).astype(int), 0, IN_W - 1)
                ok = (
                    (np.asarray(r) >= 0)
                    & (np.asarray(r) < IN_H)
                    & (np.asarray(c) >= 0)
                    & (np.asarray(c) < IN_W)
                )
                shaft[ri[ok], ci[ok]] = 1
                shaft = np.asarray(cv2.dilate(shaft, np.ones((3, 3), np.uint8)), np.uint8)
            tip_now = scene.tip_mm(t)
            tip_then = scene.tip_mm(max(0.0, t - max(LAGS) / fps))
            moved = (
                tip_now is not None
                and tip_then is not None
                and math.hypot(tip_now[0] - tip_then[0], tip_now[1] - tip_then[1]) >= MOVE_MM
            )
            near_shaft = bool(seen[-8:].any())
            if nd["tip_in_image"] and (nd["tip_visibility"] > 0.3 or moved or near_shaft):
                tr, tc = nd["tip_px"]
                r, c = to_input(tr, tc, roi, scale)
                tip_map = _heat(r, c)
                has_tip = True
                tip_px = (tr, tc)
        out.append(
            Sample(
                x.astype(np.float16),
                shaft,
                tip_map,
                has_tip,
                tip_px,
                g.spacing_mm,
                (roi.x0, roi.y0, roi.x1, roi.y1),
                kind,
                vf,
            )
        )
    return out


def generate(
    n_sessions: int, per_session: int, seed_base: int, rng_seed: int, generator: str = "train"
) -> list[Sample]:
    rng = np.random.default_rng(rng_seed)
    kinds = list(KIND_P)
    p = np.array([KIND_P[k] for k in kinds])
    out: list[Sample] = []
    for i in range(n_sessions):
        kind = str(rng.choice(kinds, p=p / p.sum()))
        out.extend(session_samples(kind, seed_base + i, per_session, rng, generator))
    return out
