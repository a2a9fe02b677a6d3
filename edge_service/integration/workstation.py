"""The workstation's order picker: `GET /api/v1/orders` (the worklist's current orders, or
manual entry when no worklist is configured), the hook that puts the chosen order (from
the worklist, else typed in) into the session's DICOM before recording starts, the
destinations' status, and corrections of published sessions
(`POST /api/v1/sessions/{id}/correct`, a thin layer over integration.corrections)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from edge_service.dicomnet.queue import ForwardQueue
from edge_service.dicomnet.settings import DicomSettings
from edge_service.dicomnet.worklist import WorklistPoller
from edge_service.integration.corrections import correct_session, mqtt_result
from edge_service.integration.delivery import HospitalDelivery
from edge_service.integration.export import export_session
from edge_service.integration.order import Order
from edge_service.integration.session import attach_order


def install(service: Any, poller: WorklistPoller | None, uid_root: str = "2.25",
            dicom: DicomSettings | None = None, queue: ForwardQueue | None = None,
            delivery: HospitalDelivery | None = None) -> None:  # fmt: skip
    """Give a LiveService the worklist, the order hook (called by its `start`) and the
    export hook (called by its `publish`: SR + PDF written, everything queued to PACS, and
    the FHIR bundle queued when `delivery` has a FHIR server)."""
    settings = dicom or (
        delivery.dicom if delivery is not None else DicomSettings(uid_root=uid_root)
    )

    def export(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        if delivery is not None:
            return delivery.export(path)
        full = export_session(path, settings, queue)
        return full, mqtt_result(full, settings.mqtt_identifiers)

    service.export_result = export
    service.forward_queue = delivery if delivery is not None else queue
    service.hospital_delivery = delivery
    service.dicom_settings = settings

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
    register_corrections(app, service)

    @app.get("/api/v1/orders", summary="orders to pick from (worklist), or manual entry")
    async def orders(refresh: bool = False) -> dict[str, Any]:
        poller: WorklistPoller | None = getattr(service, "worklist", None)
        if poller is None:
            return {"source": "manual", "orders": [], "worklist": None}
        items = poller.poll_once() if refresh else poller.orders()
        return {"source": "worklist", "orders": [o.to_dict() for o in items],
                "worklist": poller.status()}  # fmt: skip


def install_from_config(service: Any, cfg: Any) -> None:
    """Wire `[worklist]`, `[dicom]` and `[fhir]` of the appliance config into a LiveService.

    The queues are the service's (Service.open made them the active delivery): one set of
    sender threads per state dir, whichever path publishes."""
    from edge_service.integration.hook import active, open_delivery

    poller = None
    if cfg.worklist.url:
        poller = WorklistPoller(cfg.worklist)
        poller.start()
    delivery = active() or open_delivery(cfg)
    install(service, poller, cfg.dicom.uid_root, cfg.dicom, delivery=delivery)
    service.site, service.device = cfg.mqtt.site, cfg.mqtt.device


def register_destinations(app: FastAPI, service: Any) -> None:
    @app.get("/api/v1/destinations", summary="PACS destinations: sent, pending, parked, last error")
    async def destinations() -> dict[str, Any]:
        q: ForwardQueue | None = getattr(service, "forward_queue", None)
        return {"destinations": q.status() if q is not None else {}}

    @app.post("/api/v1/destinations/retry", summary="requeue parked items (after a fix)")
    async def retry() -> dict[str, Any]:
        q: ForwardQueue | None = getattr(service, "forward_queue", None)
        return {"requeued": q.retry_parked() if q is not None else 0}


class CorrectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    side: Literal["left", "right"] | None = None
    reanalyse: bool = True


def _slug(service: Any, name: str) -> str:
    """The publisher's site/device (the `supersedes` msg_id must be the one it published)."""
    pub = getattr(service, "publisher", None)
    s = getattr(pub, "s", None)
    default = {"site": "site-a", "device": "dgs-01"}[name]
    return str(getattr(s, name, None) or getattr(service, name, default))


def register_corrections(app: FastAPI, service: Any) -> None:
    from edge_service.live.service import Conflict

    @app.post("/api/v1/sessions/{sid}/correct",
              summary="correct a published session: version n+1 to MQTT, PACS and FHIR")  # fmt: skip
    async def correct(sid: str, req: CorrectRequest) -> dict[str, Any]:
        e = service.get(sid)
        if not e.published:
            raise Conflict(f"session {sid} is not published yet; relabel it instead")

        def run() -> tuple[dict[str, Any], str | None]:
            from edge_service.analysis.session import analyze_session

            return correct_session(
                e.path,
                site=_slug(service, "site"),
                device=_slug(service, "device"),
                settings=getattr(service, "dicom_settings", None) or DicomSettings(),
                delivery=getattr(service, "hospital_delivery", None),
                side=req.side,
                # Same side without reanalyse: nothing to do (InputError -> 422).
                reanalyse=(
                    lambda p: analyze_session(
                        p, detector=service.detector, settings=service.s.analysis
                    )
                )
                if req.reanalyse or (req.side is not None and req.side != e.side)
                else None,
                publisher=service.publisher,
            )

        full, msg_id = await asyncio.to_thread(run)
        e._result = full
        e.side = str(full.get("side", e.side))
        return {"id": sid, "version": full["version"], "supersedes": full["supersedes"],
                "msg_id": msg_id, "side": e.side}  # fmt: skip
