"""The procedure report: key frames (PNG, with shaft, tip, projected path, nerve and
calcification drawn), a printable HTML page and a PDF (reportlab, as the exam's report)."""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_service.procedure.analyzer import KeyFrame

NERVE_BGR = (113, 204, 46)
CALC_BGR = (18, 156, 243)
NEEDLE_BGR = (255, 255, 0)
PATH_BGR = (200, 200, 200)


def draw_key_frame(k: KeyFrame) -> np.ndarray:
    import cv2

    img = cv2.cvtColor(k.pixels, cv2.COLOR_GRAY2BGR)
    for contour, colour in ((k.nerve_contour, NERVE_BGR), (k.calc_contour, CALC_BGR)):
        if contour is not None and len(contour) >= 3:
            cv2.polylines(img, [np.asarray(contour, np.int32).reshape(-1, 1, 2)], True, colour, 2)
    n = k.needle
    if n.found and n.tip_px is not None:
        tip = (round(n.tip_px[1]), round(n.tip_px[0]))
        if n.shaft_start_px is not None:
            start = (round(n.shaft_start_px[1]), round(n.shaft_start_px[0]))
            cv2.line(img, start, tip, NEEDLE_BGR, 2)
        if n.trajectory_end_px is not None:
            end = (round(n.trajectory_end_px[1]), round(n.trajectory_end_px[0]))
            cv2.line(img, tip, end, PATH_BGR, 1, cv2.LINE_AA)
        cv2.circle(img, tip, 6, NEEDLE_BGR, 2)
    return img


def write_key_frames(out_dir: Path, key_frames: Sequence[KeyFrame]) -> list[Path]:
    import cv2

    paths = []
    for i, k in enumerate(key_frames):
        p = out_dir / f"keyframe-{i}.png"
        cv2.imwrite(str(p), draw_key_frame(k))
        paths.append(p)
    return paths


def _f(v: Any, nd: int = 1, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return f"{v:.{nd}f}{unit}"
    return str(v)


def _ts(t: float | None, t0: float) -> str:
    return "—" if t is None else f"{t - t0:+.1f} s"


def summary_lines(r: dict[str, Any]) -> list[str]:
    n, f, p = r["needle"], r["findings"], r["passes"]
    lines = [
        f"{len(r['injections'])} injection(s), about {_f(r['total_volume_ml_est'], 2, ' mL')} in total "
        f"(estimate), {f['injections_on_target']} on target.",
        f"Closest tip-to-nerve distance {_f(n['min_nerve_distance_mm'], 1, ' mm')}"
        + (" — the tip entered the nerve outline." if n["entered_nerve"] else "."),
        f"Needle passes: {p['advances']} advance(s), {p['withdrawals']} withdrawal(s), "
        f"{p['redirects']} redirect(s).",
        f"Alarms: {sum(r['alarm_counts'].values())} "
        + (
            "(" + ", ".join(f"{k} × {v}" for k, v in r["alarm_counts"].items()) + ")."
            if r["alarm_counts"]
            else "(none)."
        ),
    ]
    if f["spread_reached_epineurium"]:
        lines.append("The injectate spread reached the epineurium.")
    fu = r.get("followup")
    if fu:
        lines.append(fu["note"])
    return lines


def write_report(path: Path, r: dict[str, Any], key_pngs: Sequence[Path]) -> None:
    t0 = float(r["started_t"])
    e = html.escape
    inj_rows = "".join(
        f"<tr><td>{i['index']}</td><td>{_ts(i['t_start'], t0)}</td><td>{_f(i['volume_ml_est'], 2)}</td>"
        f"<td>{e(str(i['offset_from_calcification_mm']))}</td><td>{_f(i['calcification_distance_mm'])}</td>"
        f"<td>{_f(i['nerve_distance_mm'])}</td><td>{_f(i['on_target'])}</td><td>{_f(i['reached_epineurium'])}</td></tr>"
        for i in r["injections"]
    )
    al_rows = "".join(
        f"<tr class='{e(a['level'])}'><td>{_ts(a['t_raised'], t0)}</td><td>{e(a['kind'])}</td>"
        f"<td>{e(a['message'])}</td><td>{_f(a['duration_s'], 2, ' s')}</td></tr>"
        for a in r["alarms"]
    )
    imgs = ""
    for k, p in zip(r.get("key_frames") or [], key_pngs, strict=False):
        b64 = base64.b64encode(p.read_bytes()).decode()
        imgs += (
            f"<figure><img src='data:image/png;base64,{b64}' alt='{e(k['label'])}'>"
            f"<figcaption>{e(k['label'])} · frame {k['frame']} · {_ts(k['t'], t0)}</figcaption></figure>"
        )
    dq = r["data_quality"]
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Injection procedure {e(r["session_id"])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:2px 6px;font-size:90%}}tr.stop td{{background:#fdd}}
tr.caution td{{background:#ffe9c4}}figure{{display:inline-block;margin:4px}}img{{max-width:28em}}</style>
</head><body>
<h1>Ultrasound-guided injection — procedure record</h1>
<p>Session {e(r["session_id"])} · {e(str(r["side"]))} side · {time.strftime("%Y-%m-%d %H:%M", time.localtime(t0))}
· {_f(r["duration_s"], 0, " s")} · locator {e(str(r["software"]["locator"]))}</p>
<h2>Summary</h2><ul>{"".join(f"<li>{e(s)}</li>" for s in summary_lines(r))}</ul>
<h2>Injections</h2><table><tr><th>#</th><th>time</th><th>volume mL (est.)</th>
<th>offset from calcification (depth, lateral) mm</th><th>to calcification mm</th><th>to nerve mm</th>
<th>on target</th><th>spread at epineurium</th></tr>{inj_rows}</table>
<h2>Alarms</h2><table><tr><th>time</th><th>kind</th><th>message</th><th>duration</th></tr>{al_rows}</table>
<h2>Key frames</h2><p>shaft and tip cyan, projected path grey, nerve green, calcification orange</p>{imgs}
<h2>Data quality</h2><p>{dq["frames"]} frames analysed; needle seen in {_f(100 * (dq["needle_found_fraction"] or 0), 0, " %")};
{dq["frames_frozen"]} frozen; {dq["track_resets"]} reflector jump(s).</p>
<ul>{"".join(f"<li>{e(s)}</li>" for s in dq["notes"])}</ul>
<p><i>Thresholds: caution {r["settings"]["caution_mm"]} mm, stop {r["settings"]["stop_mm"]} mm. Volumes are
estimates from the spread's cross-section. Guidance support only: the image is the reference.</i></p>
</body></html>"""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)


def render_pdf(entry: Any) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    r = entry.result() or {}
    t0 = float(r.get("started_t") or entry.started_t)
    st = getSampleStyleSheet()
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, title=f"dgs-edge procedure {entry.id}")

    def esc(s: Any) -> str:
        return html.escape(str(s))

    story: list[Any] = [
        Paragraph("Ultrasound-guided injection — procedure record", st["Title"]),
        Paragraph(
            f"Order {esc(entry.order.accession_number)} · patient {esc(entry.order.patient_id)} · "
            f"{esc(entry.side)} side · session {esc(entry.id)} · "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(t0))}",
            st["Normal"],
        ),
        Spacer(1, 3 * mm),
        Paragraph("Summary", st["Heading2"]),
    ]
    story += [Paragraph("• " + esc(s), st["Normal"]) for s in summary_lines(r)]
    rows = [["#", "time", "mL (est.)", "to calc. mm", "to nerve mm", "on target"]]
    rows += [
        [str(i["index"]), _ts(i["t_start"], t0), _f(i["volume_ml_est"], 2),
         _f(i["calcification_distance_mm"]), _f(i["nerve_distance_mm"]), _f(i["on_target"])]
        for i in r.get("injections") or []
    ]  # fmt: skip
    t = Table(rows)
    t.setStyle(
        TableStyle(
            [("GRID", (0, 0), (-1, -1), 0.3, colors.grey), ("FONTSIZE", (0, 0), (-1, -1), 8)]
        )
    )
    story += [Spacer(1, 3 * mm), Paragraph("Injections", st["Heading2"]), t]
    arows = [["time", "kind", "message"]] + [
        [_ts(a["t_raised"], t0), a["kind"], a["message"][:70]] for a in r.get("alarms") or []
    ]
    ta = Table(arows)
    ta.setStyle(
        TableStyle(
            [("GRID", (0, 0), (-1, -1), 0.3, colors.grey), ("FONTSIZE", (0, 0), (-1, -1), 8)]
        )
    )
    story += [Spacer(1, 3 * mm), Paragraph("Alarms", st["Heading2"]), ta]
    for k in (r.get("key_frames") or [])[:4]:
        p = entry.path / k["file"]
        if p.exists():
            story += [Paragraph(esc(k["label"]), st["Heading3"]),
                      Image(str(p), width=90 * mm, height=68 * mm, kind="proportional")]  # fmt: skip
    doc.build(story)
    return buf.getvalue()
