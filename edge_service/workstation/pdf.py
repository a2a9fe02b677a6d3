"""The session report as PDF, drawn with reportlab (pure Python: no browser on the appliance).

Same content as the printable HTML report's first page: order, side, findings, the main
figures, the key frame with its outlines, and the comparisons of this patient's sessions.
"""

from __future__ import annotations

import io
import time
from typing import Any


def _fmt(v: Any, nd: int = 1, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return f"{v:.{nd}f}{unit}"
    return str(v)


def render_pdf(entry: Any, comparisons: list[dict[str, Any]]) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    if entry.protocol == "injection":  # the procedure record (edge_service/procedure/report.py)
        from edge_service.procedure.report import render_pdf as render_procedure_pdf

        return render_procedure_pdf(entry)
    r = entry.result() or {}
    st = getSampleStyleSheet()
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, title=f"dgs-edge report {entry.id}",
                            leftMargin=18 * mm, rightMargin=18 * mm)  # fmt: skip

    def esc(s: Any) -> str:
        return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    story: list[Any] = [
        Paragraph("Deep gluteal space — dynamic ultrasound report", st["Title"]),
        Paragraph(
            f"Order {esc(entry.order.accession_number)} · patient {esc(entry.order.patient_id)} · "
            f"{esc(entry.side)} side · protocol {esc(entry.protocol)} · "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(entry.started_t))} · "
            f"session {esc(entry.id)}",
            st["Normal"],
        ),
        Spacer(1, 4 * mm),
        Paragraph("Findings", st["Heading2"]),
    ]
    for f in r.get("findings") or []:
        story.append(Paragraph("• " + esc(f), st["Normal"]))
    nerve, calc, gl = r.get("nerve") or {}, r.get("calcification") or {}, r.get("gliding") or {}
    rows = [
        ["Nerve AP diameter", _fmt(nerve.get("ap_diameter_mm"), 1, " mm")],
        ["Nerve width", _fmt(nerve.get("width_mm"), 1, " mm")],
        ["Nerve CSA", _fmt(nerve.get("csa_mm2"), 0, " mm²")],
        ["Calcification", _fmt(calc.get("present"))],
        ["Calcification long axis", _fmt(calc.get("long_axis_mm"), 1, " mm")],
        ["Nerve–calcification distance", _fmt(calc.get("nerve_distance_mm"), 1, " mm")],
        ["Gliding excursion", _fmt(gl.get("excursion_mm"), 2, " mm")],
        ["Gliding per 10° internal rotation", _fmt(gl.get("per_10deg_ir_mm"), 2, " mm")],
        ["Gliding restricted", _fmt(gl.get("restricted"))],
    ]
    t = Table(rows, colWidths=[75 * mm, 50 * mm])
    t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                           ("FONTSIZE", (0, 0), (-1, -1), 9)]))  # fmt: skip
    story += [Spacer(1, 3 * mm), t, Spacer(1, 4 * mm)]
    key = entry.path / "keyframe.png"
    if key.exists():
        story += [Paragraph("Key frame (nerve green, calcification orange)", st["Heading3"]),
                  Image(str(key), width=110 * mm, height=82 * mm, kind="proportional")]  # fmt: skip
    for c in comparisons:
        title = "Contralateral comparison" if c.get("mode") == "contralateral" else "Follow-up"
        story.append(Paragraph(title, st["Heading2"]))
        for s in c.get("summary") or []:
            story.append(Paragraph("• " + esc(s), st["Normal"]))
    dq = r.get("data_quality") or {}
    story += [
        Spacer(1, 4 * mm),
        Paragraph(
            f"Data quality: {dq.get('frames_recorded', dq.get('n_frames'))} frames recorded, "
            f"{dq.get('frames_analysed', dq.get('n_frames'))} analysed, "
            f"{dq.get('dropped_for_detection', 0)} dropped for detection, "
            f"{dq.get('dropped_by_source', 0)} lost by the source, "
            f"{dq.get('frozen_frames', 0)} frozen.",
            st["Normal"],
        ),
    ]
    for lim in r.get("limits") or []:
        story.append(Paragraph(esc(lim), st["Italic"]))
    doc.build(story)
    return buf.getvalue()
