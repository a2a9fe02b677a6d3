"""Write modality worklist `.wl` files (what a RIS hands Orthanc's worklist plugin)."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

MWL_FIND = "1.2.840.10008.5.1.4.31"


def write_wl(folder: Path, name: str, *, accession: str | None, patient_id: str | None,
             patient_name: str = "Doe^Jane", charset: str = "ISO_IR 192",
             procedure: str = "Dynamic US deep gluteal space", referring: str = "House^Gregory",
             date: str = "20261129", time: str = "093000", modality: str = "US",
             study_uid: str | None = None) -> Path:  # fmt: skip
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(MWL_FIND)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = charset
    if accession is not None:
        ds.AccessionNumber = accession
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.ReferringPhysicianName = referring
    ds.RequestedProcedureDescription = procedure
    ds.RequestedProcedureID = "RP" + (accession or "x")[:14]
    ds.StudyInstanceUID = study_uid or generate_uid()
    sps = Dataset()
    sps.Modality = modality
    sps.ScheduledStationAETitle = "DGSEDGE"
    sps.ScheduledProcedureStepStartDate = date
    sps.ScheduledProcedureStepStartTime = time
    sps.ScheduledProcedureStepDescription = procedure
    sps.ScheduledProcedureStepID = "SPS" + (accession or "x")[:13]
    ds.ScheduledProcedureStepSequence = [sps]
    p = folder / f"{name}.wl"
    ds.save_as(p, enforce_file_format=True)
    return p
