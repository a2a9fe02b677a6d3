"""Follow-up: this procedure's injection sites against the previous procedure's (case report
2.4: three sessions two weeks apart). Sites are compared by their offset from the
calcification, the landmark both visits share (the probe is never placed twice alike), and
only between procedures of one patient and side (the caller picks the baseline)."""

from __future__ import annotations

import math
from typing import Any


def compare_procedures(
    baseline: dict[str, Any], current: dict[str, Any], same_site_mm: float = 3.0
) -> dict[str, Any]:
    base_sites = [
        (i["index"], i["offset_from_calcification_mm"])
        for i in baseline.get("injections") or []
        if i.get("offset_from_calcification_mm") and None not in i["offset_from_calcification_mm"]
    ]
    sites = []
    new = 0
    for inj in current.get("injections") or []:
        off = inj.get("offset_from_calcification_mm")
        near_i, near_d = None, None
        if off and None not in off:
            for bi, bo in base_sites:
                d = math.dist(off, bo)
                if near_d is None or d < near_d:
                    near_i, near_d = bi, d
        if near_d is None or near_d > same_site_mm:
            new += 1
        sites.append(
            {
                "index": inj["index"],
                "offset_from_calcification_mm": off,
                "nearest_previous_index": near_i,
                "distance_to_previous_mm": None if near_d is None else round(near_d, 2),
            }
        )
    n0, n1 = len(baseline.get("injections") or []), len(current.get("injections") or [])
    note = (
        f"Follow-up procedure: {n1} injection(s) vs {n0} at the previous procedure; "
        f"{n1 - new} at a previous site (within {same_site_mm:g} mm of the calcification-relative "
        f"position), {new} new."
    )
    return {
        "baseline_session_id": str(baseline["session_id"]),
        "baseline_started_t": float(baseline["started_t"]),
        "baseline_injections": n0,
        "injections": n1,
        "baseline_total_volume_ml_est": baseline.get("total_volume_ml_est"),
        "total_volume_ml_est": current.get("total_volume_ml_est"),
        "baseline_min_nerve_distance_mm": (baseline.get("needle") or {}).get(
            "min_nerve_distance_mm"
        ),
        "min_nerve_distance_mm": (current.get("needle") or {}).get("min_nerve_distance_mm"),
        "sites": sites,
        "new_sites": new,
        "note": note,
    }
