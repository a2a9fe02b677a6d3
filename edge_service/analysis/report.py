"""`report.html`: one self-contained, printable page a clinician reads at a glance.

Plots are inline SVG drawn here (a few dozen lines): vector output prints sharply, needs
no plotting library on the appliance (matplotlib would add ~40 MB and a font cache to a
Pi image) and no network. The key frame is an embedded PNG with the outlines as SVG
polygons on top.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edge_service.analysis.session import KeyFrame

COLOURS = {"fair": "#c0392b", "piriformis": "#2471a3", "other": "#7f8c8d", "neutral": "#27ae60"}
# One colour per repetition in the scatter (colour-blind safe Okabe-Ito order).
REP_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442"]
UNDETERMINED = "undetermined"
Series = tuple[
    Sequence[float | None], Sequence[float | None], str, str, str
]  # x, y, colour, label, mode


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def svg_plot(
    series: Sequence[Series],
    xlabel: str,
    ylabel: str,
    title: str,
    width: int = 640,
    height: int = 260,
    bands: Sequence[tuple[float, float, str]] = (),
) -> str:
    """A line/scatter plot as an <svg> string. mode: 'line' or 'dots'. None values are gaps."""
    ml, mr, mt, mb = 56, 12, 26, 40
    pts = [
        (x, y)
        for xs, ys, *_ in series
        for x, y in zip(xs, ys, strict=False)
        if x is not None and y is not None
    ]
    if not pts:
        return f'<p class="empty">{html.escape(title)}: no data.</p>'
    xa = np.array([p[0] for p in pts], float)
    ya = np.array([p[1] for p in pts], float)
    x0, x1 = float(xa.min()), float(xa.max())
    y0, y1 = float(ya.min()), float(ya.max())
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 1, x1 + 1
    pad = 0.08 * (y1 - y0) if y1 > y0 else 1.0
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = width - ml - mr, height - mt - mb

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return mt + (1 - (y - y0) / (y1 - y0)) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{ml}" y="16" class="t">{html.escape(title)}</text>',
    ]
    for b0, b1, colour in bands:
        a, b = sx(max(b0, x0)), sx(min(b1, x1))
        if b > a:
            out.append(
                f'<rect x="{a:.1f}" y="{mt}" width="{b - a:.1f}" height="{ph}" '
                f'fill="{colour}" opacity="0.10"/>'
            )
    for tx in _ticks(x0, x1):
        out.append(
            f'<line x1="{sx(tx):.1f}" x2="{sx(tx):.1f}" y1="{mt}" y2="{mt + ph}" class="g"/>'
            f'<text x="{sx(tx):.1f}" y="{mt + ph + 14}" class="tk" text-anchor="middle">{tx:g}</text>'
        )
    for ty in _ticks(y0, y1):
        out.append(
            f'<line x1="{ml}" x2="{ml + pw}" y1="{sy(ty):.1f}" y2="{sy(ty):.1f}" class="g"/>'
            f'<text x="{ml - 4}" y="{sy(ty) + 4:.1f}" class="tk" text-anchor="end">{ty:g}</text>'
        )
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(
        f'<text x="{ml + pw / 2}" y="{height - 6}" class="ax" text-anchor="middle">{html.escape(xlabel)}</text>'
    )
    out.append(
        f'<text x="12" y="{mt + ph / 2}" class="ax" text-anchor="middle" '
        f'transform="rotate(-90 12 {mt + ph / 2})">{html.escape(ylabel)}</text>'
    )
    lx = ml + 8
    for xs, ys, colour, label, mode in series:
        if mode == "dots":
            for x, y in zip(xs, ys, strict=False):
                if x is not None and y is not None:
                    out.append(
                        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="1.8" fill="{colour}" opacity="0.7"/>'
                    )
        else:
            path, pen = [], False
            for x, y in zip(xs, ys, strict=False):
                if x is None or y is None:
                    pen = False
                    continue
                path.append(f"{'L' if pen else 'M'}{sx(x):.1f},{sy(y):.1f}")
                pen = True
            if path:
                dash = ' stroke-dasharray="5,3"' if mode == "dashed" else ""
                out.append(
                    f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>'
                )
        if label:
            out.append(
                f'<rect x="{lx}" y="{mt + 6}" width="10" height="10" fill="{colour}"/>'
                f'<text x="{lx + 14}" y="{mt + 15}" class="tk">{html.escape(label)}</text>'
            )
            lx += 22 + 7 * len(label)
    out.append("</svg>")
    return "\n".join(out)


def key_frame_svg(key: KeyFrame | None, spacing_mm: Any = None) -> str:
    if key is None:
        return '<p class="empty">No frame with a detected nerve.</p>'
    import cv2

    ok, png = cv2.imencode(".png", key.pixels)
    if not ok:
        return '<p class="empty">Key frame could not be encoded.</p>'
    h, w = key.pixels.shape
    b64 = base64.b64encode(png.tobytes()).decode()
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{min(w, 640)}" '
        f'role="img" aria-label="key frame">',
        f'<image href="data:image/png;base64,{b64}" width="{w}" height="{h}"/>',
    ]
    for contour, colour, name in (
        (key.nerve_contour, "#2ecc71", "nerve"),
        (key.calc_contour, "#f39c12", "calcification"),
    ):
        if contour is not None and len(contour) >= 3:
            pts = " ".join(f"{x},{y}" for x, y in contour.tolist())
            parts.append(
                f'<polygon points="{pts}" fill="none" stroke="{colour}" stroke-width="2">'
                f"<title>{name}</title></polygon>"
            )
    parts.append("</svg>")
    return "\n".join(parts)


def _nums(v: Sequence[Any]) -> list[float | None]:
    return [None if x is None else float(x) for x in v]


def render_report(result: dict[str, Any], key: KeyFrame | None = None) -> str:
    """The whole report.html as a string."""
    e = html.escape
    s = result.get("series", {})
    t = _nums(s.get("t_s", []))
    ir = _nums(s.get("internal_rotation_deg", []))
    disp = _nums(s.get("displacement_mm", []))
    t_first = s.get("t0") or result.get("started_t") or 0.0

    # 1. displacement against IR, one colour per repetition, with the pooled fit and the
    # restricted threshold (a slope below the red line is "restricted").
    per: list[Series] = []
    reps = [m for m in result.get("maneuvers", []) if m["name"] in ("fair", "piriformis")]
    for i, m in enumerate(reps):
        idx = [
            k
            for k, tt in enumerate(t)
            if tt is not None and m["start_t"] - t_first - 1e-6 <= tt <= m["end_t"] - t_first + 1e-6
        ]
        per.append(
            (
                [ir[k] for k in idx],
                [disp[k] for k in idx],
                REP_COLOURS[i % len(REP_COLOURS)],
                f"{m['name']} #{i + 1}" if i < 6 else "",
                "dots",
            )
        )
    fit = result["gliding"].get("fit")
    xs = [v for v in ir if v is not None]
    a0 = fit["intercept_mm"] if fit else 0.0
    if fit and fit.get("ir_range_deg") and xs:
        b = fit["per_10deg_ir_mm"] / 10.0
        per.append(
            ([min(xs), max(xs)], [a0 + b * min(xs), a0 + b * max(xs)], "#111", "fit", "dashed")
        )
    thr = result["gliding"].get("restricted_below_mm_per_10deg")
    if thr and xs and reps:
        bt = float(thr) / 10.0
        per.append(
            (
                [min(xs), max(xs)],
                [a0 + bt * min(xs), a0 + bt * max(xs)],
                "#c0392b",
                f"restricted below {float(thr):g} mm/10°",
                "dashed",
            )
        )
    plot_glide = svg_plot(
        per,
        "internal rotation (deg)",
        "nerve vs landmark (mm, + lateral)",
        "Nerve displacement against internal rotation",
    )

    # 2. AP over time + angle traces, with manoeuvre bands.
    bands = []
    for m in result.get("maneuvers", []):
        bands.append((m["start_t"] - t_first, m["end_t"] - t_first, COLOURS.get(m["name"], "#999")))
    plot_ap = svg_plot(
        [(t, _nums(s.get("nerve_ap_mm", [])), "#2c3e50", "AP diameter", "line")],
        "time (s)",
        "AP (mm)",
        "Nerve AP diameter over time",
        height=200,
        bands=bands,
    )
    plot_ang = svg_plot(
        [
            (t, _nums(s.get("flexion_deg", [])), "#8e44ad", "flexion", "line"),
            (t, _nums(s.get("adduction_deg", [])), "#16a085", "adduction", "line"),
            (t, ir, "#c0392b", "int. rotation", "line"),
        ],
        "time (s)",
        "deg",
        "Hip angles (clip)",
        height=200,
        bands=bands,
    )
    plot_disp = svg_plot(
        [(t, disp, "#2c3e50", "displacement", "line")],
        "time (s)",
        "mm",
        "Nerve displacement relative to the landmark over time",
        height=200,
        bands=bands,
    )

    rows = []
    for m in result.get("maneuvers", []):
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{e(str(v))}</td>"
                for v in (
                    m["name"],
                    _fmt(m["duration_s"], 1),
                    _fmt(m["peak_flexion_deg"], 0),
                    _fmt(m["peak_adduction_deg"], 0),
                    _fmt(m["peak_internal_rotation_deg"], 0),
                    (
                        _fmt(m.get("excursion_mm"), 2) + " " + (m.get("excursion_direction") or "")
                    ).strip(),
                    _fmt(m.get("per_10deg_ir_mm"), 2),
                    _fmt(m.get("fit_r2"), 2),
                )
            )
            + "</tr>"
        )
    table = (
        (
            "<table><tr><th>manoeuvre</th><th>s</th><th>peak flex°</th><th>peak add°</th>"
            "<th>peak IR°</th><th>excursion mm</th><th>mm/10° IR</th><th>r²</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        if rows
        else '<p class="empty">No manoeuvre identified.</p>'
    )
    g = result["gliding"]
    verdict = {True: ("RESTRICTED", "bad"), False: ("free", "good"), None: (UNDETERMINED, "und")}[
        g["restricted"]
    ]
    nerve, calc = result["nerve"], result["calcification"]
    g_ok = g.get("state", "measured") != UNDETERMINED and g["restricted"] is not None
    n_ok = nerve.get("state", "measured") != UNDETERMINED and nerve["ap_diameter_mm"] is not None
    calc_txt = {True: "yes", False: "no", None: UNDETERMINED}[calc["present"]]
    tiles = [
        ("Nerve AP", f"{_fmt(nerve['ap_diameter_mm'], 1)} mm" if n_ok else UNDETERMINED, ""),
        ("Nerve CSA", f"{_fmt(nerve['csa_mm2'], 0)} mm²" if n_ok else UNDETERMINED, ""),
        ("Calcification", calc_txt, "und" if calc["present"] is None else ""),
        (
            "Max excursion",
            f"{_fmt(g['excursion_mm'], 1)} mm {g.get('excursion_direction') or ''}".rstrip()
            if g_ok and g["excursion_mm"] is not None
            else UNDETERMINED,
            "",
        ),
        (
            "Per 10° IR",
            f"{_fmt(g['per_10deg_ir_mm'], 2)} mm" if g_ok else UNDETERMINED,
            "",
        ),
        ("Gliding", verdict[0], verdict[1]),
    ]
    tiles_html = "".join(
        f'<div class="kpi {cls}{" und" if val == UNDETERMINED else ""}"><span>{e(name)}</span>'
        f"<b>{e(val)}</b></div>"
        for name, val, cls in tiles
    )
    why = [
        (label, doc.get("reason_text"))
        for label, doc in (
            ("Session", result.get("status") or {}),
            ("Nerve size", nerve),
            ("Calcification", calc),
            ("Gliding", g),
        )
        if doc.get("state") == UNDETERMINED and doc.get("reason_text")
    ]
    why_html = (
        '<section class="why"><h2>Not determined, and why</h2><ul>'
        + "".join(f"<li><b>{e(k)}:</b> {e(str(v))}</li>" for k, v in why)
        + "</ul></section>"
        if why
        else ""
    )
    sw = result["software"]
    honesty = (
        f"Model {sw.get('model_version') or 'unknown'}, trained on "
        f"{sw.get('training_data', 'simulated phantom only')}; "
        f"{sw.get('clinical_validation', 'not clinically validated')}. "
        "Not for diagnosis on its own."
    )
    started = (
        time.strftime("%Y-%m-%d %H:%M", time.gmtime(result["started_t"]))
        if result.get("started_t")
        else "?"
    )
    model = result["software"].get("model") or {}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DGS session {e(result["session_id"])}</title>
<style>
body{{font-family:system-ui,Arial,sans-serif;margin:24px;color:#111;max-width:1000px}}
h1{{font-size:20px;margin:0 0 4px}} h2{{font-size:15px;margin:18px 0 6px;border-bottom:1px solid #ccc}}
.meta{{color:#555;font-size:12px}} .grid{{display:flex;flex-wrap:wrap;gap:12px}}
.kpi{{border:1px solid #ccc;border-radius:6px;padding:6px 10px;min-width:120px}}
.kpi b{{display:block;font-size:18px}} .bad b{{color:#c0392b}} .good b{{color:#1e8449}}
.und b{{color:#7f8c8d;font-style:italic;font-size:15px}} .why{{background:#fff8e1;padding:2px 10px}}
.honest{{border:1px solid #c0392b;color:#7b241c;padding:4px 8px;font-size:12px}}
table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}
svg text.t{{font-size:13px;font-weight:600}} svg text.tk{{font-size:10px}} svg text.ax{{font-size:11px}}
svg line.g{{stroke:#e5e5e5}} .empty{{color:#888;font-style:italic}} ul{{margin:4px 0}}
@media print{{body{{margin:8mm}} section{{break-inside:avoid}}}}
</style></head><body>
<h1>Deep gluteal space: dynamic sciatic nerve assessment</h1>
<p class="meta">Session {e(result["session_id"])} · {e(result["side"])} side · protocol {e(str(result.get("protocol")))} ·
recorded {started} UTC · dgs-edge {e(result["software"]["version"])}
{" · model " + e(str(model.get("name", "")) + " " + str(model.get("version", ""))) if model else ""}</p>
<p class="honest">{e(honesty)}</p>
<section><div class="grid">{tiles_html}</div></section>
{why_html}
<section><h2>Findings</h2><ul>{"".join(f"<li>{e(x)}</li>" for x in result.get("findings", []))}</ul></section>
<section><h2>Key frame</h2>{key_frame_svg(key)}
<p class="meta">Green: nerve outline; orange: calcification.{_keytxt(key)}</p></section>
<section><h2>Gliding</h2>{plot_glide}{plot_disp}</section>
<section><h2>Nerve size and hip angles over time</h2>{plot_ap}{plot_ang}
<p class="meta">Shaded: identified manoeuvres (red FAIR, blue seated piriformis, grey other).</p></section>
<section><h2>Manoeuvres</h2>{table}</section>
<section><h2>Limits of the method</h2><ul>{"".join(f"<li>{e(x)}</li>" for x in result.get("limits", []))}</ul></section>
</body></html>
"""


def _keytxt(key: KeyFrame | None) -> str:
    if key is None:
        return ""
    n = key.nerve
    parts = [f"frame {key.index}"]
    if n.get("ap_mm") is not None and math.isfinite(n.get("ap_mm", math.nan)):
        parts.append(
            f"AP {n['ap_mm']:.1f} mm, width {n.get('width_mm', math.nan):.1f} mm, CSA {n.get('csa_mm2', math.nan):.0f} mm²"
        )
    c = key.calc
    if c and math.isfinite(c.get("long_axis_mm", math.nan)):
        parts.append(
            f"calcification {c['long_axis_mm']:.1f} x {c.get('thickness_mm', math.nan):.1f} mm"
        )
    return " " + "; ".join(parts) + "."


def _fmt(v: Any, nd: int) -> str:
    if v is None:
        return "n/a"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return f"{f:.{nd}f}" if math.isfinite(f) else "n/a"


def write_report(path: Path, result: dict[str, Any], key: KeyFrame | None = None) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(result, key), encoding="utf-8")
    tmp.replace(path)
    return path
