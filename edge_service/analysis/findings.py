"""The result in plain words: one sentence per finding, undetermined ones with their reason."""

from __future__ import annotations

from typing import Any

from edge_service.analysis.manoeuvres import FAIR, PIRIFORMIS


def _txt(v: Any, nd: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _ci(ci: Any, nd: int = 1) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" (95% CI {ci[0]:.{nd}f}-{ci[1]:.{nd}f})"


def findings(doc: dict[str, Any]) -> list[str]:
    """The result in plain words, for the report and the clinician."""
    out = []
    st = doc.get("status") or {}
    if st.get("analysable") is False:
        out.append(f"Not analysable: {st.get('reason_text') or st.get('reason')}")
    nv = doc["nerve"]
    if nv.get("state") == "undetermined" or nv["ap_diameter_mm"] is None:
        why = nv.get("reason_text") or "the sciatic nerve was not found reliably."
        out.append(f"Nerve size undetermined: {why}")
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
    frac = c.get("frames_fraction")
    frac_txt = "" if frac is None else f" (in {100 * frac:.0f}% of {c.get('n_frames', '?')} frames)"
    if c["present"] is None:
        out.append(f"Calcification undetermined: {c.get('reason_text') or 'not enough frames.'}")
    elif c["present"]:
        out.append(
            f"Calcification present{frac_txt}: {_txt(c['long_axis_mm'])} mm long x "
            f"{_txt(c['thickness_mm'])} mm thick, {_txt(c['nerve_distance_mm'])} mm from the nerve."
        )
    else:
        out.append(f"No calcification detected{frac_txt}.")
    g = doc["gliding"]
    if not doc["angles"]["available"]:
        out.append(
            "No clip data: hip angles unknown, so no manoeuvre could be identified and "
            "gliding against rotation was not assessed."
        )
    else:
        names = sorted({m["name"] for m in doc["maneuvers"] if m["name"] in (FAIR, PIRIFORMIS)})
        pretty = {FAIR: "FAIR", PIRIFORMIS: "seated piriformis stretch"}
        out.append(f"Manoeuvres identified: {', '.join(pretty[n] for n in names) or 'none'}.")
        lag = g.get("lag") or {}
        if lag.get("applied") and lag.get("lag_s"):
            out.append(
                f"Clip angles were re-aligned to the images by {lag['lag_s'] * 1000:+.0f} ms "
                f"(correlation {lag['correlation']:.2f})."
            )
    if g.get("state") == "undetermined":
        out.append(f"Gliding could not be judged: {g.get('reason_text')}")
    else:
        if g["excursion_mm"] is not None:
            r2_txt = "" if g["fit"] is None else f", r² {g['fit']['r2']:.2f}"
            out.append(
                f"Nerve gliding against the {g['landmark']}: up to {g['excursion_mm']:.1f} mm "
                f"{g.get('excursion_direction') or ''}{_ci(g.get('excursion_ci_mm'))}; "
                f"{_txt(g['per_10deg_ir_mm'], 2)} mm per 10° internal rotation"
                f"{_ci(g.get('per_10deg_ir_ci_mm'), 2)}{r2_txt}."
            )
        verdict = {True: "Gliding is RESTRICTED", False: "Gliding is free", None: "Gliding"}
        out.append(f"{verdict[g['restricted']]} ({g['rule']}).")
    q = doc["data_quality"]
    rej = q.get("frames_view_rejected") or 0
    rej_txt = f", {rej} frames rejected as not a deep-gluteal short-axis view" if rej else ""
    out.append(
        f"Data quality: nerve found in {100 * (q['nerve_found_fraction'] or 0):.0f}% of "
        f"{q['n_frames']} frames{rej_txt}, tracked in {100 * (q['tracked_fraction'] or 0):.0f}%, "
        f"angles for {100 * (doc['angles']['coverage'] or 0):.0f}%."
    )
    sw = doc.get("software") or {}
    out.append(
        f"Model {sw.get('model_version') or 'unknown'}, trained on "
        f"{sw.get('training_data', 'simulated phantom only')}; "
        f"{sw.get('clinical_validation', 'not clinically validated')}."
    )
    return out
