"""The workstation's order picker: `GET /api/v1/orders` (the worklist's current orders, or
manual entry when no worklist is configured) and the hook that puts the chosen order (from
the worklist, else typed in) into the session's DICOM before recording starts."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from edge_service.dicomnet.worklist import WorklistPoller
from edge_service.integration.order import Order
from edge_service.integration.session import attach_order


def install(service: Any, poller: WorklistPoller | None, uid_root: str = "2.25") -> None:
    """Give a LiveService the worklist and the order hook (called by its `start`)."""

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
    @app.get("/api/v1/orders", summary="orders to pick from (worklist), or manual entry")
    async def orders(refresh: bool = False) -> dict[str, Any]:
        poller: WorklistPoller | None = getattr(service, "worklist", None)
        if poller is None:
            return {"source": "manual", "orders": [], "worklist": None}
        items = poller.poll_once() if refresh else poller.orders()
        return {"source": "worklist", "orders": [o.to_dict() for o in items],
                "worklist": poller.status()}  # fmt: skip
