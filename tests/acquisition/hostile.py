"""Hostile DICOM files for the robustness tests: real vendor files from pydicom-data with
one header claim falsified, written with pydicom (the reproducers of issue 12)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian


def vendor(name: str) -> Path:
    return Path(str(get_testdata_file(name)))


def rewrite(name: str, out: Path, edit: Callable[[Dataset], None]) -> Path:
    """Read vendor file `name`, apply `edit` to its header, write it to `out` unchanged else."""
    ds = pydicom.dcmread(vendor(name))
    edit(ds)
    ds.save_as(out)
    return out


def set_frames(value: object) -> Callable[[Dataset], None]:
    def edit(ds: Dataset) -> None:
        if value is None:
            if "NumberOfFrames" in ds:
                del ds.NumberOfFrames
        else:
            ds.NumberOfFrames = value

    return edit


def region(
    dtype: int,
    fmt: int,
    units: tuple[int, int],
    delta_cm: tuple[float, float],
    box: tuple[int, int, int, int] = (0, 0, 799, 599),
) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat = fmt
    r.RegionDataType = dtype
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
    r.PhysicalUnitsXDirection, r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX, r.PhysicalDeltaY = delta_cm
    return r


def set_regions(*regions: Dataset) -> Callable[[Dataset], None]:
    def edit(ds: Dataset) -> None:
        ds.SequenceOfUltrasoundRegions = Sequence(list(regions))

    return edit


def mislabel_deflate(name: str | Path, out: Path) -> Path:
    """A plain explicit-VR file whose meta says 'Deflated Explicit VR Little Endian'."""
    ds = pydicom.dcmread(vendor(name) if isinstance(name, str) else name)
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    meta = FileMetaDataset(ds.file_meta)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    write_file_meta_info(fp, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    out.write_bytes(fp.getvalue() + body.getvalue())
    return out


def deflated(name: str, out: Path) -> Path:
    """A genuinely deflated copy (pydicom writes deflate when the meta says so)."""
    ds = pydicom.dcmread(vendor(name))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(out, enforce_file_format=True)
    return out


def relabel(name: str, out: Path, uid: str) -> Path:
    ds = pydicom.dcmread(vendor(name))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    data = bytearray()
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    meta = FileMetaDataset(ds.file_meta)
    meta.TransferSyntaxUID = uid
    write_file_meta_info(fp, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    data += fp.getvalue() + body.getvalue()
    out.write_bytes(bytes(data))
    return out
