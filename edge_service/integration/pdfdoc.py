"""The session report as DICOM Encapsulated PDF, in the cine's study. The PDF itself is the
workstation's reportlab report (edge_service/workstation/pdf.py), not a second renderer."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from edge_service import __version__
from edge_service.integration.order import order_of

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
_PATIENT_STUDY = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate",
                  "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                  "AccessionNumber", "ReferringPhysicianName", "StudyDescription")  # fmt: skip


def render_report_pdf(recording: Path, result: Mapping[str, Any], extra: Mapping[str, Any] | None,
                      started_t: float, protocol: str) -> bytes:  # fmt: skip
    from edge_service.workstation.pdf import render_pdf

    o = order_of(extra)
    entry = SimpleNamespace(
        id=str(result.get("session_id", "")),
        side=str(result.get("side", "")),
        protocol=protocol,
        started_t=started_t,
        path=recording,
        order=SimpleNamespace(
            accession_number=o.accession_number if o else "—",
            patient_id=o.patient_id if o else "—",
        ),
        result=lambda: dict(result),
    )
    return render_pdf(entry, [])


def build_encapsulated_pdf(cine_path: Path, pdf: bytes, *, series_uid: str, sop_uid: str,
                           version: int = 1, title: str = "Dynamic US report") -> Dataset:  # fmt: skip
    cine = dcmread(cine_path, stop_before_pixels=True)
    now = _dt.datetime.now(_dt.UTC)
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF)
    fm.MediaStorageSOPInstanceUID = UID(sop_uid)
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = fm
    for kw in _PATIENT_STUDY:
        if kw in cine:
            setattr(ds, kw, cine.data_element(kw).value)  # type: ignore[union-attr]
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "DOC"
    ds.ConversionType = "SYN"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 200 + version
    ds.SeriesDescription = f"dgs-edge report v{version}"
    ds.InstanceNumber = version
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.Manufacturer = "dgs-edge"
    ds.SoftwareVersions = __version__
    ds.BurnedInAnnotation = "YES"  # the PDF shows the order and patient id
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds
