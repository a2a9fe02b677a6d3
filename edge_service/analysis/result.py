"""The result document `dgs.session-result/1`: building, plain-words findings, validation.

The JSON Schema ships as package data (`edge_service/schemas/session-result-1.json`).
Unmeasurable figures are `null` (JSON has no NaN); every number is in the unit its key
names.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_service import __version__, docschema
from edge_service.analysis import evidence as ev_mod
from edge_service.analysis import gliding as gl
from edge_service.analysis.alignment import estimate_lag, shift
from edge_service.analysis.evidence import (
    Verdict,
    angle_stream,
    gliding_gates,
    seq_resets,
    wilson,
)
from edge_service.analysis.findings import findings
from edge_service.analysis.manoeuvres import (
    FAIR,
    NEUTRAL,
    OTHER,
    PIRIFORMIS,
    UNKNOWN,
    allowed_for,
    detect,
)
from edge_service.errors import InputError

if TYPE_CHECKING:
    from edge_service.analysis.session import SessionAnalyzer

# Minor 1.1 adds the evidence fields (state/reason, intervals, lag, view counts); every
# 1.0 field keeps its name and meaning, except that excursions are now magnitudes with a
# separate direction. The schema file of major 1 validates both.
SCHEMA_ID = "dgs.session-result/1.1"
SCHEMA_MAJOR = "dgs.session-result/1"
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
    ev = an.s.evidence
    n = len(recs)
    t = np.array([r.t for r in recs], dtype=float)
    t0 = float(t[0]) if n else 0.0
    raw_ang = np.array([r.angles for r in recs], dtype=float).reshape(-1, 3)
    session = an.session
    view_ok = np.array([r.view_ok for r in recs], dtype=bool)
    n_valid = int(view_ok.sum())
    found = np.array([r.nerve_found for r in recs], dtype=bool)

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

    # Session-level gate: enough frames of the view the model is made for.
    session_v = Verdict()
    need_valid = max(ev.min_valid_frames, math.ceil(ev.min_valid_fraction * n))
    if n_valid < need_valid:
        session_v.fail("too_few_valid_frames", valid=n_valid, total=n, need=need_valid)
    analysable = session_v.state == ev_mod.MEASURED

    # Clip-probe alignment: estimate the lag, re-sample the angles at it when it holds.
    lag = estimate_lag(t, raw_ang[:, 2], lateral, ev.lag_window_s, ev.lag_step_s)
    lag_ok = (
        lag.lag_s is not None
        and lag.correlation is not None
        and lag.correlation >= ev.min_lag_correlation
        and not lag.at_edge
    )
    ang = shift(t, raw_ang, lag.lag_s) if lag_ok and lag.lag_s else raw_ang
    have_angles = bool(np.isfinite(ang).all(axis=1).any())
    allowed = allowed_for(session.get("protocol"))
    labels, episodes = detect(t - t0, ang, an.s.manoeuvres, allowed)
    neutral = np.array([lab == NEUTRAL for lab in labels], dtype=bool)

    # Nerve size: neutral frames (the hip at rest); all frames only when angles are unknown.
    use = found & neutral if (found & neutral).any() else found
    nerve_stats = {
        k: _summary(np.array([r.nerve[k] for r in recs])[use])
        for k in ("ap_mm", "width_mm", "csa_mm2", "fascicular_index")
    }
    nerve_v = Verdict()
    if not analysable:
        nerve_v.fail("not_analysable", why=session_v.clause)
    if int(use.sum()) < ev.min_nerve_frames:
        nerve_v.fail("too_few_nerve_frames", found=int(use.sum()), need=ev.min_nerve_frames)
    nerve_ok = nerve_v.state == ev_mod.MEASURED

    calc_frames = np.array([r.calc_present for r in recs], dtype=bool)
    base = found if found.any() else view_ok
    k_calc, n_calc = int((calc_frames & base).sum()), int(base.sum())
    calc_fraction = k_calc / n_calc if n_calc else 0.0
    lo, hi = wilson(k_calc, n_calc, ev.ci_level)
    calc_v = Verdict()
    if not analysable:
        calc_v.fail("not_analysable", why=session_v.clause)
    elif n_calc < ev.min_nerve_frames:
        calc_v.fail("too_few_nerve_frames", found=n_calc, need=ev.min_nerve_frames)
    elif lo < 0.5 < hi:
        calc_v.fail(
            "calcification_ambiguous",
            pct=100 * calc_fraction,
            n=n_calc,
            lo=100 * lo,
            hi=100 * hi,
            level=100 * ev.ci_level,
        )
    calc_present: bool | None = (
        bool(calc_fraction >= 0.5) if calc_v.state == ev_mod.MEASURED else None
    )
    calc_conf = np.array([r.calc_confidence for r in recs], dtype=float)[calc_frames]
    calc_stats = {
        k: _summary(np.array([r.calc[k] for r in recs])[calc_frames])
        for k in ("long_axis_mm", "thickness_mm", "nerve_distance_mm")
    }

    ir = ang[:, 2]
    glides = gl.per_manoeuvre(
        episodes, ir, lateral, ap, vs_m, quality, ev.ci_level, ev.bootstrap_samples
    )
    fit = gl.pooled_fit(glides, ir, lateral)
    stream = angle_stream(t, np.isfinite(raw_ang).all(axis=1), ev.max_angle_gap_s)
    seq = session.get("imu_seq")
    resets = seq_resets(list(seq[0]), list(seq[1]), t0, float(t[-1])) if seq and n else 0

    gv, basis_ok, still = gliding_gates(
        ev,
        an.s.gliding.min_ir_range_deg,
        raw_ang=raw_ang,
        lateral=lateral,
        quality=quality,
        glides=glides,
        fit=fit,
        lag=lag,
        lag_ok=lag_ok,
        stream=stream,
        resets=resets,
        session_v=session_v,
        have_angles=have_angles,
    )
    restricted, rule = gl.classify(fit, glides, an.s.gliding)
    if gv.state != ev_mod.MEASURED:
        restricted = None
        rule = f"undetermined: {gv.clause}"
    elif still and (fit is None or fit.r2 < ev.min_fit_r2):
        restricted = True
        rule = (
            f"restricted: the nerve moved less than {ev.still_range_mm:g} mm (p5-p95) while the "
            f"hip rotated {fit.ir_range_deg if fit else 0:.0f} deg"
        )

    best = max(
        (g for g in glides if g.excursion_mm is not None),
        key=lambda g: abs(g.excursion_mm or 0.0),
        default=None,
    )
    exc_mag, exc_dir = gl.magnitude(best.excursion_mm if best else None)
    exc_ci = gl.magnitude_ci(
        best.excursion_mm if best else None, best.excursion_ci_mm if best else None
    )
    exc_m = [g.excursion_vs_muscle_mm for g in glides if g.excursion_vs_muscle_mm is not None]
    xs, ys = gl.pooled_xy(glides, ir, lateral)
    fps = (n - 1) / float(t[-1] - t[0]) if n > 1 and t[-1] > t[0] else 1.0
    slope_ci = gl.slope_ci_per_10deg(xs, ys, round(fps), ev.ci_level, ev.bootstrap_samples)
    if not basis_ok:
        exc_mag = exc_dir = exc_ci = slope_ci = None

    maneuvers = []
    for ep in episodes:
        if ep.name == NEUTRAL:
            continue
        g = next((x for x in glides if x.episode is ep), None)
        m_mag, m_dir = gl.magnitude(g.excursion_mm if g and basis_ok else None)
        m_ci = gl.magnitude_ci(g.excursion_mm, g.excursion_ci_mm) if g and basis_ok else None
        maneuvers.append(
            {
                "name": ep.name,
                "start_t": _f(t[ep.start_index], 3),
                "end_t": _f(t[ep.end_index], 3),
                "duration_s": _f(ep.end_t - ep.start_t, 3),
                "peak_flexion_deg": _f(ep.peak_flexion_deg, 2),
                "peak_adduction_deg": _f(ep.peak_adduction_deg, 2),
                "peak_internal_rotation_deg": _f(ep.peak_internal_rotation_deg, 2),
                "excursion_mm": _f(m_mag),
                "excursion_direction": m_dir,
                "excursion_ci_mm": _pair(m_ci),
                "excursion_ap_mm": _f(g.excursion_ap_mm) if g and basis_ok else None,
                "excursion_vs_muscle_mm": _f(abs(g.excursion_vs_muscle_mm))
                if g and basis_ok and g.excursion_vs_muscle_mm is not None
                else None,
                "per_10deg_ir_mm": _f(10 * g.fit.slope_mm_per_deg)
                if g and g.fit and basis_ok
                else None,
                "fit_r2": _f(g.fit.r2) if g and g.fit else None,
                "tracking_quality_median": _f(g.tracking_quality) if g else None,
                "n_frames": ep.end_index - ep.start_index + 1,
                "n_tracked": g.n_tracked if g else 0,
            }
        )

    counts = {
        k: sum(1 for lab in labels if lab == k) for k in (NEUTRAL, FAIR, PIRIFORMIS, OTHER, UNKNOWN)
    }
    dur = float(t[-1] - t[0]) if n > 1 else 0.0
    model = dict(an.model) if an.model else None
    nerve_num = (lambda v: v) if nerve_ok else (lambda v: None)
    doc: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "session_id": str(session.get("session_id", "unknown")),
        "side": an.side,
        "protocol": session.get("protocol"),
        "started_t": _f(session.get("started_t", t0), 3),
        "analysed_t": round(time.time(), 3),
        "software": {
            "name": "dgs-edge",
            "version": __version__,
            "model": model,
            "model_version": _model_version(an.model),
            "training_data": str(an.model.get("training_data") or TRAINING_DATA),
            "clinical_validation": CLINICAL_VALIDATION,
        },
        "status": {
            "analysable": analysable,
            "state": session_v.state,
            "reason": session_v.reason,
            "reason_text": session_v.sentence,
        },
        "nerve": {
            "ap_diameter_mm": nerve_num(nerve_stats["ap_mm"]["median"]),
            "width_mm": nerve_num(nerve_stats["width_mm"]["median"]),
            "csa_mm2": nerve_num(nerve_stats["csa_mm2"]["median"]),
            "fascicular_index": nerve_num(nerve_stats["fascicular_index"]["median"]),
            "from_neutral_frames": bool((found & neutral).any()),
            **nerve_v.to_dict(),
            "n_frames": int(use.sum()),
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
            "frames_fraction_ci": [_f(lo), _f(hi)],
            "n_frames": n_calc,
            "confidence": _f(_calc_confidence(calc_fraction, lo, hi, calc_present)),
            "detector_confidence_median": _f(np.nanmedian(calc_conf))
            if np.isfinite(calc_conf).any()
            else None,
            **calc_v.to_dict(),
        },
        "gliding": {
            "excursion_mm": _f(exc_mag),
            "excursion_direction": exc_dir,
            "excursion_ci_mm": _pair(exc_ci),
            "excursion_vs_muscle_mm": _f(max(abs(x) for x in exc_m))
            if exc_m and basis_ok
            else None,
            "per_10deg_ir_mm": _f(10 * fit.slope_mm_per_deg) if fit and basis_ok else None,
            "per_10deg_ir_ci_mm": _pair(slope_ci),
            "ci_level": ev.ci_level,
            "fit": fit.to_dict() if fit and basis_ok else None,
            "restricted": restricted,
            "restricted_below_mm_per_10deg": an.s.gliding.restricted_below_mm_per_10deg,
            **gv.to_dict(),
            "reasons": list(gv.reasons),
            "rule": rule,
            "landmark": an.landmark_kind,
            "direction": "lateral displacement of the nerve relative to the landmark; positive = lateral",
            "lag": lag.to_dict() | {"applied": bool(lag_ok)},
        },
        "maneuvers": maneuvers,
        "angles": {
            "available": have_angles,
            "coverage": _f(stream.coverage),
            "n_imu_samples": int(session.get("n_imu", 0)),
            "lag_s": _f(lag.lag_s, 3) if lag_ok else None,
            "peak_flexion_deg": _f(np.nanmax(ang[:, 0]), 2) if have_angles else None,
            "peak_adduction_deg": _f(np.nanmax(ang[:, 1]), 2) if have_angles else None,
            "peak_internal_rotation_deg": _f(np.nanmax(ang[:, 2]), 2) if have_angles else None,
        },
        "data_quality": {
            "n_frames": n,
            "frames_total": n,
            "frames_valid": n_valid,
            "frames_view_rejected": n - n_valid,
            "view_score_median": _f(
                np.median([r.view_score for r in recs if r.view_score is not None])
            )
            if any(r.view_score is not None for r in recs)
            else None,
            "imu_coverage": _f(stream.coverage),
            "imu_longest_gap_s": _f(stream.longest_gap_s, 3),
            "imu_seq_resets": resets,
            "lag_s": _f(lag.lag_s, 3) if lag_ok else None,
            "lag_correlation": _f(lag.correlation, 3),
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
            "view_ok": [bool(r.view_ok) for r in recs],
            "label": labels,
        },
    }
    doc["findings"] = findings(doc)
    doc["limits"] = LIMITS
    return doc


TRAINING_DATA = "simulated phantom only"
CLINICAL_VALIDATION = "not clinically validated"


def _model_version(model: dict[str, Any]) -> str | None:
    if not model:
        return None
    parts = [str(model[k]) for k in ("name", "version") if model.get(k)]
    return " ".join(parts) or None


def _pair(ci: tuple[float, float] | None) -> list[float | None] | None:
    return None if ci is None else [_f(ci[0]), _f(ci[1])]


def _calc_confidence(frac: float, lo: float, hi: float, present: bool | None) -> float | None:
    """How sure the presence call is: the lower bound of the fraction's interval on the
    side of the call (present: frames with it; absent: frames without it)."""
    if present is None:
        return None
    return lo if present else 1.0 - hi


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


def load_schema() -> dict[str, Any]:
    return docschema.load(SCHEMA_FILE)


def validate(doc: Any) -> None:
    """Raise InputError naming the first violation of dgs.session-result/1."""
    docschema.check(doc, SCHEMA_FILE, SCHEMA_ID)


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
