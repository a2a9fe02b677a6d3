"""Short phantom sessions fed through SessionAnalyzer (shared by the analysis tests).

Detections here come from the phantom's ground-truth masks and sizes, so these tests
measure the analysis (tracking, manoeuvres, gliding rule, result) and not the detector;
the end-to-end `analyze` test uses the shipped ONNX model.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

from edge_service.analysis.session import SessionAnalyzer
from edge_service.phantom import PhantomConfig, PhantomSimulator, oracle
from edge_service.sim.motion import manoeuvre


def truth_detection(masks: dict[str, np.ndarray], truth: dict[str, Any]) -> SimpleNamespace:
    fi = 0.2 if truth["nerve"]["swollen"] else 0.5
    return oracle.truth_detection(masks, truth, fascicular_index=fi, confidence=0.95)


@functools.cache
def phantom_frames(
    seed: int, kind: str = "fair", fps: float = 5.0, **cfg: Any
) -> tuple[PhantomConfig, dict[str, Any], list[Any]]:
    """Rendered once per test session: (config, session truth, phantom frames)."""
    config = PhantomConfig(**cfg)
    sim = PhantomSimulator(config, seed=seed)
    motion = manoeuvre(kind, repetitions=1, hold_s=1.5)  # type: ignore[arg-type]
    return config, sim.truth(), list(sim.run(motion, fps=fps, t0=1.0e9))


def phantom_session(
    seed: int, kind: str = "fair", fps: float = 5.0, angles: bool = True, **cfg: Any
) -> tuple[SessionAnalyzer, dict[str, Any], list[float]]:
    """(analyzer after all frames, session truth, per-frame true lateral displacement)."""
    config, truth, frames = phantom_frames(seed, kind, fps, **cfg)
    an = SessionAnalyzer(
        config.side,
        None,
        session={"session_id": f"phantom-{seed}", "protocol": kind, "started_t": 1.0e9},
    )
    disp = []
    for pf in frames:
        ang = pf.truth["angles_deg"] if angles else None
        an.add_frame(pf.frame, truth_detection(pf.masks, truth), ang)
        disp.append(pf.truth["nerve_displacement_mm"])
    return an, truth, disp
