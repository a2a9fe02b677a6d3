"""The order (from the modality worklist or typed in) that a session is scanned under.

It travels with the session: `SessionMeta.extra["order"]` -> the cine's patient/study
attributes (`apply_to_dataset`, called by recording/cine.py), the result's `order` block, the
SR/PDF and FHIR. MQTT payloads only carry what `[dicom] mqtt_identifiers` allows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pydicom.dataset import Dataset

ORDER_KEY = "order"


@dataclass(frozen=True)
class Order:
    accession_number: str
    patient_id: str
    patient_name: str = ""  # DICOM PN form, Family^Given
    patient_birth_date: str = ""  # YYYYMMDD
    patient_sex: str = ""
    requested_procedure: str = ""
    requested_procedure_id: str = ""
    referring_physician: str = ""  # PN form
    scheduled_datetime: str = ""  # ISO 8601 local time as scheduled
    study_instance_uid: str = ""  # from the worklist when the RIS assigns one
    source: str = "manual"  # "worklist" or "manual"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Order:
        known = cls.__dataclass_fields__
        return cls(**{k: str(v) for k, v in d.items() if k in known and v is not None})


def order_of(extra: Mapping[str, Any] | None) -> Order | None:
    """The order stored in a session's `extra` (None for a pseudonymous session)."""
    if not extra:
        return None
    d = extra.get(ORDER_KEY)
    if not isinstance(d, Mapping) or not d.get("accession_number") or not d.get("patient_id"):
        return None
    return Order.from_dict(d)


def apply_to_dataset(ds: Dataset, extra: Mapping[str, Any] | None) -> None:
    """Put the order's identity into a DICOM header built for a pseudonymous session.

    Without an order the header stays as built (random pseudonym, identity removed)."""
    o = order_of(extra)
    if o is None:
        return
    # UTF-8 so that names from the worklist survive whatever their script.
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.AccessionNumber = o.accession_number[:16]
    ds.PatientID = o.patient_id[:64]
    ds.PatientName = o.patient_name or ""
    ds.PatientBirthDate = o.patient_birth_date
    ds.PatientSex = o.patient_sex if o.patient_sex in ("M", "F", "O") else ""
    ds.ReferringPhysicianName = o.referring_physician or ""
    if o.requested_procedure:
        ds.StudyDescription = o.requested_procedure[:64]
    if o.requested_procedure_id:
        ds.RequestedProcedureID = o.requested_procedure_id[:16]
    if "PatientIdentityRemoved" in ds:
        del ds.PatientIdentityRemoved
    if "DeidentificationMethod" in ds:
        del ds.DeidentificationMethod


def mqtt_view(order: Order | None, policy: str) -> dict[str, str] | None:
    """What of the order may appear in an MQTT payload (`[dicom] mqtt_identifiers`)."""
    if order is None or policy == "none":
        return None
    return {"accession_number": order.accession_number}
