"""The procedure's DICOM SR and Encapsulated PDF through the exam's export pipeline
(edge_service/integration/export.py), on a recorded phantom needle session."""

from __future__ import annotations

import json
from pathlib import Path

from pydicom import dcmread

from edge_service.analysis.result import write_json_atomic
from edge_service.dicomnet.settings import DicomSettings
from edge_service.integration.export import export_session
from edge_service.phantom.needle_session import simulate_needle_session
from edge_service.procedure.result import build_result, validate
from tests.procedure.test_tracker import normal_procedure, run


def _codes(ds: object) -> list[str]:
    out: list[str] = []

    def walk(items: object) -> None:
        for it in items or []:  # type: ignore[attr-defined]
            for key in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
                for cn in it.get(key, []):
                    out.append(str(cn.get("CodeValue") or cn.get("LongCodeValue")))
            walk(it.get("ContentSequence"))

    walk(ds.ContentSequence)  # type: ignore[attr-defined]
    return out


def test_sr_and_pdf_of_a_procedure(tmp_path: Path) -> None:
    rec = simulate_needle_session(
        tmp_path / "rec", "procedure", seed=1, fps=4.0, t0=1000.0, duration_s=2.0
    )
    tr, _ = run(normal_procedure())
    doc = build_result(
        tr, {"session_id": "s-1", "side": "left", "started_t": 1000.0}, locator="scripted"
    )
    write_json_atomic(rec / "result.json", doc)
    meta = json.loads((rec / "session.json").read_text())
    assert meta["protocol"] == "injection"
    out = export_session(rec, DicomSettings())
    validate(out)  # the dicom block added by the export still validates
    sr = dcmread(next(rec.glob("sr-v1.dcm")))
    assert sr.Modality == "SR"
    codes = _codes(sr)
    assert "us-guided-ligament-injection" in codes
    assert codes.count("injection-volume-est") == 2  # one group per injection
    assert "min-tip-nerve-distance" in codes and "tip-in-nerve" in codes
    pdf = dcmread(next(rec.glob("report-v1.dcm")))
    assert bytes(pdf.EncapsulatedDocument).startswith(b"%PDF")
