"""Everything that leaves the appliance for the hospital besides MQTT, for one result version:
SR + PDF written next to the cine, cine + SR + PDF queued for every `[dicom]` destination,
and the FHIR transaction Bundle queued for the `[fhir]` server. Both queues are the durable
ForwardQueue (crash-safe, back-off, parked with the reason, never deleted).

`HospitalDelivery.export` is what every path calls before it publishes the result, so the
MQTT result carries the order (as `[dicom] mqtt_identifiers` allows) and the DICOM UIDs that
were sent: the headless run and recovery (through edge_service.integration.hook), the
workstation's publish, the demo and corrections."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_service.analysis.result import write_json_atomic
from edge_service.dicomnet.queue import ForwardQueue
from edge_service.dicomnet.settings import DicomSettings
from edge_service.integration.corrections import mqtt_result
from edge_service.integration.export import export_session
from edge_service.integration.fhirnet import FhirSettings, send_bundle_file
from edge_service.mqtt.fhir import bundle

log = logging.getLogger(__name__)

DICOM_QUEUE = "dicom-forward.sqlite"
FHIR_QUEUE = "fhir-forward.sqlite"


def fhir_name(version: int) -> str:
    return f"fhir-v{version}.json"


def fhir_key(session_id: str, version: int) -> str:
    """The FHIR row's key in the queue (its `sop_uid` column): one per result version."""
    return f"fhir:{session_id}:v{version}"


class HospitalDelivery:
    def __init__(self, dicom: DicomSettings, fhir: FhirSettings, state_dir: Path, *,
                 site: str, device: str, scope: Path | None = None) -> None:  # fmt: skip
        """scope: only sessions under this folder are exported by the publish hook (the
        demo's --out; None: every session the process publishes)."""
        self.dicom, self.fhir = dicom, fhir
        self.scope = None if scope is None else scope.resolve()
        self.site, self.device = site, device
        self.dicom_queue = (
            ForwardQueue(state_dir / DICOM_QUEUE, dicom) if dicom.destinations else None
        )
        self.fhir_queue: ForwardQueue | None = None
        if fhir.url:
            self.fhir_queue = ForwardQueue(
                state_dir / FHIR_QUEUE, fhir, sender=lambda _dest, p: send_bundle_file(fhir, p)
            )

    @classmethod
    def from_config(cls, cfg: Any) -> HospitalDelivery | None:
        """From an AppConfig; None when neither PACS destinations nor a FHIR url are set."""
        if not cfg.dicom.destinations and not cfg.fhir.url:
            return None
        return cls(cfg.dicom, cfg.fhir, cfg.session.state_dir, site=cfg.mqtt.site,
                   device=cfg.mqtt.device)  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.dicom_queue is not None or self.fhir_queue is not None

    def covers(self, recording: Path) -> bool:
        return self.scope is None or self.scope in recording.resolve().parents

    def export(self, recording: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """Write SR/PDF/bundle of the current result version and queue them.

        Returns (the full result, as written to result.json, with `order` and `dicom`; the
        result as it may be published over MQTT). Idempotent per version."""
        full = export_session(recording, self.dicom, self.dicom_queue)
        if self.fhir_queue is not None:
            self.queue_fhir(recording, full)
        return full, mqtt_result(full, self.dicom.mqtt_identifiers)

    def queue_fhir(self, recording: Path, result: Mapping[str, Any]) -> Path:
        """The bundle of this version (with the patient: the FHIR server is a hospital
        system) to a file and into the queue; an older unsent version is superseded."""
        assert self.fhir_queue is not None
        sid = str(result["session_id"])
        version = int(result.get("version", 1) or 1)
        path = recording / fhir_name(version)
        if not path.exists():
            doc = bundle(self.site, self.device, sid, result)
            write_json_atomic(path, doc)
        key = fhir_key(sid, version)
        self.fhir_queue.enqueue(sid, "fhir", key, path)
        self.fhir_queue.supersede(sid, "fhir", key)
        return path

    def queues(self) -> list[ForwardQueue]:
        return [q for q in (self.dicom_queue, self.fhir_queue) if q is not None]

    def start(self) -> None:
        for q in self.queues():
            q.start()

    def drain(self, timeout_s: float) -> bool:
        """Send what is due until nothing is pending (True) or the deadline (False)."""
        return all(q.drain(timeout_s) for q in self.queues())

    def status(self) -> dict[str, dict[str, Any]]:
        """Per destination (PACS URLs and the FHIR base URL): sent, pending, parked..."""
        out: dict[str, dict[str, Any]] = {}
        for q in self.queues():
            out.update(q.status())
        return out

    def items(self, session_id: str | None = None) -> list[dict[str, Any]]:
        return [i for q in self.queues() for i in q.items(session_id)]

    def retry_parked(self) -> int:
        return sum(q.retry_parked() for q in self.queues())

    def close(self, flush: bool = False) -> None:
        for q in self.queues():
            q.close(flush=flush)


def read_result(recording: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((recording / "result.json").read_text("utf-8"))
    return doc
