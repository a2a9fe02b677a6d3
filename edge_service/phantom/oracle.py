"""A detection built from the phantom's ground truth (an "oracle detector").

Feeding SessionAnalyzer with it measures the analysis (tracking, manoeuvres, gliding rule,
result) independently of the ONNX detector; used by the analysis tests and bench_gliding.
It has the attributes SessionAnalyzer reads from a `Detection`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np


def truth_detection(
    masks: dict[str, np.ndarray],
    truth: dict[str, Any],
    fascicular_index: float | None = None,
    confidence: float = 1.0,
) -> SimpleNamespace:
    """masks: a PhantomFrame's masks; truth: PhantomSimulator.truth()."""
    tn, tc = truth["nerve"], truth["calcification"]
    nerve = SimpleNamespace(
        found=bool(masks["nerve"].any()),
        ap_mm=tn["ap_mm"],
        width_mm=tn["width_mm"],
        csa_mm2=tn["csa_mm2"],
        fascicular_index=fascicular_index,
        mask=masks["nerve"],
        confidence=confidence,
    )
    calc = SimpleNamespace(
        present=bool(masks["calcification"].any()),
        long_axis_mm=tc.get("long_axis_mm"),
        thickness_mm=tc.get("thickness_mm"),
        nerve_distance_mm=tc.get("nerve_distance_mm"),
        mask=masks["calcification"],
    )
    return SimpleNamespace(nerve=nerve, calcification=calc)
