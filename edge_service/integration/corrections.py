"""Corrections: a re-analysis or relabel of a finished session becomes result version n+1.

The new version gets a new MQTT msg_id (payloads.result_msg_id with the version) and names
the one it corrects in `supersedes`; a new SR (Predecessor Documents Sequence -> the earlier
SR) and PDF go to PACS; the FHIR bundle of version n+1 carries `status: amended` and updates
the filed resources (conditional PUT). Earlier versions stay on disk as result-v{n}.json.

`correct_session` is the one entry point of the CLI (`dgs-edge correct`) and the
workstation (`POST /api/v1/sessions/{id}/correct`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge_service.analysis.result import write_json_atomic
from edge_service.dicomnet.queue import ForwardQueue
from edge_service.dicomnet.settings import DicomSettings
from edge_service.errors import InputError
from edge_service.integration.export import export_session
from edge_service.integration.order import Order, mqtt_view
from edge_service.mqtt.payloads import result_msg_id

if TYPE_CHECKING:
    from edge_service.integration.delivery import HospitalDelivery


class ResultPublisher(Protocol):
    def result(self, session_id: str, result_doc: Any) -> str: ...


def _read(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path.parent}: no result to correct (not analysed yet)") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable result ({exc})") from None
    if not isinstance(doc, dict) or not doc.get("session_id"):
        raise InputError(f"{path}: not a session result")
    return doc


def supersede(recording: Path, new_result: Mapping[str, Any], *, site: str, device: str,
              settings: DicomSettings, queue: ForwardQueue | None = None,
              delivery: HospitalDelivery | None = None,
              previous: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Store `new_result` as the next version of the session's result and export it.

    previous: the version being corrected when result.json was already overwritten (a
    re-analysis writes it); default: result.json as it is."""
    rpath = recording / "result.json"
    old = dict(previous) if previous is not None else _read(rpath)
    n = int(old.get("version") or 1)
    sid = str(old["session_id"])
    if str(new_result.get("session_id", sid)) != sid:
        raise InputError("a correction must be of the same session")
    keep = recording / f"result-v{n}.json"
    if not keep.exists():
        write_json_atomic(keep, old)
    doc = {k: v for k, v in new_result.items() if k not in ("order", "dicom")}
    doc.update(version=n + 1, supersedes=result_msg_id(site, device, sid, version=n))
    write_json_atomic(rpath, doc)
    if delivery is not None:
        return delivery.export(recording)[0]
    return export_session(recording, settings, queue)


def correct_session(
    recording: Path,
    *,
    site: str,
    device: str,
    settings: DicomSettings,
    delivery: HospitalDelivery | None = None,
    side: str | None = None,
    reanalyse: Callable[[Path], dict[str, Any]] | None = None,
    publisher: ResultPublisher | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Relabel the side and/or re-analyse a finished (published) session as version n+1:
    written, exported (new SR + PDF to PACS, amended FHIR bundle) and published.

    side: the corrected side (the analysis depends on it, so `reanalyse` is required);
    reanalyse(recording): runs the analysis again and returns the new result (e.g. after a
    model update). Returns (the full new result, its MQTT msg_id or None)."""
    from edge_service.recording.meta import read_meta

    rpath = recording / "result.json"
    old = _read(rpath)
    meta_path = recording / "session.json"
    meta = read_meta(meta_path)
    if side is not None and side not in ("left", "right"):
        raise InputError(f"side must be 'left' or 'right', got {side!r}")
    relabel = side is not None and side != meta.side
    if not relabel and reanalyse is None:
        raise InputError("nothing to correct: give a different side and/or re-analyse")
    if reanalyse is None:
        raise InputError("a new side needs a re-analysis (the side sets the image direction)")
    # The version being corrected is kept before anything overwrites result.json.
    n = int(old.get("version") or 1)
    keep = recording / f"result-v{n}.json"
    if not keep.exists():
        write_json_atomic(keep, old)
    if relabel:
        assert side is not None
        meta.side = side
        meta.extra.setdefault("corrections", []).append({"from_side": old.get("side"),
                                                         "to_side": side, "version": n + 1})  # fmt: skip
        write_json_atomic(meta_path, meta.to_dict())
    new = reanalyse(recording)
    full = supersede(recording, new, site=site, device=device, settings=settings,
                     delivery=delivery, previous=old)  # fmt: skip
    msg_id = None
    if publisher is not None:
        msg_id = publisher.result(
            str(full["session_id"]), mqtt_result(full, settings.mqtt_identifiers)
        )
    return full, msg_id


def mqtt_result(result: Mapping[str, Any], policy: str) -> dict[str, Any]:
    """The result as it may be published: the order reduced to what `mqtt_identifiers`
    allows (default: the accession number only)."""
    doc = dict(result)
    o = doc.pop("order", None)
    if isinstance(o, Mapping) and o.get("accession_number") and o.get("patient_id"):
        view = mqtt_view(Order.from_dict(o), policy)
        if view:
            doc["order"] = view
    return doc
