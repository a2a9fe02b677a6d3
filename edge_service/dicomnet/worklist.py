"""Modality Worklist client: C-FIND (pynetdicom) against the RIS/worklist SCP.

Every answer becomes an `Order`; an answer without accession number or patient id is
skipped and counted (a malformed entry must not hide the good ones). Names are decoded with
the answer's SpecificCharacterSet (the query asks for UTF-8)."""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from edge_service.dicomnet.settings import WorklistSettings
from edge_service.dicomnet.urls import parse_dicom_url
from edge_service.errors import DgsError
from edge_service.integration.order import Order

log = logging.getLogger(__name__)


class WorklistError(DgsError):
    """The worklist SCP is unreachable, rejected the association or failed the query."""


@dataclass
class WorklistAnswer:
    orders: list[Order]
    skipped: list[str] = field(default_factory=list)  # reasons, one per malformed entry


def _query(settings: WorklistSettings, date: str | None) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
               "ReferringPhysicianName", "RequestedProcedureDescription",
               "RequestedProcedureID", "StudyInstanceUID"):  # fmt: skip
        setattr(ds, kw, "")
    sps = Dataset()
    sps.Modality = settings.modality
    sps.ScheduledStationAETitle = settings.station_aet or ""
    sps.ScheduledProcedureStepStartDate = date or ""
    sps.ScheduledProcedureStepStartTime = ""
    sps.ScheduledProcedureStepDescription = ""
    sps.ScheduledProcedureStepID = ""
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def _text(ds: Dataset, kw: str) -> str:
    v = ds.get(kw, "")
    return "" if v is None else str(v).strip()


def _order(ds: Dataset) -> Order:
    sps = ds.get("ScheduledProcedureStepSequence") or [Dataset()]
    step = sps[0]
    date, tm = (
        _text(step, "ScheduledProcedureStepStartDate"),
        _text(step, "ScheduledProcedureStepStartTime"),
    )
    when = ""
    if len(date) == 8 and date.isdigit():
        hhmmss = (tm.split(".")[0] + "000000")[:6] if tm else "000000"
        try:
            when = _dt.datetime.strptime(date + hhmmss, "%Y%m%d%H%M%S").isoformat()
        except ValueError:
            when = ""
    return Order(
        accession_number=_text(ds, "AccessionNumber"),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        requested_procedure=_text(ds, "RequestedProcedureDescription")
        or _text(step, "ScheduledProcedureStepDescription"),
        requested_procedure_id=_text(ds, "RequestedProcedureID"),
        referring_physician=_text(ds, "ReferringPhysicianName"),
        scheduled_datetime=when,
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        source="worklist",
    )


def query_worklist(settings: WorklistSettings, *, date: str | None = None) -> WorklistAnswer:
    """One C-FIND; `date` (YYYYMMDD or a range) filters the scheduled start date."""
    if settings.url is None:
        raise WorklistError("no worklist configured ([worklist] url)")
    url = parse_dicom_url(settings.url)
    ae = AE(ae_title=settings.calling_aet)
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.timeout_s
    try:
        assoc = ae.associate(url.host, url.port, ae_title=url.aet)
    except OSError as exc:
        raise WorklistError(f"worklist {url}: {exc}") from None
    if not assoc.is_established:
        raise WorklistError(f"worklist {url}: association rejected or unreachable")
    answer = WorklistAnswer([])
    failed: str | None = None
    try:
        for status, ident in assoc.send_c_find(
            _query(settings, date), ModalityWorklistInformationFind
        ):
            if not status:
                failed = "no valid response (timeout, or the SCP aborted: is our AET known to it?)"
                break
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):
                if ident is None:
                    answer.skipped.append("pending answer without identifier")
                    continue
                try:
                    o = _order(ident)
                except Exception as exc:  # a malformed element must not lose the others
                    answer.skipped.append(f"undecodable entry: {exc}")
                    continue
                if not o.accession_number or not o.patient_id:
                    answer.skipped.append(
                        f"entry without {'accession number' if not o.accession_number else 'patient id'}"
                    )
                    continue
                answer.orders.append(o)
            elif code != 0x0000:
                failed = f"C-FIND failed with status 0x{code:04X}"
    finally:
        assoc.release()
    if failed:
        raise WorklistError(f"worklist {url}: {failed}")
    for reason in answer.skipped:
        log.warning("worklist %s: skipped an entry (%s)", url, reason)
    answer.orders.sort(key=lambda o: (o.scheduled_datetime, o.accession_number))
    return answer


class WorklistPoller:
    """Polls the worklist every `poll_interval_s` in a daemon thread; `orders()` is the last
    good answer (a failed poll keeps it and records the error for health)."""

    def __init__(self, settings: WorklistSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._orders: list[Order] = []
        self.last_ok_t: float | None = None
        self.last_error: str | None = None
        self.skipped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> list[Order]:
        try:
            ans = query_worklist(self.settings)
        except WorklistError as exc:
            with self._lock:
                self.last_error = str(exc)
            log.warning("%s", exc)
            return self.orders()
        with self._lock:
            self._orders = ans.orders
            self.skipped = len(ans.skipped)
            self.last_ok_t = time.time()
            self.last_error = None
        return ans.orders

    def orders(self) -> list[Order]:
        with self._lock:
            return list(self._orders)

    def status(self) -> dict[str, object]:
        with self._lock:
            return {"url": self.settings.url, "orders": len(self._orders), "skipped": self.skipped,
                    "last_ok_t": self.last_ok_t, "last_error": self.last_error}  # fmt: skip

    def start(self) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self.poll_once()
                self._stop.wait(self.settings.poll_interval_s)

        self._thread = threading.Thread(target=run, name="worklist-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.timeout_s + 1)
