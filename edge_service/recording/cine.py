"""Write `cine.dcm`: a standard US Multi-frame Image any viewer or PACS opens.

The header is built with pydicom; the Pixel Data element is appended by streaming the
frames from the journal, so a long session never needs all frames in memory at once.
MONOCHROME2, 8 bits. By default each frame is compressed with JPEG-LS lossless (one
fragment per frame, encapsulated; ~1.5-3x smaller than native on B-mode, decoded bit-exactly
by pydicom/pyjpegls, dcmtk `dcmdjpls` and any PACS); RLE Lossless and native Explicit VR
Little Endian are the alternatives (`[storage] cine_compression`).
"""

from __future__ import annotations

import datetime as _dt
import io
import itertools
import logging
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)

from edge_service import __version__
from edge_service.errors import InputError
from edge_service.integration.order import apply_to_dataset as apply_order
from edge_service.recording.journal import write_all
from edge_service.recording.meta import SessionMeta, fsync_dir

log = logging.getLogger(__name__)

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
FRAME_TIME_VECTOR_TAG = 0x00181065
LATERALITY = {"left": "L", "right": "R"}
Compression = Literal["jpegls", "rle", "none"]
TRANSFER_SYNTAX = {"jpegls": JPEGLSLossless, "rle": RLELossless, "none": ExplicitVRLittleEndian}
_ITEM = 0xE000FFFE  # (FFFE,E000) as a little-endian uint32 pair of uint16
_SEQ_DELIM = 0xE0DDFFFE


def _dt_fields(t: float) -> tuple[str, str, str]:
    d = _dt.datetime.fromtimestamp(t, tz=_dt.UTC)
    return d.strftime("%Y%m%d"), d.strftime("%H%M%S.%f"), d.strftime("%Y%m%d%H%M%S.%f+0000")


def build_header(
    meta: SessionMeta,
    times: list[float],
    rows: int,
    cols: int,
    compression: Compression = "none",
) -> Dataset:
    n = len(times)
    t0 = times[0]
    date, tm, dtm = _dt_fields(t0)
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = UID(US_MULTIFRAME)
    fm.MediaStorageSOPInstanceUID = UID(meta.sop_uid)
    fm.TransferSyntaxUID = TRANSFER_SYNTAX[compression]
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = "DGSEDGE_" + __version__.replace(".", "")[:6]

    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = meta.sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = tm
    ds.AcquisitionDateTime = dtm
    ds.AccessionNumber = ""
    ds.Modality = "US"
    ds.Manufacturer = "dgs-edge"
    ds.ManufacturerModelName = str(meta.probe.get("model", ""))[:64]
    ds.SoftwareVersions = __version__
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"Dynamic sciatic nerve ultrasound ({meta.protocol})"[:64]
    ds.SeriesDescription = f"{meta.protocol} {meta.side}"[:64]
    # Pseudonymous identity only: a random id, no name/birth date/sex (type 2 -> empty).
    ds.PatientName = meta.patient_id.replace("-", "^", 1)  # PN form family^given
    ds.PatientID = meta.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "dgs-edge pseudonymous capture: random id, no demographics"
    ds.BodyPartExamined = "HIP"
    ds.Laterality = LATERALITY[meta.side]
    ds.StudyInstanceUID = meta.study_uid
    ds.SeriesInstanceUID = meta.series_uid
    ds.StudyID = meta.session_id[:16]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = n
    ds.FrameIncrementPointer = FRAME_TIME_VECTOR_TAG
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ms = [0.0] + [max((b - a) * 1000.0, 0.0) for a, b in itertools.pairwise(times)]
    ds.FrameTimeVector = [f"{v:.6g}" for v in ms]
    if n > 1 and times[-1] > t0:
        mean_ms = (times[-1] - t0) * 1000.0 / (n - 1)
        ds.CineRate = max(1, round(1000.0 / mean_ms))
    ds.StartTrim = 1
    ds.StopTrim = n
    if meta.spacing_mm is not None:
        roi = meta.roi
        x0, y0, x1, y1 = (0, 0, cols, rows) if roi is None else (roi.x0, roi.y0, roi.x1, roi.y1)
        reg = Dataset()
        reg.RegionSpatialFormat = 1  # 2D
        reg.RegionDataType = 1  # tissue
        reg.RegionFlags = 0
        reg.RegionLocationMinX0 = x0
        reg.RegionLocationMinY0 = y0
        reg.RegionLocationMaxX1 = x1 - 1  # DICOM bounds are inclusive
        reg.RegionLocationMaxY1 = y1 - 1
        reg.PhysicalUnitsXDirection = 3  # cm
        reg.PhysicalUnitsYDirection = 3
        reg.PhysicalDeltaX = meta.spacing_mm[0] / 10.0
        reg.PhysicalDeltaY = meta.spacing_mm[1] / 10.0
        ds.SequenceOfUltrasoundRegions = Sequence([reg])
    # Hospital integration: a session scanned under an order carries its identity.
    apply_order(ds, meta.extra)
    return ds


class Incompressible(ValueError):
    """JPEG-LS could not encode a frame (its output would exceed the raw size: noise, or a
    tiny frame); the cine is then written RLE, whose worst case is bounded."""


# Below this many pixels per frame JPEG-LS headers outweigh any gain (and CharLS's output
# buffer, sized to the raw frame, can overflow): such cines are written RLE.
_MIN_JPEGLS_PIXELS = 4096


def _effective(compression: Compression, rows: int, cols: int) -> Compression:
    if compression == "jpegls" and rows * cols < _MIN_JPEGLS_PIXELS:
        return "rle"
    return compression


def _encoder(compression: Compression, rows: int, cols: int) -> Callable[[np.ndarray], bytes]:
    if compression == "jpegls":
        try:
            import jpeg_ls
        except ImportError as exc:
            raise InputError("no JPEG-LS encoder installed (pyjpegls)") from exc

        def encode_ls(px: np.ndarray) -> bytes:
            src = np.ascontiguousarray(px, dtype=np.uint8).tobytes()
            try:
                return bytes(jpeg_ls.encode_buffer(src, rows, cols, 1, 8, lossy_error=0))
            except RuntimeError as exc:  # CharLS: "destination buffer is too small"
                raise Incompressible(str(exc)) from None

        return encode_ls
    from pydicom.pixels import get_encoder

    enc = get_encoder(TRANSFER_SYNTAX[compression])
    if not enc.is_available:
        raise InputError(f"no {compression} encoder installed (pyjpegls / pylibjpeg-rle)")
    kw: dict[str, Any] = dict(
        rows=rows,
        columns=cols,
        samples_per_pixel=1,
        bits_allocated=8,
        bits_stored=8,
        pixel_representation=0,
        photometric_interpretation="MONOCHROME2",
        number_of_frames=1,
    )

    def encode(px: np.ndarray) -> bytes:
        return bytes(enc.encode(np.ascontiguousarray(px, dtype=np.uint8), **kw))

    return encode


def write_cine(
    path: Path,
    meta: SessionMeta,
    times: list[float],
    shape: tuple[int, int],
    frames: Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]],
    compression: Compression = "jpegls",
    encoded: Iterable[bytes] | None = None,
) -> None:
    """Write atomically (tmp + fsync + rename): a crash mid-write never leaves a cine.dcm
    that looks complete. Frames are streamed (and compressed) one at a time; `encoded`
    gives frames already compressed (by a BackgroundEncoder) instead of `frames`.

    frames may be a callable returning a fresh iterable: then a JPEG-LS cine whose frames
    turn out incompressible is written again as RLE instead of failing."""
    rows, cols = shape
    compression = _effective(compression, rows, cols)
    try:
        _write_cine(path, meta, times, shape, frames, compression, encoded)
    except Incompressible as exc:
        if not callable(frames):
            raise
        log.warning("%s: JPEG-LS cannot encode these frames (%s); writing RLE", path, exc)
        _write_cine(path, meta, times, shape, frames, "rle", None)


def _write_cine(
    path: Path,
    meta: SessionMeta,
    times: list[float],
    shape: tuple[int, int],
    frames: Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]],
    compression: Compression,
    encoded: Iterable[bytes] | None,
) -> None:
    rows, cols = shape
    if callable(frames):
        frames = frames()
    ds = build_header(meta, times, rows, cols, compression)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, buf.getvalue())
        if compression != "none" and encoded is not None:
            _write_items(fd, encoded, len(times))
        elif compression != "none":
            enc = _encoder(compression, rows, cols)
            _write_items(fd, (enc(_checked(px, shape)) for px in frames), len(times))
        else:
            _write_native(fd, frames, shape, len(times))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _checked(px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if px.shape != shape:
        raise ValueError(f"frame shape {px.shape} != {shape}")
    return px


def _write_items(fd: int, encoded: Iterable[bytes], n: int) -> None:
    # (7FE0,0010) OB of undefined length, an empty Basic Offset Table item (allowed; readers
    # find frames by walking the items), one item per frame, then the sequence delimiter.
    write_all(fd, struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
    write_all(fd, struct.pack("<II", _ITEM, 0))
    count = 0
    for data in encoded:
        if len(data) % 2:
            data += b"\x00"
        write_all(fd, struct.pack("<II", _ITEM, len(data)) + data)
        count += 1
    if count != n:
        raise ValueError(f"wrote {count} frames, expected {n}")
    write_all(fd, struct.pack("<II", _SEQ_DELIM, 0))


def _write_native(fd: int, frames: Iterable[np.ndarray], shape: tuple[int, int], n: int) -> None:
    rows, cols = shape
    length = rows * cols * n
    pad = length % 2  # DICOM values have even length
    # (7FE0,0010) OB, explicit VR little endian: tag, VR, 2 reserved bytes, 4-byte length.
    write_all(fd, struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, length + pad))
    written = 0
    for px in frames:
        if px.shape != (rows, cols):
            raise ValueError(f"frame shape {px.shape} != {(rows, cols)}")
        write_all(fd, np.ascontiguousarray(px, dtype=np.uint8).tobytes())
        written += rows * cols
    if written != length:
        raise ValueError(f"wrote {written} pixel bytes, expected {length}")
    if pad:
        write_all(fd, b"\x00")


class BackgroundEncoder:
    """Compresses frames on a helper thread while they are being recorded, reading them
    back from the journal (nothing is held in memory), into `cine.frags`. Closing a long
    session then only copies bytes instead of encoding thousands of frames at once.

    Any failure (disk full, encoder error) is kept and reported by `finish()` returning
    None; the caller then encodes from the journal as before, so nothing depends on it."""

    def __init__(
        self, journal_path: Path, frags_path: Path, compression: Compression, shape: tuple[int, int]
    ) -> None:
        self.path = frags_path
        self.shape = shape
        if _effective(compression, *shape) != compression:
            raise InputError("frames too small for background JPEG-LS")
        self._encode = _encoder(compression, *shape)
        self._q: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._rfd = os.open(journal_path, os.O_RDONLY)
        try:
            self._wfd = os.open(frags_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError:
            os.close(self._rfd)
            raise
        self.sizes: list[int] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cine-encoder", daemon=True)
        self._thread.start()

    def submit(self, offset: int) -> None:
        """Encode the frame whose pixels start at `offset` in the journal."""
        self._q.put(offset)

    def _run(self) -> None:
        n = self.shape[0] * self.shape[1]
        while True:
            off = self._q.get()
            if off is None:
                return
            if self.error is not None:
                continue
            try:
                px = np.frombuffer(os.pread(self._rfd, n, off), dtype=np.uint8)
                data = self._encode(px.reshape(self.shape))
                if len(data) % 2:
                    data += b"\x00"
                write_all(self._wfd, data)
                self.sizes.append(len(data))
            except BaseException as exc:  # reported by finish(); the journal still has all
                self.error = exc

    def finish(self) -> list[int] | None:
        """Wait for the backlog; the encoded sizes in order, or None after a failure."""
        self._q.put(None)
        self._thread.join()
        os.close(self._rfd)
        os.close(self._wfd)
        if self.error is not None:
            log.warning("background cine encoding failed (%s); encoding at close", self.error)
            self.path.unlink(missing_ok=True)
            return None
        return self.sizes

    def fragments(self, sizes: list[int]) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            for n in sizes:
                yield f.read(n)
