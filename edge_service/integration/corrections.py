"""Corrections: a re-analysis or relabel of a finished session becomes result version n+1.

The new version gets a new MQTT msg_id (payloads.result_msg_id with the version) and names
the one it corrects in `supersedes`; a new SR (Predecessor Documents Sequence -> the earlier
SR) and PDF go to PACS; the FHIR bundle of version n+1 carries `status: amended` and updates
the filed resources (conditional PUT). Earlier versions stay on disk as result-v{n}.json."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_service.analysis.result import write_json_atomic
from edge_service.dicomnet.queue import ForwardQueue
from edge_service.dicomnet.settings import DicomSettings
from edge_service.integration.export import export_session
from edge_service.integration.order import Order, mqtt_view
from edge_service.mqtt.payloads import result_msg_id


def supersede(recording: Path, new_result: Mapping[str, Any], *, site: str, device: str,
              settings: DicomSettings, queue: ForwardQueue | None = None) -> dict[str, Any]:  # fmt: skip
    """Store `new_result` as the next version of the session's result and export it."""
    rpath = recording / "result.json"
    old = json.loads(rpath.read_text("utf-8"))
    n = int(old.get("version") or 1)
    sid = str(old["session_id"])
    if str(new_result.get("session_id", sid)) != sid:
        raise ValueError("a correction must be of the same session")
    shutil.copyfile(rpath, recording / f"result-v{n}.json")
    doc = {k: v for k, v in new_result.items() if k not in ("order", "dicom")}
    doc.update(version=n + 1, supersedes=result_msg_id(site, device, sid, version=n))
    write_json_atomic(rpath, doc)
    return export_session(recording, settings, queue)


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
