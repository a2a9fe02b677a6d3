"""The hospital hook of the headless chain: `recovery.publish_session` (which both the live
pipeline and recovery call) asks `before_publish` for the result to publish. With a
HospitalDelivery active (the service opened one from `[dicom]`/`[fhir]`), the SR, PDF and
FHIR bundle are written and queued first and the published result carries the order and
the DICOM UIDs; without one the result goes out unchanged.

One delivery per process (the service owns the state dir's queues; a second set of sender
threads on the same queue files would send rows twice), so it is a module-level slot set by
`open_delivery` / cleared by `close_delivery`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_service.integration.delivery import HospitalDelivery

log = logging.getLogger(__name__)

_lock = threading.Lock()
_active: HospitalDelivery | None = None


def activate(delivery: HospitalDelivery | None) -> None:
    global _active
    with _lock:
        _active = delivery


def active() -> HospitalDelivery | None:
    return _active


def open_delivery(cfg: Any) -> HospitalDelivery | None:
    """The service's delivery from its config (None when nothing is configured), started
    and made the active one."""
    if not cfg.dicom.destinations and not cfg.fhir.url:
        return None
    from edge_service.integration.delivery import HospitalDelivery

    d = HospitalDelivery.from_config(cfg)
    if d is not None:
        d.start()
        activate(d)
        log.info("hospital delivery: %s", ", ".join(d.dicom.destinations + d.fhir.destinations))
    return d


def close_delivery(d: HospitalDelivery | None) -> None:
    global _active
    if d is None:
        return
    with _lock:
        if _active is d:
            _active = None
    # What was queued moments ago (the last session of `run --sessions N`) gets its try
    # now rather than at the next start; what fails stays queued.
    d.close(flush=True)


def before_publish(out_dir: Path, result: Mapping[str, Any]) -> Mapping[str, Any]:
    """The result to publish for the session in `out_dir` (see the module docstring).

    Raises what the export raises (OSError for a full disk: recovery retries the session
    later; a DgsError for a recording it cannot export: recovery parks it with the reason)."""
    d = _active
    if d is None or not d.covers(out_dir):
        return result
    _full, view = d.export(out_dir)
    return view
