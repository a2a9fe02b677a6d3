"""Foreign-simulator session recordings (contract 2) + truth.json, cached by version + seed.

A session directory holds session.json, cine.dcm (multi-frame US with a Sequence of
Ultrasound Regions), frames.csv, imu.jsonl - written with the project's RecordingWriter so
that the container is exactly the contract - plus truth.json in the phantom's truth format
(`dgs.phantom-truth/1` keys: nerve, calcification, gliding, spacing_mm, roi, frames[] with
angles_deg / nerve_displacement_mm / nerve_center_px) and masks.npz (bit-packed nerve,
calcification, shadow masks per frame, like the phantom's save_masks). The IMU rows are
this generator's own: the true hip angles at 50 Hz with sensor noise and a slow drift.

Generated sessions are cached under benchmarks/.foreign-cache/ (git-ignored), keyed by
GENERATOR_VERSION and every argument, so a second benchmark run reads them from disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.foreign.sim import ForeignConfig, ForeignSimulator, trajectory

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # 2: PSF envelope peak recentred (was ~0.25 mm deep)
CACHE = Path(
    os.environ.get("DGS_FOREIGN_CACHE", Path(__file__).resolve().parents[1] / ".foreign-cache")
)
IMU_RATE_HZ = 50.0


@dataclass
class ForeignSession:
    path: Path
    truth: dict[str, Any]
    masks: dict[str, np.ndarray]  # (N, H, W) bool per class

    def frame_masks(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[i] for k, v in self.masks.items()}


def _key(**kw: Any) -> str:
    blob = json.dumps({"v": GENERATOR_VERSION, **kw}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load(path: Path) -> ForeignSession:
    truth = json.loads((path / "truth.json").read_text())
    z = np.load(path / "masks.npz")
    h, w = (int(v) for v in z["shape"])
    masks = {
        k: np.unpackbits(z[k], axis=1)[:, : h * w].reshape(-1, h, w).astype(bool)
        for k in ("nerve", "calcification", "shadow")
    }
    return ForeignSession(path, truth, masks)


def generate(
    seed: int,
    kind: str = "fair",
    fps: float = 8.0,
    reps: int = 2,
    frames: int | None = None,
    cache: Path | None = None,
    **fixed: Any,
) -> ForeignSession:
    """One foreign session. frames=None: the whole manoeuvre at `fps`; frames=n: n frames
    spread over it (static detector benchmark). `fixed` overrides ForeignConfig fields."""
    from edge_service.acquisition.frame import Frame, Roi
    from edge_service.recording import RecordingWriter, SessionMeta

    root = cache or CACHE
    key = _key(seed=seed, kind=kind, fps=fps, reps=reps, frames=frames, **fixed)
    out = root / f"s{seed}-{kind}-{key}"
    if (out / "truth.json").exists():
        return load(out)
    if out.exists():
        shutil.rmtree(out)  # an interrupted earlier run
    tmp = root / f".tmp-{key}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    rng = np.random.default_rng([seed, 31337])
    cfg = ForeignConfig.draw(rng, **fixed)
    sim = ForeignSimulator(cfg, seed, root / "psf")
    traj = trajectory(kind, rng, reps)
    if frames is None:
        tt = np.arange(0.0, traj.duration_s, 1.0 / fps)
    else:
        tt = np.linspace(0.0, traj.duration_s, frames)
    angles = traj.at(tt)
    t0 = 1.7e9 + seed
    x0, y0, x1, y1 = sim.roi
    meta = SessionMeta(
        side=cfg.side,
        protocol=kind,
        probe={
            "type": "curvilinear",
            "model": "foreign-sim C5-2v (pymust)",
            "frequency_mhz": cfg.fc_mhz,
            "depth_mm": cfg.depth_mm,
            "radius_mm": sim.R,
        },
        clip={"kind": "foreign-sim", "rate_hz": IMU_RATE_HZ},
        spacing_mm=(sim.spacing, sim.spacing),
        roi=Roi(x0, y0, x1, y1),
        fps_hz=fps if frames is None else None,
        source={"kind": "foreign-sim", "generator_version": GENERATOR_VERSION, "seed": seed},
        started_t=t0,
    )
    packed: dict[str, list[np.ndarray]] = {"nerve": [], "calcification": [], "shadow": []}
    frames_truth = []
    cost = []
    with RecordingWriter(tmp, meta) as w:
        for i, (t, ang) in enumerate(zip(tt, angles, strict=True)):
            c0 = time.perf_counter()
            ff = sim.render(ang, float(t))
            cost.append(time.perf_counter() - c0)
            w.add_frame(
                Frame(ff.pixels, t0 + float(t), i, (sim.spacing, sim.spacing), Roi(x0, y0, x1, y1))
            )
            frames_truth.append({"index": i, "t": t0 + float(t), "t_rel_s": float(t), **ff.truth})
            for k in packed:
                packed[k].append(np.packbits(ff.masks[k].ravel()))
        imu_t = np.arange(0.0, traj.duration_s, 1.0 / IMU_RATE_HZ)
        imu_a = traj.at(imu_t)
        drift = np.cumsum(rng.normal(0, 0.004, imu_a.shape), 0)
        imu_a = imu_a + drift + rng.normal(0, 0.3, imu_a.shape)
        for j, (t, a) in enumerate(zip(imu_t, imu_a, strict=True)):
            w.add_imu(
                {
                    "t": t0 + float(t),
                    "seq": j,
                    "flexion_deg": float(a[0]),
                    "adduction_deg": float(a[1]),
                    "rotation_deg": float(a[2]),
                }
            )
    truth = sim.truth()
    disp = np.array([f["nerve_displacement_mm"] for f in frames_truth])
    ir = np.array([f["angles_deg"][2] for f in frames_truth])
    slope = float(np.polyfit(ir, disp, 1)[0]) if np.ptp(ir) > 1 else 0.0
    truth["gliding"].update(
        {
            "excursion_mm": float(disp.max() - disp.min()),
            "per_10deg_ir_mm": 10.0 * slope,
        }
    )
    truth.update(
        {
            "format": "dgs.phantom-truth/1",
            "generator": f"foreign-sim/{GENERATOR_VERSION}",
            "manoeuvre": kind,
            "fps_hz": fps,
            "t0": t0,
            "imu_source": "foreign-sim true angles + noise/drift",
            "frames": frames_truth,
            "render_s_per_frame": float(np.median(cost)),
        }
    )
    (tmp / "truth.json").write_text(json.dumps(truth, indent=1, default=float))
    arrays: dict[str, Any] = {k: np.stack(v) for k, v in packed.items()}
    arrays["shape"] = np.array(sim.fan.shape)
    np.savez_compressed(tmp / "masks.npz", **arrays)
    tmp.rename(out)
    log.info("foreign session %s: %d frames, %.2f s/frame", out.name, len(tt), np.median(cost))
    return load(out)
