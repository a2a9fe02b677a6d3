"""`simulate_session`: a complete phantom session recording (design contract #2) + truth.json."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_service.phantom.settings import PhantomConfig
from edge_service.phantom.simulator import PhantomSimulator
from edge_service.sim.motion import HipMotion, manoeuvre

log = logging.getLogger(__name__)

IMU_RATE_HZ = 100


def _imu_samples(
    motion: HipMotion, side: str, t0: float, seed: int
) -> tuple[list[dict[str, Any]], str]:
    """Clip samples for the same hip motion: the virtual clip when available, else the
    motion's true angles (marked as such in truth.json)."""
    try:
        from edge_service.virtualclip import virtual_samples
    except ImportError:
        t, ang = motion.sample(IMU_RATE_HZ)
        out = [
            {
                "t": t0 + float(tt),
                "seq": i,
                "flexion_deg": float(a[0]),
                "adduction_deg": float(a[1]),
                "rotation_deg": float(a[2]),
            }
            for i, (tt, a) in enumerate(zip(t, ang, strict=True))
        ]
        return out, "true-angles (virtual clip not available in this build)"
    samples = virtual_samples(motion, side, t0, rate_hz=IMU_RATE_HZ, seed=seed)
    return [dict(s) for s in samples], "virtualclip"


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def simulate_session(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    side: Literal["left", "right"] = "left",
    nerve: Literal["normal", "swollen"] = "swollen",
    calcification: Literal["yes", "no"] | bool = "yes",
    gliding: Literal["free", "restricted"] = "restricted",
    manoeuvre_name: str = "fair",
    fps: float = 20.0,
    t0: float | None = None,
    config: PhantomConfig | None = None,
    save_masks: bool = False,
    **kwargs: Any,
) -> Path:
    """Simulate one scanning session and write it as a recording directory.

    Writes session.json, cine.dcm, frames.csv, imu.jsonl (via RecordingWriter) and
    truth.json (session truth + per-frame truth). `manoeuvre` may also be passed by that
    name. save_masks adds masks.npz (bit-packed per-frame nerve/calcification/shadow masks).
    Returns the directory.
    """
    from edge_service.recording import RecordingWriter, SessionMeta

    man = str(kwargs.pop("manoeuvre", manoeuvre_name))
    if kwargs:
        raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
    calc = calcification if isinstance(calcification, bool) else calcification == "yes"
    cfg = config or PhantomConfig(side=side, nerve=nerve, calcification=calc, gliding=gliding)
    out = Path(out_dir)
    motion = manoeuvre(man)  # type: ignore[arg-type]
    t_start = time.time() if t0 is None else float(t0)
    sim = PhantomSimulator(cfg, seed=seed)
    g = sim.geom
    meta = SessionMeta(
        side=cfg.side,
        protocol=man,
        probe={
            "type": "curvilinear",
            "model": "phantom-C3-5",
            "frequency_mhz": cfg.frequency_mhz,
            "depth_mm": cfg.depth_mm,
            "radius_mm": cfg.radius_mm,
        },
        clip={"kind": "virtual", "rate_hz": IMU_RATE_HZ},
        spacing_mm=(g.spacing_mm, g.spacing_mm),
        roi=g.roi,
        fps_hz=fps,
        source={"kind": "phantom", "seed": seed},
        started_t=t_start,
    )
    frames_truth: list[dict[str, Any]] = []
    packed: dict[str, list[np.ndarray]] = {"nerve": [], "calcification": [], "shadow": []}
    with RecordingWriter(out, meta) as writer:
        for pf in sim.run(motion, fps=fps, t0=t_start):
            writer.add_frame(pf.frame)
            frames_truth.append(pf.truth)
            if save_masks:
                for k in packed:
                    packed[k].append(np.packbits(pf.masks[k]))
        imu, imu_source = _imu_samples(motion, cfg.side, t_start, seed)
        for s in imu:
            writer.add_imu(s)
    truth = sim.truth()
    truth.update(
        {
            "format": "dgs.phantom-truth/1",
            "manoeuvre": man,
            "fps_hz": fps,
            "t0": t_start,
            "imu_source": imu_source,
            "frames": frames_truth,
        }
    )
    excursion = [f["nerve_displacement_mm"] for f in frames_truth]
    truth["gliding"]["excursion_mm"] = float(max(excursion) - min(excursion))
    _write_json(out / "truth.json", truth)
    if save_masks:
        arrays: dict[str, Any] = {k: np.stack(v) for k, v in packed.items()}
        arrays["shape"] = np.array([g.height_px, g.width_px])
        np.savez_compressed(out / "masks.npz", **arrays)
    log.info("phantom session: %d frames -> %s", len(frames_truth), out)
    return out
