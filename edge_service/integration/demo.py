"""`dgs-edge demo --worklist ... --pacs ... [--fhir URL]`: the first worklist order scanned on
both sides (phantom + virtual clip, the normal demo chain). Each side's cine, SR and PDF are
written and queued durably for every PACS destination (and its FHIR bundle for the FHIR
server) *before* its result is published, through the same hook as the headless run, so the
MQTT result carries the order (accession number) and the DICOM references."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_service.demo import DEVICE, SITE, DemoOptions, DemoOutcome, run_demo
from edge_service.dicomnet.settings import DicomSettings, WorklistSettings
from edge_service.dicomnet.worklist import WorklistError, query_worklist
from edge_service.errors import InputError
from edge_service.integration import hook
from edge_service.integration.delivery import HospitalDelivery
from edge_service.integration.fhirsettings import FhirSettings
from edge_service.integration.order import Order
from edge_service.integration.session import attach_order
from edge_service.integration.uids import make_uid
from edge_service.pipeline import SessionProgress

log = logging.getLogger(__name__)


@dataclass
class HospitalOutcome:
    order: Order
    sides: dict[str, dict[str, Any]] = field(default_factory=dict)  # side -> result
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    delivered: bool = False
    outcomes: dict[str, DemoOutcome] = field(default_factory=dict)


def first_order(worklist_url: str, calling_aet: str = "DGSEDGE") -> Order:
    ans = query_worklist(WorklistSettings(url=worklist_url, calling_aet=calling_aet))
    if not ans.orders:
        raise WorklistError(f"worklist {worklist_url} has no orders"
                            + (f" ({len(ans.skipped)} malformed skipped)" if ans.skipped else ""))  # fmt: skip
    return ans.orders[0]


def run_hospital_demo(
    base: DemoOptions,
    *,
    worklist_url: str | None,
    destinations: list[str],
    uid_root: str = "2.25",
    order: Order | None = None,
    send_timeout_s: float = 120.0,
    progress: Callable[[str, SessionProgress], None] | None = None,
    fhir_url: str | None = None,
) -> HospitalOutcome:
    settings = DicomSettings(uid_root=uid_root, destinations=destinations)
    if order is None:
        if worklist_url is None:
            raise InputError("no order: give --worklist (or an order)")
        order = first_order(worklist_url, settings.calling_aet)
    if not order.study_instance_uid:
        # Both sides of one order belong to one study.
        order = dataclasses.replace(order, study_instance_uid=make_uid(uid_root))
    out = base.out_dir
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty; choose a new --out folder")
    delivery = HospitalDelivery(settings, FhirSettings(url=fhir_url), out / ".state",
                                site=SITE, device=DEVICE, scope=out)  # fmt: skip
    res = HospitalOutcome(order)
    delivery.start()
    hook.activate(delivery)
    try:
        for side in ("left", "right"):
            o = order

            def prep(meta: Any, o: Order = o) -> None:
                attach_order(meta, o, uid_root)

            opts = dataclasses.replace(base, out_dir=out / side, side=side, prepare_meta=prep)
            cb = (lambda p, s=side: progress(s, p)) if progress else None  # type: ignore[misc]
            outcome = run_demo(opts, progress=cb)
            res.outcomes[side] = outcome
            # Exported by the hook before publishing; again here (idempotent: same files, same
            # queue rows) for a run that published nothing.
            res.sides[side] = delivery.export(out / side)[0]
        res.delivered = delivery.drain(send_timeout_s)
        res.destinations = delivery.status()
    finally:
        hook.close_delivery(delivery)
    return res


def demo_paths(out: Path) -> list[Path]:
    return [
        out / s / n for s in ("left", "right") for n in ("cine.dcm", "sr-v1.dcm", "report-v1.dcm")
    ]
