"""DICOM frame source: any vendor's single- or multi-frame ultrasound file.

Decoding goes through pydicom's pixel pipeline with the pylibjpeg plugins (JPEG baseline /
lossless, JPEG 2000, RLE) - the same decoders PACS viewers use - instead of hand-rolled
codecs. Physical calibration only ever comes from the file (Sequence of Ultrasound Regions,
or Pixel Spacing) or from the user; it is never guessed.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from edge_service.acquisition.colour import chroma_fraction, frame_to_gray
from edge_service.acquisition.frame import Frame, Roi
from edge_service.acquisition.source import FrameSource, SourceInfo, check_spacing
from edge_service.errors import InputError

log = logging.getLogger(__name__)

#: PhysicalUnitsX/YDirection code for centimetres (PS3.3 C.8.5.5.1.15).
UNITS_CM = 3
#: RegionDataType 1 = tissue (B-mode); RegionSpatialFormat 1 = 2D.
REGION_TISSUE = 1
SPATIAL_2D = 1


def read_dataset(path: str | os.PathLike[str], *, pixels: bool = True) -> Dataset:
    """Read a DICOM file or raise `InputError` with one clear line."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Large values (the pixel data of a long cine) are read only when used: frames
            # are decoded one at a time straight from the file.
            ds = pydicom.dcmread(str(p), stop_before_pixels=not pixels, defer_size="2 MB")
    except InvalidDicomError as exc:
        raise InputError(f"{p}: not a DICOM file ({exc})") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # pydicom reports truncation as EOFError/OSError and garbled headers as ValueError.
        raise InputError(f"{p}: truncated or corrupt DICOM ({type(exc).__name__}: {exc})") from exc
    for w in caught:
        # pydicom reads a file cut inside encapsulated pixel data without raising.
        if "End of file reached" in str(w.message):
            raise InputError(f"{p}: truncated DICOM file (ends inside the pixel data)")
        log.debug("%s: %s", p, w.message)
    if pixels and "PixelData" not in ds:
        raise InputError(f"{p}: DICOM file has no pixel data (truncated, or not an image object)")
    return ds


def us_calibration(
    ds: Dataset,
) -> tuple[tuple[float, float] | None, Roi | None, str | None]:
    """(spacing_mm, roi, origin) from the Sequence of Ultrasound Regions, else Pixel Spacing.

    Picks the 2-D tissue (B-mode) region with both physical units in cm; when a file has
    several (dual view), the largest one. Region bounds are inclusive in DICOM, our Roi is
    half-open.
    """
    best: tuple[int, tuple[float, float], Roi] | None = None
    for reg in ds.get("SequenceOfUltrasoundRegions", []) or []:
        try:
            ux = int(reg.get("PhysicalUnitsXDirection", 0))
            uy = int(reg.get("PhysicalUnitsYDirection", 0))
            if ux != UNITS_CM or uy != UNITS_CM:
                continue  # time/velocity axes (M-mode, Doppler): not a spatial image
            dtype = int(reg.get("RegionDataType", REGION_TISSUE))
            fmt = int(reg.get("RegionSpatialFormat", SPATIAL_2D))
            dx = abs(float(reg.PhysicalDeltaX)) * 10.0
            dy = abs(float(reg.PhysicalDeltaY)) * 10.0
            roi = Roi(
                int(reg.RegionLocationMinX0),
                int(reg.RegionLocationMinY0),
                int(reg.RegionLocationMaxX1) + 1,
                int(reg.RegionLocationMaxY1) + 1,
            )
        except (AttributeError, TypeError, ValueError) as exc:
            log.warning("ignoring malformed ultrasound region: %s", exc)
            continue
        if dx <= 0 or dy <= 0:
            continue
        score = roi.width * roi.height + (
            1 << 40 if (dtype, fmt) == (REGION_TISSUE, SPATIAL_2D) else 0
        )
        if best is None or score > best[0]:
            best = (score, (dx, dy), roi)
    if best is not None:
        return best[1], best[2], "us-regions"
    ps = ds.get("PixelSpacing")
    if ps is not None and len(ps) == 2:
        try:
            row_mm, col_mm = float(ps[0]), float(ps[1])
            if row_mm > 0 and col_mm > 0:
                return (col_mm, row_mm), None, "pixel-spacing"
        except (TypeError, ValueError):
            pass
    return None, None, None


def frame_offsets_s(ds: Dataset, n: int) -> tuple[list[float], float | None]:
    """Per-frame time offsets from the first frame in seconds, and the nominal fps.

    Frame Time Vector holds increments (first is 0); Frame Time a constant interval;
    Cine Rate / Recommended Display Frame Rate are the fallbacks. Without any, offsets are
    all zero and fps is None.
    """
    ftv = ds.get("FrameTimeVector")
    if ftv is not None:
        vals = [
            float(v)
            for v in (ftv if isinstance(ftv, list | pydicom.multival.MultiValue) else [ftv])
        ]
        if len(vals) == n:
            acc, out = 0.0, []
            for i, v in enumerate(vals):
                acc += v if i > 0 else 0.0
                out.append(acc / 1000.0)
            fps = (n - 1) / out[-1] if n > 1 and out[-1] > 0 else None
            return out, fps
        log.warning("FrameTimeVector has %d values for %d frames; ignored", len(vals), n)
    interval_ms: float | None = None
    if ds.get("FrameTime") not in (None, ""):
        interval_ms = float(ds.FrameTime)
    else:
        for kw in ("CineRate", "RecommendedDisplayFrameRate"):
            rate = ds.get(kw)
            if rate not in (None, "") and float(rate) > 0:
                interval_ms = 1000.0 / float(rate)
                break
    if interval_ms is None or interval_ms <= 0:
        return [0.0] * n, None
    return [i * interval_ms / 1000.0 for i in range(n)], 1000.0 / interval_ms


def acquisition_epoch(ds: Dataset) -> float | None:
    """Acquisition start as Unix epoch seconds (a DT without offset is taken as UTC)."""
    text: str | None = None
    if ds.get("AcquisitionDateTime"):
        text = str(ds.AcquisitionDateTime)
    else:
        for d_kw, t_kw in (
            ("AcquisitionDate", "AcquisitionTime"),
            ("ContentDate", "ContentTime"),
            ("StudyDate", "StudyTime"),
        ):
            if ds.get(d_kw):
                text = str(ds.get(d_kw)) + str(ds.get(t_kw) or "")
                break
    if not text:
        return None
    try:
        dt = pydicom.valuerep.DT(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    return dt.timestamp()


def dicom_info(ds: Dataset, path: str, spacing_mm: tuple[float, float] | None = None) -> SourceInfo:
    spacing, roi, origin = us_calibration(ds)
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if roi is not None and rows and cols:
        # Some vendors (and cropped exports) declare regions past the matrix: clip to it.
        roi = Roi(min(roi.x0, cols), min(roi.y0, rows), min(roi.x1, cols), min(roi.y1, rows))
        if roi.width <= 0 or roi.height <= 0:
            roi = None
    user = check_spacing(spacing_mm)
    if spacing is None and user is not None:
        spacing, origin = user, "user"
    elif spacing is not None and user is not None and not np.allclose(spacing, user, rtol=1e-6):
        log.warning("%s: file spacing %s used; --spacing %s ignored", path, spacing, user)
    n = int(ds.get("NumberOfFrames") or 1)
    _, fps = frame_offsets_s(ds, n)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return SourceInfo(
        kind="dicom",
        path=path,
        n_frames=n,
        width=int(ds.get("Columns") or 0),
        height=int(ds.get("Rows") or 0),
        spacing_mm=spacing,
        roi=roi,
        fps_hz=fps,
        transfer_syntax=None if ts is None else f"{ts.name} ({ts})",
        vendor=str(ds.get("Manufacturer") or "") or None,
        model=str(ds.get("ManufacturerModelName") or "") or None,
        photometric=str(ds.get("PhotometricInterpretation") or "") or None,
        spacing_origin=origin,
        extra={
            "modality": str(ds.get("Modality") or ""),
            "sop_class": str(ds.get("SOPClassUID", "")),
            "bits_stored": int(ds.get("BitsStored") or 8),
            "samples_per_pixel": int(ds.get("SamplesPerPixel") or 1),
        },
    )


class DicomSource(FrameSource):
    """Frames of one DICOM file as grayscale uint8 with the file's calibration.

    spacing_mm: the user's spacing, used only when the file has none (a file's own
    calibration wins). t0: epoch of frame 0 (default: the file's acquisition time, else 0).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        spacing_mm: tuple[float, float] | None = None,
        t0: float | None = None,
        times: list[float] | None = None,
        default_t0: float = 0.0,
    ) -> None:
        self._path = str(path)
        self._ds = read_dataset(self._path)
        self._info = dicom_info(self._ds, self._path, spacing_mm)
        n = self._info.n_frames or 1
        offsets, _ = frame_offsets_s(self._ds, n)
        base = t0 if t0 is not None else (acquisition_epoch(self._ds) or default_t0)
        if times is not None and len(times) != n:
            raise InputError(f"{self._path}: {len(times)} frame times for {n} frames")
        self._times = times if times is not None else [base + o for o in offsets]
        self._gray_lut: np.ndarray | None = None

    @property
    def info(self) -> SourceInfo:
        return self._info

    @property
    def times(self) -> list[float]:
        """Epoch time of every frame (file times, or the explicit `times` given)."""
        return list(self._times)

    @property
    def dataset(self) -> Dataset:
        return self._ds

    def _palette_gray_lut(self) -> np.ndarray:
        """Index -> gray uint8 table for PALETTE COLOR, built once per file.

        Mapping the palette to gray once and then indexing is ~10x faster than expanding
        every frame to RGB. Gray values are identical to converting the RGB image (same
        OpenCV luma on the same 8-bit colours). Some writers (and pydicom-data's
        OBXXXX1A_expb) declare 16-bit entries but store 8-bit values; scaling those by >> 8
        would give a black image, so the scale is decided from the whole LUT, never from a
        frame's content. Indices outside the table take its first/last entry (PS3.3 C.7.6.3.1.5).
        """
        import cv2

        ds = self._ds
        desc = ds.RedPaletteColorLookupTableDescriptor
        n = int(desc[0]) or 65536
        first = int(desc[1])
        idx = np.arange(first, first + n, dtype=np.uint16 if first + n > 256 else np.uint8)
        rgb = np.asarray(pydicom.pixels.apply_color_lut(idx, ds))
        if int(rgb.max()) > 255:
            rgb = rgb >> 8
        gray = cv2.cvtColor(
            np.ascontiguousarray(rgb.astype(np.uint8).reshape(n, 1, 3)), cv2.COLOR_RGB2GRAY
        )
        size = 1 << int(ds.get("BitsAllocated") or 8)
        pos = np.clip(np.arange(size) - first, 0, n - 1)
        return np.ascontiguousarray(gray.reshape(n)[pos])

    def _decoded(self) -> Iterator[np.ndarray]:
        ds = self._ds
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        try:
            lut = None
            if photometric == "PALETTE COLOR":
                if self._gray_lut is None:
                    self._gray_lut = self._palette_gray_lut()
                lut = self._gray_lut
            for arr in pydicom.pixels.iter_pixels(self._path):
                yield arr if lut is None else lut[arr]
        except InputError:
            raise
        except Exception as exc:  # decoders raise many types; all mean "cannot decode"
            raise InputError(
                f"{self._path}: cannot decode pixel data ({self._info.transfer_syntax}): {exc}"
            ) from exc

    def frames(self) -> Iterator[Frame]:
        photometric = self._info.photometric or "MONOCHROME2"
        bits = int(self._info.extra.get("bits_stored", 8))  # type: ignore[call-overload]
        meta: dict[str, Any] = {"source": "dicom", "path": self._path}
        count = 0
        for i, arr in enumerate(self._decoded()):
            if i >= len(self._times):
                break
            gray = frame_to_gray(arr, photometric, bits)
            count += 1
            fmeta = dict(meta)
            if arr.ndim == 3 and arr.shape[-1] >= 3 and arr.dtype == np.uint8:
                # Colour inside the B-mode region (Doppler) is lost in gray: the view gate needs it.
                roi = self._info.roi
                box = None if roi is None else (roi.x0, roi.y0, roi.x1, roi.y1)
                fmeta["chroma_fraction"] = chroma_fraction(arr, box)
            yield Frame(gray, self._times[i], i, self._info.spacing_mm, self._info.roi, fmeta)
        if count < len(self._times):
            raise InputError(f"{self._path}: only {count} of {len(self._times)} frames decodable")
