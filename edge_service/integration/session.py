"""Tie an order to a session before recording, and the DICOM identity into its result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_service.integration.order import ORDER_KEY, Order
from edge_service.integration.uids import make_uid
from edge_service.recording.meta import SessionMeta

DICOM_KEY = "dicom"


def attach_order(meta: SessionMeta, order: Order | None, uid_root: str) -> None:
    """Before the recording starts: the order's identity and UIDs under `uid_root`.

    The study UID comes from the worklist when the RIS assigned one, so the cine files into
    the study the PACS already expects; both sides of one order share it."""
    meta.study_uid = (order.study_instance_uid if order and order.study_instance_uid
                      else make_uid(uid_root))  # fmt: skip
    meta.series_uid = make_uid(uid_root)
    meta.sop_uid = make_uid(uid_root)
    if order is not None:
        meta.patient_id = order.patient_id
        meta.extra[ORDER_KEY] = order.to_dict()


def result_blocks(meta_extra: Mapping[str, Any], dicom: Mapping[str, Any]) -> dict[str, Any]:
    """The `order` and `dicom` blocks of the result (session-result 1.1, both optional)."""
    out: dict[str, Any] = {DICOM_KEY: dict(dicom)}
    o = meta_extra.get(ORDER_KEY)
    if isinstance(o, Mapping) and o.get("accession_number"):
        out[ORDER_KEY] = {k: v for k, v in o.items() if v}
    return out
