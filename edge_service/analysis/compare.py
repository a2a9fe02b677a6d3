"""Compare two session results: contralateral sides, or baseline vs follow-up.

Contralateral (A and B are different sides): AP ratio (the case report: 12 mm affected
vs 8 mm asymptomatic = 1.5), CSA difference against the ~16 mm² minimal detectable
side-to-side difference, and the gliding ratio. Follow-up (same side): the change of
each figure from the earlier session to the later one.
"""

from __future__ import annotations

from typing import Any, Literal

from edge_service.analysis.result import CSA_MDD_MM2
from edge_service.errors import InputError

Mode = Literal["auto", "contralateral", "followup"]
# An AP ratio above this is reported as a swollen side (8 -> 12 mm in the case report is 1.5).
AP_RATIO_SWOLLEN = 1.3


def _get(doc: dict[str, Any], *path: str) -> Any:
    """A value of the document; None when missing or when its finding is undetermined
    (1.1 documents say so in `state`; an undetermined figure is never compared)."""
    v: Any = doc
    for p in path:
        if not isinstance(v, dict):
            return None
        if v.get("state") == "undetermined":
            return None
        v = v.get(p)
    return v


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _diff(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(a - b, 3)


def compare(a: dict[str, Any], b: dict[str, Any], mode: Mode = "auto") -> dict[str, Any]:
    """A comparison document plus `summary` lines in plain words."""
    for name, doc in (("A", a), ("B", b)):
        schema = str(doc.get("schema"))
        # Any minor version of major 1 (1.0 or 1.1): minors only add fields.
        if schema != "dgs.session-result/1" and not schema.startswith("dgs.session-result/1."):
            raise InputError(f"{name} is not a dgs.session-result/1.x document")
    if mode == "auto":
        mode = "contralateral" if a["side"] != b["side"] else "followup"
    if mode == "followup":
        # Order by time: the earlier session is the baseline.
        if (a.get("started_t") or 0) > (b.get("started_t") or 0):
            a, b = b, a
        return _followup(a, b)
    if a["side"] == b["side"]:
        raise InputError("a contralateral comparison needs one left and one right session")
    return _contralateral(a, b)


def _contralateral(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    ap_a, ap_b = _get(a, "nerve", "ap_diameter_mm"), _get(b, "nerve", "ap_diameter_mm")
    csa_a, csa_b = _get(a, "nerve", "csa_mm2"), _get(b, "nerve", "csa_mm2")
    gl_a, gl_b = _get(a, "gliding", "per_10deg_ir_mm"), _get(b, "gliding", "per_10deg_ir_mm")
    ex_a, ex_b = _get(a, "gliding", "excursion_mm"), _get(b, "gliding", "excursion_mm")
    ap_ratio = _ratio(ap_a, ap_b)
    csa_diff = _diff(csa_a, csa_b)
    out: dict[str, Any] = {
        "format": "dgs.session-compare/1",
        "mode": "contralateral",
        "a": {"session_id": a["session_id"], "side": a["side"]},
        "b": {"session_id": b["session_id"], "side": b["side"]},
        "ap_ratio": ap_ratio,
        "csa_difference_mm2": csa_diff,
        "csa_mdd_mm2": CSA_MDD_MM2,
        "csa_difference_detectable": None if csa_diff is None else abs(csa_diff) >= CSA_MDD_MM2,
        "gliding_ratio": _ratio(gl_a, gl_b),
        "excursion_ratio": _ratio(ex_a, ex_b),
        "restricted": {
            a["side"]: _get(a, "gliding", "restricted"),
            b["side"]: _get(b, "gliding", "restricted"),
        },
    }
    s = []
    if ap_ratio is not None:
        s.append(
            f"AP diameter {a['side']} {ap_a:.1f} mm vs {b['side']} {ap_b:.1f} mm: ratio {ap_ratio:.2f}"
            + (
                f" ({a['side']} swollen)"
                if ap_ratio >= AP_RATIO_SWOLLEN
                else f" ({b['side']} swollen)"
                if ap_ratio <= 1 / AP_RATIO_SWOLLEN
                else " (similar)"
            )
            + "."
        )
    if csa_diff is not None:
        s.append(
            f"CSA difference {csa_diff:+.1f} mm² ({'at or above' if abs(csa_diff) >= CSA_MDD_MM2 else 'below'} "
            f"the {CSA_MDD_MM2:g} mm² minimal detectable difference)."
        )
    if out["gliding_ratio"] is not None:
        s.append(
            f"Gliding per 10° IR {a['side']} {gl_a:.2f} mm vs {b['side']} {gl_b:.2f} mm: ratio {out['gliding_ratio']:.2f}."
        )
    else:
        s.append("Gliding ratio not available (gliding not measured on both sides).")
    out["summary"] = s
    return out


def _followup(base: dict[str, Any], fu: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "ap_diameter_mm": ("nerve", "ap_diameter_mm"),
        "csa_mm2": ("nerve", "csa_mm2"),
        "fascicular_index": ("nerve", "fascicular_index"),
        "excursion_mm": ("gliding", "excursion_mm"),
        "per_10deg_ir_mm": ("gliding", "per_10deg_ir_mm"),
        "calcification_long_axis_mm": ("calcification", "long_axis_mm"),
    }
    change = {
        k: {
            "baseline": _get(base, *p),
            "followup": _get(fu, *p),
            "change": _diff(_get(fu, *p), _get(base, *p)),
        }
        for k, p in keys.items()
    }
    csa_c = change["csa_mm2"]["change"]
    out: dict[str, Any] = {
        "format": "dgs.session-compare/1",
        "mode": "followup",
        "baseline": {"session_id": base["session_id"], "started_t": base.get("started_t")},
        "followup": {"session_id": fu["session_id"], "started_t": fu.get("started_t")},
        "side": base["side"] if base["side"] == fu["side"] else None,
        "change": change,
        "csa_mdd_mm2": CSA_MDD_MM2,
        "csa_change_detectable": None if csa_c is None else abs(csa_c) >= CSA_MDD_MM2,
        "calcification_present": {
            "baseline": _get(base, "calcification", "present"),
            "followup": _get(fu, "calcification", "present"),
        },
        "restricted": {
            "baseline": _get(base, "gliding", "restricted"),
            "followup": _get(fu, "gliding", "restricted"),
        },
        "gliding_ratio": _ratio(
            change["per_10deg_ir_mm"]["followup"], change["per_10deg_ir_mm"]["baseline"]
        ),
    }
    s = []
    for k, label, unit in (
        ("ap_diameter_mm", "AP diameter", "mm"),
        ("csa_mm2", "CSA", "mm²"),
        ("excursion_mm", "gliding excursion", "mm"),
        ("per_10deg_ir_mm", "gliding per 10° IR", "mm"),
    ):
        c = change[k]
        if c["change"] is not None:
            s.append(
                f"{label}: {c['baseline']:.2f} -> {c['followup']:.2f} {unit} ({c['change']:+.2f})."
            )
    if csa_c is not None:
        s.append(
            f"CSA change is {'at or above' if abs(csa_c) >= CSA_MDD_MM2 else 'below'} the "
            f"{CSA_MDD_MM2:g} mm² minimal detectable difference."
        )
    r = out["restricted"]
    words = {True: "restricted", False: "free", None: "not judged"}
    s.append(f"Gliding: {words[r['baseline']]} at baseline, {words[r['followup']]} at follow-up.")
    cp = out["calcification_present"]
    s.append(
        f"Calcification: {'present' if cp['baseline'] else 'absent'} at baseline, "
        f"{'present' if cp['followup'] else 'absent'} at follow-up."
    )
    out["summary"] = s
    return out
