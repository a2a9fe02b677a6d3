"""After analysis: write the SR and the Encapsulated PDF next to the cine, put the DICOM
identity (and the order) into the result, and queue cine + SR + PDF for every destination.

Idempotent: a re-run for the same result version reuses the files and UIDs already written
and the queue ignores instances it already holds, so nothing is filed twice as new."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydicom import dcmread

from edge_service.dicomnet.queue import ForwardQueue
from edge_service.dicomnet.settings import DicomSettings
from edge_service.integration.pdfdoc import build_encapsulated_pdf, render_report_pdf
from edge_service.integration.session import result_blocks
from edge_service.integration.sr import build_sr
from edge_service.integration.uids import make_uid
from edge_service.recording.meta import SessionMeta, write_json_atomic

log = logging.getLogger(__name__)

CINE = "cine.dcm"


def sr_name(version: int) -> str:
    return f"sr-v{version}.dcm"


def pdf_name(version: int) -> str:
    return f"report-v{version}.dcm"


def _uids_of(path: Path) -> tuple[str, str] | None:
    if not path.exists():
        return None
    ds = dcmread(
        path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "SOPInstanceUID"]
    )
    return str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def export_session(recording: Path, settings: DicomSettings, queue: ForwardQueue | None = None,
                   *, result_name: str = "result.json") -> dict[str, Any]:  # fmt: skip
    """Build SR + PDF for the result's version, update the result, queue everything.

    Returns the updated result document."""
    meta = SessionMeta.from_dict(json.loads((recording / "session.json").read_text("utf-8")))
    rpath = recording / result_name
    result: dict[str, Any] = json.loads(rpath.read_text("utf-8"))
    version = int(result.get("version", 1) or 1)
    cine_path = recording / CINE
    cine = dcmread(cine_path, stop_before_pixels=True)

    sr_path = recording / sr_name(version)
    sr_uids = _uids_of(sr_path)
    if sr_uids is None:
        sr_uids = (make_uid(settings.uid_root), make_uid(settings.uid_root))
        previous = []
        prev_path = recording / sr_name(version - 1)
        if version > 1 and prev_path.exists():
            previous = [dcmread(prev_path)]
        sr = build_sr(cine_path, result, series_uid=sr_uids[0], sop_uid=sr_uids[1],
                      version=version, previous=previous, extra=meta.extra,
                      uid_root=settings.uid_root)  # fmt: skip
        sr.save_as(sr_path, enforce_file_format=True)
    pdf_path = recording / pdf_name(version)
    pdf_uids = _uids_of(pdf_path)
    if pdf_uids is None:
        pdf_uids = (make_uid(settings.uid_root), make_uid(settings.uid_root))
        pdf = render_report_pdf(recording, result, meta.extra, meta.started_t, meta.protocol)
        doc = build_encapsulated_pdf(cine_path, pdf, series_uid=pdf_uids[0], sop_uid=pdf_uids[1],
                                     version=version)  # fmt: skip
        doc.save_as(pdf_path, enforce_file_format=True)

    dicom = {
        "study_instance_uid": str(cine.StudyInstanceUID),
        "cine": {"series_instance_uid": str(cine.SeriesInstanceUID),
                 "sop_instance_uid": str(cine.SOPInstanceUID)},
        "sr": {"series_instance_uid": sr_uids[0], "sop_instance_uid": sr_uids[1]},
        "pdf": {"series_instance_uid": pdf_uids[0], "sop_instance_uid": pdf_uids[1]},
    }  # fmt: skip
    result.update(result_blocks(meta.extra, dicom))
    write_json_atomic(rpath, result)
    if queue is not None:
        sid = str(result.get("session_id", meta.session_id))
        queue.enqueue(sid, "cine", str(cine.SOPInstanceUID), cine_path)
        queue.enqueue(sid, "sr", sr_uids[1], sr_path)
        queue.enqueue(sid, "pdf", pdf_uids[1], pdf_path)
    log.info("session %s v%d: SR and PDF written, %d destination(s) queued",
             meta.session_id, version, len(settings.destinations) if queue else 0)  # fmt: skip
    return result


def study_of(result: Mapping[str, Any]) -> str | None:
    d = result.get("dicom")
    return (
        str(d["study_instance_uid"])
        if isinstance(d, Mapping) and d.get("study_instance_uid")
        else None
    )
