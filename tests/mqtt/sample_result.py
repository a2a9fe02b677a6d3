"""A dgs.session-result/1 document shaped like the analysis output (affected side of the case
report: swollen nerve, calcified ligament, restricted gliding)."""

from __future__ import annotations

import copy
from typing import Any


def _stat(v: float) -> dict[str, Any]:
    return {"median": v, "p25": v * 0.95, "p75": v * 1.05, "mad": v * 0.03, "n": 40}


_DOC: dict[str, Any] = {
    "schema": "dgs.session-result/1",
    "session_id": "sess-1",
    "side": "left",
    "protocol": "fair",
    "started_t": 1795420000.0,
    "analysed_t": 1795420100.0,
    "software": {
        "name": "dgs-edge",
        "version": "0.1.0",
        "model": {"name": "dgs-detector", "version": "1.0.0"},
    },
    "nerve": {
        "ap_diameter_mm": 12.1,
        "width_mm": 17.5,
        "csa_mm2": 61.0,
        "fascicular_index": 0.18,
        "from_neutral_frames": True,
        "spread": {
            "ap_diameter_mm": _stat(12.1),
            "width_mm": _stat(17.5),
            "csa_mm2": _stat(61.0),
            "fascicular_index": _stat(0.18),
        },
    },
    "calcification": {
        "present": True,
        "long_axis_mm": 10.2,
        "thickness_mm": 3.1,
        "nerve_distance_mm": 14.0,
    },
    "gliding": {
        "excursion_mm": 1.2,
        "per_10deg_ir_mm": 0.3,
        "restricted": True,
        "fit": None,
        "rule": "excursion 1.2 mm < 2.0 mm",
    },
    "maneuvers": [
        {
            "name": "fair",
            "start_t": 1795420010.0,
            "end_t": 1795420020.0,
            "peak_flexion_deg": 88.0,
            "peak_adduction_deg": 14.0,
            "peak_internal_rotation_deg": 31.0,
        },
    ],
    "angles": {"available": True, "coverage": 0.98},
    "data_quality": {
        "n_frames": 300,
        "nerve_found_fraction": 0.97,
        "tracked_fraction": 0.95,
        "tracking_quality_median": 0.91,
    },
    "findings": ["nerve enlarged", "calcification at the ischial spine", "gliding restricted"],
}


def sample_result(session_id: str = "sess-1") -> dict[str, Any]:
    doc = copy.deepcopy(_DOC)
    doc["session_id"] = session_id
    return doc
