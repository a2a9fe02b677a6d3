"""The result document `dgs.session-result/1`: building, plain-words findings, validation.

The JSON Schema ships as package data (`edge_service/schemas/session-result-1.json`).
Unmeasurable figures are `null` (JSON has no NaN); every number is in the unit its key
names.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_service import __version__
from edge_service.analysis import gliding as gl
from edge_service.analysis.manoeuvres import FAIR, NEUTRAL, PIRIFORMIS, UNKNOWN, detect
from edge_service.errors import InputError

if TYPE_CHECKING:
    from edge_service.analysis.session import SessionAnalyzer

SCHEMA_ID = "dgs.session-result/1"
SCHEMA_FILE = "session-result-1.json"
# Minimal detectable side-to-side CSA difference at piriformis level (design.md).
CSA_MDD_MM2 = 16.0


def _f(v: Any, nd: int = 4) -> float | None:
    """A JSON number, or None for NaN/inf/None."""
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return round(x, nd) if math.isfinite(x) else None


def _summary(values: np.ndarray) -> dict[str, Any]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"median": None, "p25": None, "p75": None, "mad": None, "n": 0}
    med = float(np.median(v))
    return {
        "median": _f(med),
        "p25": _f(np.percentile(v, 25)),
        "p75": _f(np.percentile(v, 75)),
        "mad": _f(np.median(np.abs(v - med))),
        "n": int(v.size),
    }


def build_result(an: SessionAnalyzer) -> dict[str, Any]:
    recs = an.records
    n = len(recs)
    t = np.array([r.t for r in recs], dtype=float)
    t0 = float(t[0]) if n else 0.0
    ang = np.array([r.angles for r in recs], dtype=float).reshape(-1, 3)
    labels, episodes = detect(t - t0, ang, an.s.manoeuvres)
    have_angles = bool(np.isfinite(ang).all(axis=1).any())
    found = np.array([r.nerve_found for r in recs], dtype=bool)
    neutral = np.array([lab == NEUTRAL for lab in labels], dtype=bool)

    # Nerve size: neutral frames (the hip at rest); all frames only when angles are unknown.
    use = found & neutral if (found & neutral).any() else found
    nerve_stats = {
        k: _summary(np.array([r.nerve[k] for r in recs])[use])
        for k in ("ap_mm", "width_mm", "csa_mm2", "fascicular_index")
    }
    calc_frames = np.array([r.calc_present for r in recs], dtype=bool)
    calc_fraction = float(calc_frames[found].mean()) if found.any() else 0.0
    calc_present = bool(found.any() and calc_fraction >= 0.5)
    calc_stats = {
        k: _summary(np.array([r.calc[k] for r in recs])[calc_frames])
        for k in ("long_axis_mm", "thickness_mm", "nerve_distance_mm")
    }

    # Tracked displacement, lateral positive (the side decides the image direction).
    lateral = np.full(n, np.nan)
    ap = np.full(n, np.nan)
    vs_m = np.full(n, np.nan)
    quality = np.full(n, np.nan)
    reanchors = 0
    for i, r in enumerate(recs):
        if r.step is None:
            continue
        quality[i] = r.step.quality
        reanchors += int(r.step.regions["nerve"].reanchored)
        if r.step.reliable:
            lateral[i] = an.lat * r.step.nerve_vs_landmark_mm[0]
            ap[i] = r.step.nerve_vs_landmark_mm[1]
            if r.step.nerve_vs_muscle_mm is not None:
                vs_m[i] = an.lat * r.step.nerve_vs_muscle_mm[0]
    ir = ang[:, 2]
    glides = gl.per_manoeuvre(episodes, ir, lateral, ap, vs_m)
    fit = gl.pooled_fit(glides, ir, lateral)
    restricted, reason = gl.classify(fit, glides, an.s.gliding)
    if not have_angles:
        reason = "undetermined: no clip data (hip angles unknown), so no manoeuvre can be judged"
    elif not np.isfinite(lateral).any():
        reason = "undetermined: the nerve was not detected reliably, so nothing could be tracked"
    excursions = [g.excursion_mm for g in glides if g.excursion_mm is not None]
    best = max(excursions, key=abs) if excursions else None
    exc_m = [g.excursion_vs_muscle_mm for g in glides if g.excursion_vs_muscle_mm is not None]

    maneuvers = []
    for ep in episodes:
        if ep.name == NEUTRAL:
            continue
        g = next((x for x in glides if x.episode is ep), None)
        maneuvers.append(
            {
                "name": ep.name,
                "start_t": _f(t[ep.start_index], 3),
                "end_t": _f(t[ep.end_index], 3),
                "duration_s": _f(ep.end_t - ep.start_t, 3),
                "peak_flexion_deg": _f(ep.peak_flexion_deg, 2),
                "peak_adduction_deg": _f(ep.peak_adduction_deg, 2),
                "peak_internal_rotation_deg": _f(ep.peak_internal_rotation_deg, 2),
                "excursion_mm": _f(g.excursion_mm) if g else None,
                "excursion_ap_mm": _f(g.excursion_ap_mm) if g else None,
                "excursion_vs_muscle_mm": _f(g.excursion_vs_muscle_mm) if g else None,
                "per_10deg_ir_mm": _f(10 * g.fit.slope_mm_per_deg) if g and g.fit else None,
                "fit_r2": _f(g.fit.r2) if g and g.fit else None,
                "n_frames": ep.end_index - ep.start_index + 1,
                "n_tracked": g.n_tracked if g else 0,
            }
        )

    counts = {k: sum(1 for lab in labels if lab == k) for k in (NEUTRAL, FAIR, PIRIFORMIS, UNKNOWN)}
    dur = float(t[-1] - t[0]) if n > 1 else 0.0
    session = an.session
    doc: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "session_id": str(session.get("session_id", "unknown")),
        "side": an.side,
        "protocol": session.get("protocol"),
        "started_t": _f(session.get("started_t", t0), 3),
        "analysed_t": round(time.time(), 3),
        "software": {"name": "dgs-edge", "version": __version__, "model": an.model or None},
        "nerve": {
            "ap_diameter_mm": nerve_stats["ap_mm"]["median"],
            "width_mm": nerve_stats["width_mm"]["median"],
            "csa_mm2": nerve_stats["csa_mm2"]["median"],
            "fascicular_index": nerve_stats["fascicular_index"]["median"],
            "from_neutral_frames": bool((found & neutral).any()),
            "spread": {
                "ap_diameter_mm": nerve_stats["ap_mm"],
                "width_mm": nerve_stats["width_mm"],
                "csa_mm2": nerve_stats["csa_mm2"],
                "fascicular_index": nerve_stats["fascicular_index"],
            },
        },
        "calcification": {
            "present": calc_present,
            "long_axis_mm": calc_stats["long_axis_mm"]["median"] if calc_present else None,
            "thickness_mm": calc_stats["thickness_mm"]["median"] if calc_present else None,
            "nerve_distance_mm": calc_stats["nerve_distance_mm"]["median"]
            if calc_present
            else None,
            "frames_fraction": _f(calc_fraction),
        },
        "gliding": {
            "excursion_mm": _f(best),
            "excursion_vs_muscle_mm": _f(max(exc_m, key=abs)) if exc_m else None,
            "per_10deg_ir_mm": _f(10 * fit.slope_mm_per_deg) if fit else None,
            "fit": fit.to_dict() if fit else None,
            "restricted": restricted if have_angles else None,
            "rule": reason,
            "landmark": an.landmark_kind,
            "direction": "lateral displacement of the nerve relative to the landmark; positive = lateral",
        },
        "maneuvers": maneuvers,
        "angles": {
            "available": have_angles,
            "coverage": _f(float(np.isfinite(ang).all(axis=1).mean()) if n else 0.0),
            "n_imu_samples": int(session.get("n_imu", 0)),
            "peak_flexion_deg": _f(np.nanmax(ang[:, 0]), 2) if have_angles else None,
            "peak_adduction_deg": _f(np.nanmax(ang[:, 1]), 2) if have_angles else None,
            "peak_internal_rotation_deg": _f(np.nanmax(ang[:, 2]), 2) if have_angles else None,
        },
        "data_quality": {
            "n_frames": n,
            "duration_s": _f(dur, 3),
            "frame_rate_hz": _f((n - 1) / dur, 3) if dur > 0 else None,
            "nerve_found_fraction": _f(found.mean() if n else 0.0),
            "tracked_fraction": _f(np.isfinite(lateral).mean() if n else 0.0),
            "tracking_quality_median": _f(np.nanmedian(quality))
            if np.isfinite(quality).any()
            else None,
            "tracking_quality_p10": _f(np.nanpercentile(quality, 10))
            if np.isfinite(quality).any()
            else None,
            "reanchors": reanchors,
            "tracking_started_index": an.tracker_start,
            "frames_by_label": counts,
            "recovered_recording": bool(session.get("recovered", False)),
        },
        "series": {
            "t0": _f(t0, 3),
            "t_s": [_f(x - t0, 3) for x in t],
            "flexion_deg": [_f(x, 2) for x in ang[:, 0]],
            "adduction_deg": [_f(x, 2) for x in ang[:, 1]],
            "internal_rotation_deg": [_f(x, 2) for x in ang[:, 2]],
            "displacement_mm": [_f(x, 3) for x in lateral],
            "nerve_ap_mm": [_f(r.nerve["ap_mm"], 2) for r in recs],
            "tracking_quality": [_f(x, 3) for x in quality],
            "label": labels,
        },
    }
    doc["findings"] = findings(doc)
    doc["limits"] = LIMITS
    return doc


LIMITS = [
    "Gliding is measured in the imaging plane only (short axis); out-of-plane motion lowers "
    "the tracking quality and is reported, not measured.",
    "Displacement is relative to the landmark (calcification or ligament); probe motion "
    "cancels out only as far as both move together.",
    "Hip angles come from the thigh clip; without a pelvis clip, pelvic tilt is counted "
    "as hip motion.",
    "Sizes come from an automated segmentation; check the key frame outlines.",
    "Thresholds (restricted gliding, CSA difference) are configurable defaults derived from "
    "the literature and a single case report, not validated cut-offs.",
]


def findings(doc: dict[str, Any]) -> list[str]:
    """The result in plain words, for the report and the clinician."""
    out = []
    nv = doc["nerve"]
    if nv["ap_diameter_mm"] is None:
        out.append("The sciatic nerve was not found reliably; no size could be measured.")
    else:
        sp = nv["spread"]["ap_diameter_mm"]
        fi = nv["fascicular_index"]
        fi_txt = "" if fi is None else f", fascicular index {fi:.2f}"
        where = (
            "at rest" if nv["from_neutral_frames"] else "over the whole clip (no rest phase known)"
        )
        out.append(
            f"Sciatic nerve {where}: AP diameter {nv['ap_diameter_mm']:.1f} mm "
            f"(IQR {sp['p25']:.1f}-{sp['p75']:.1f}, {sp['n']} frames), width "
            f"{_txt(nv['width_mm'])} mm, CSA {_txt(nv['csa_mm2'])} mm²"
            f"{fi_txt}."
        )
    c = doc["calcification"]
    if c["present"]:
        out.append(
            f"Calcification present: {_txt(c['long_axis_mm'])} mm long x {_txt(c['thickness_mm'])} mm "
            f"thick, {_txt(c['nerve_distance_mm'])} mm from the nerve."
        )
    else:
        out.append("No calcification detected.")
    if not doc["angles"]["available"]:
        out.append(
            "No clip data: hip angles unknown, so no manoeuvre could be identified and "
            "gliding against rotation was not assessed."
        )
    else:
        names = sorted({m["name"] for m in doc["maneuvers"] if m["name"] in (FAIR, PIRIFORMIS)})
        pretty = {FAIR: "FAIR", PIRIFORMIS: "seated piriformis stretch"}
        out.append(f"Manoeuvres identified: {', '.join(pretty[n] for n in names) or 'none'}.")
        g = doc["gliding"]
        if g["excursion_mm"] is not None:
            r2_txt = "" if g["fit"] is None else f" (r² {g['fit']['r2']:.2f})"
            out.append(
                f"Nerve gliding against the {g['landmark']}: up to {g['excursion_mm']:.1f} mm; "
                f"{_txt(g['per_10deg_ir_mm'], 2)} mm per 10° internal rotation"
                f"{r2_txt}."
            )
        verdict = {
            True: "Gliding is RESTRICTED",
            False: "Gliding is free",
            None: "Gliding could not be judged",
        }
        out.append(f"{verdict[g['restricted']]} ({g['rule']}).")
    q = doc["data_quality"]
    out.append(
        f"Data quality: nerve found in {100 * (q['nerve_found_fraction'] or 0):.0f}% of {q['n_frames']} frames, "
        f"tracked in {100 * (q['tracked_fraction'] or 0):.0f}%, angles for {100 * (doc['angles']['coverage'] or 0):.0f}%."
    )
    return out


def _txt(v: Any, nd: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


@functools.cache
def load_schema() -> dict[str, Any]:
    text = resources.files("edge_service").joinpath("schemas", SCHEMA_FILE).read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def validate(doc: Any) -> None:
    """Raise InputError naming the first violation of dgs.session-result/1."""
    import jsonschema

    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise InputError(f"not a valid {SCHEMA_ID} document at {where}: {e.message}")


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False))
    os.replace(tmp, path)


def read_result(path: str | Path) -> dict[str, Any]:
    """Load and validate a result.json (or a session directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "result.json"
    if not p.is_file():
        raise InputError(f"{p}: no result.json (run `dgs-edge analyze` on the session first)")
    try:
        doc = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not JSON: {exc}") from exc
    validate(doc)
    return doc  # type: ignore[no-any-return]
