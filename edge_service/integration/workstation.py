"""The workstation's order picker: `GET /api/v1/orders` (the worklist's current orders, or
manual entry when no worklist is configured) and the hook that puts the chosen order (from
the worklist, else typed in) into the session's DICOM before recording starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from edge_service.dicomnet.queue import ForwardQueue
from edge_service.dicomnet.settings import DicomSettings
from edge_service.dicomnet.worklist import WorklistPoller
from edge_service.integration.corrections import mqtt_result
from edge_service.integration.export import export_session
from edge_service.integration.order import Order
from edge_service.integration.session import attach_order


def install(service: Any, poller: WorklistPoller | None, uid_root: str = "2.25",
            dicom: DicomSettings | None = None, queue: ForwardQueue | None = None) -> None:  # fmt: skip
    """Give a LiveService the worklist, the order hook (called by its `start`) and the
    export hook (called by its `publish`: SR + PDF written, everything queued to PACS)."""
    settings = dicom or DicomSettings(uid_root=uid_root)

    def export(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        full = export_session(path, settings, queue)
        return full, mqtt_result(full, settings.mqtt_identifiers)

    service.export_result = export
    service.forward_queue = queue

    def attach(meta: Any, accession_number: str, patient_id: str) -> None:
        order = None
        if poller is not None:
            order = next((o for o in poller.orders() if o.accession_number == accession_number
                          and o.patient_id == patient_id), None)  # fmt: skip
        if order is None:
            order = Order(accession_number, patient_id, source="manual")
        attach_order(meta, order, uid_root)

    service.worklist = poller
    service.attach_order = attach


def register_orders(app: FastAPI, service: Any) -> None:
    register_destinations(app, service)

    @app.get("/api/v1/orders", summary="orders to pick from (worklist), or manual entry")
    async def orders(refresh: bool = False) -> dict[str, Any]:
        poller: WorklistPoller | None = getattr(service, "worklist", None)
        if poller is None:
            return {"source": "manual", "orders": [], "worklist": None}
        items = poller.poll_once() if refresh else poller.orders()
        return {"source": "worklist", "orders": [o.to_dict() for o in items],
                "worklist": poller.status()}  # fmt: skip


def install_from_config(service: Any, cfg: Any) -> None:
    """Wire `[worklist]` and `[dicom]` of the appliance config into a LiveService."""
    poller = None
    if cfg.worklist.url:
        poller = WorklistPoller(cfg.worklist)
        poller.start()
    queue = None
    if cfg.dicom.destinations:
        queue = ForwardQueue(cfg.session.state_dir / "dicom-forward.sqlite", cfg.dicom)
        queue.start()
    install(service, poller, cfg.dicom.uid_root, cfg.dicom, queue)


def register_destinations(app: FastAPI, service: Any) -> None:
    @app.get("/api/v1/destinations", summary="PACS destinations: sent, pending, parked, last error")
    async def destinations() -> dict[str, Any]:
        q: ForwardQueue | None = getattr(service, "forward_queue", None)
        return {"destinations": q.status() if q is not None else {}}

    @app.post("/api/v1/destinations/retry", summary="requeue parked items (after a fix)")
    async def retry() -> dict[str, Any]:
        q: ForwardQueue | None = getattr(service, "forward_queue", None)
        return {"requeued": q.retry_parked() if q is not None else 0}
