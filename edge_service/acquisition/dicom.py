"""DICOM frame source: any vendor's single- or multi-frame ultrasound file.

Decoding goes through pydicom's pixel pipeline with the pylibjpeg plugins (JPEG baseline /
lossless, JPEG 2000, RLE) - the same decoders PACS viewers use - instead of hand-rolled
codecs. Physical calibration only ever comes from the file (Sequence of Ultrasound Regions,
or Pixel Spacing) or from the user; it is never guessed.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
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
from edge_service.acquisition.dicomframes import (
    check_decoder_budget,
    direct_frames,
    ybr_to_rgb_inplace,
)
from edge_service.acquisition.dicomguard import (
    DEFAULT_BUDGET,
    DicomBudget,
    PixelLayout,
    check_deflated,
    check_dicom_pixels,
    check_layout,
    safe_get,
)
from edge_service.acquisition.frame import Frame, Roi
from edge_service.acquisition.source import (
    FrameSource,
    SourceInfo,
    check_spacing,
    spacing_conflict,
    spacing_problem,
)
from edge_service.errors import InputError

log = logging.getLogger(__name__)

#: PhysicalUnitsX/YDirection code for centimetres (PS3.3 C.8.5.5.1.15).
UNITS_CM = 3
#: RegionDataType 1 = tissue (B-mode); RegionSpatialFormat 1 = 2D.
REGION_TISSUE = 1
SPATIAL_2D = 1
DEFLATED_TS = "1.2.840.10008.1.2.1.99"


def _declared_transfer_syntax(p: Path) -> str | None:
    """The file meta's Transfer Syntax UID, read without touching the dataset (or None)."""
    try:
        with open(p, "rb") as f:
            if f.read(132)[128:132] != b"DICM":
                return None
        meta = pydicom.filereader.read_file_meta_info(str(p))
        ts = meta.get("TransferSyntaxUID")
    except Exception:  # a garbled meta group is reported by dcmread below
        return None
    return None if ts is None else str(ts)


def read_dataset(
    path: str | os.PathLike[str], *, pixels: bool = True, budget: DicomBudget = DEFAULT_BUDGET
) -> Dataset:
    """Read a DICOM file or raise `InputError` with one clear line."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if _declared_transfer_syntax(p) == DEFLATED_TS:
        # pydicom inflates a deflated dataset whole and raises zlib.error on a false label.
        check_deflated(p, budget)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Large values (the pixel data of a long cine) are read only when used: frames
            # are decoded one at a time straight from the file.
            ds = pydicom.dcmread(str(p), stop_before_pixels=not pixels, defer_size="2 MB")
    except InvalidDicomError as exc:
        raise InputError(f"{p}: not a DICOM file ({exc})") from exc
    except MemoryError:
        raise InputError(f"{p}: a DICOM element claims more memory than exists (corrupt)") from None
    except Exception as exc:  # pydicom raises many types for corrupt headers
        # Truncation shows as EOFError/OSError, garbled headers as ValueError/KeyError/...
        raise InputError(f"{p}: truncated or corrupt DICOM ({type(exc).__name__}: {exc})") from exc
    for w in caught:
        # pydicom reads a file cut inside encapsulated pixel data without raising.
        if "End of file reached" in str(w.message):
            raise InputError(f"{p}: truncated DICOM file (ends inside the pixel data)")
        log.debug("%s: %s", p, w.message)
    if pixels and "PixelData" not in ds:
        raise InputError(f"{p}: DICOM file has no pixel data (truncated, or not an image object)")
    return ds


def _region_int(reg: Dataset, kw: str) -> int | None:
    raw = safe_get(reg, kw)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _region_spacing(reg: Dataset, i: int, where: str) -> tuple[tuple[float, float], Roi]:
    """(dx, dy) mm/px and bounds of one B-mode tissue region, checked, or InputError."""
    name = f"{where}: SequenceOfUltrasoundRegions[{i}] (B-mode tissue)"
    out = []
    for kw in ("PhysicalDeltaX", "PhysicalDeltaY"):
        raw = safe_get(reg, kw)
        if raw is None:
            raise InputError(f"{name}: {kw} is missing")
        try:
            cm = float(raw)
        except (TypeError, ValueError):
            raise InputError(f"{name}: {kw}={raw!r} is not a number") from None
        # Some vendors sign the delta by scan direction; the size of a pixel is its magnitude.
        mm = abs(cm) * 10.0
        why = spacing_problem(mm)
        if why is not None:
            raise InputError(f"{name}: {kw}={raw} cm -> {why}")
        out.append(mm)
    try:
        x0, y0, x1, y1 = (
            int(reg[kw].value)
            for kw in (
                "RegionLocationMinX0",
                "RegionLocationMinY0",
                "RegionLocationMaxX1",
                "RegionLocationMaxY1",
            )
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{name}: region bounds missing or not numbers ({exc})") from None
    if not (0 <= x0 <= x1 and 0 <= y0 <= y1):
        raise InputError(f"{name}: region bounds {x0},{y0}..{x1},{y1} are not ordered")
    return (out[0], out[1]), Roi(x0, y0, x1 + 1, y1 + 1)


def us_calibration(
    ds: Dataset, where: str = "DICOM"
) -> tuple[tuple[float, float] | None, Roi | None, str | None]:
    """(spacing_mm, roi, origin) from the Sequence of Ultrasound Regions, else Pixel Spacing.

    Only a 2-D (RegionSpatialFormat 1) tissue (RegionDataType 1) region calibrates: colour
    flow, Doppler, M-mode and waveform regions are never used, whatever their units. Both of
    its physical units must be cm (code 3); a B-mode region marked with no units (0) is
    uncalibrated and skipped; any other unit is an error. Deltas must be finite, non-zero and
    give a plausible spacing (`SPACING_MIN_MM`..`SPACING_MAX_MM`), else `InputError` naming the
    attribute - a broken calibration is never replaced by a guess or by another region.
    With several B-mode regions (dual view) the largest one is used. When Pixel Spacing is also
    present and disagrees with the region by more than 2 %, that is an error naming both.
    Region bounds are inclusive in DICOM, our Roi is half-open.
    """
    best: tuple[int, tuple[float, float], Roi] | None = None
    regions = safe_get(ds, "SequenceOfUltrasoundRegions") or []
    for i, reg in enumerate(regions):
        if (_region_int(reg, "RegionDataType"), _region_int(reg, "RegionSpatialFormat")) != (
            REGION_TISSUE,
            SPATIAL_2D,
        ):
            continue  # Doppler, colour flow, M-mode, waveform: not a B-mode calibration
        units = (
            _region_int(reg, "PhysicalUnitsXDirection"),
            _region_int(reg, "PhysicalUnitsYDirection"),
        )
        if units in ((0, 0), (None, None)):
            log.warning("%s: B-mode region %d has no physical units; not calibrated", where, i)
            continue
        if units != (UNITS_CM, UNITS_CM):
            raise InputError(
                f"{where}: SequenceOfUltrasoundRegions[{i}] (B-mode tissue) has physical units "
                f"{units[0]}/{units[1]}, expected 3/3 (cm)"
            )
        spacing, roi = _region_spacing(reg, i, where)
        if best is None or roi.width * roi.height > best[0]:
            best = (roi.width * roi.height, spacing, roi)
    pixel_spacing = _pixel_spacing(ds, where)
    if best is not None:
        if pixel_spacing is not None and not np.allclose(best[1], pixel_spacing, rtol=0.02):
            raise InputError(
                f"{where}: conflicting calibration: SequenceOfUltrasoundRegions gives "
                f"{best[1][0]:.4g} x {best[1][1]:.4g} mm/px, PixelSpacing gives "
                f"{pixel_spacing[0]:.4g} x {pixel_spacing[1]:.4g} mm/px"
            )
        return best[1], best[2], "us-regions"
    if pixel_spacing is not None:
        return pixel_spacing, None, "pixel-spacing"
    return None, None, None


def _pixel_spacing(ds: Dataset, where: str) -> tuple[float, float] | None:
    """PixelSpacing as (dx, dy) = (column, row) spacing, checked, or None when absent."""
    ps = safe_get(ds, "PixelSpacing")
    if ps is None or ps == "":
        return None
    vals = list(ps) if isinstance(ps, list | pydicom.multival.MultiValue) else [ps]
    if len(vals) != 2:
        raise InputError(f"{where}: PixelSpacing={ps!r} must hold two values (row, column)")
    for v in vals:
        why = spacing_problem(v)
        if why is not None:
            raise InputError(f"{where}: PixelSpacing={ps!r}: {why}")
    row_mm, col_mm = float(vals[0]), float(vals[1])
    return (col_mm, row_mm)


def _positive_ms(raw: object) -> float | None:
    try:
        v = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def frame_offsets_s(ds: Dataset, n: int) -> tuple[list[float], float | None]:
    """Per-frame time offsets from the first frame in seconds, and the nominal fps.

    Frame Time Vector holds increments (first is 0); Frame Time a constant interval;
    Cine Rate / Recommended Display Frame Rate are the fallbacks. Without any, offsets are
    all zero and fps is None. Values that are not finite and non-negative are ignored (with a
    warning) rather than turned into NaN times.
    """
    ftv = safe_get(ds, "FrameTimeVector")
    if ftv is not None:
        try:
            vals = [
                float(v)
                for v in (ftv if isinstance(ftv, list | pydicom.multival.MultiValue) else [ftv])
            ]
        except (TypeError, ValueError):
            vals = []
        if len(vals) == n and all(math.isfinite(v) and v >= 0 for v in vals):
            acc, out = 0.0, []
            for i, v in enumerate(vals):
                acc += v if i > 0 else 0.0
                out.append(acc / 1000.0)
            fps = (n - 1) / out[-1] if n > 1 and out[-1] > 0 else None
            return out, fps
        log.warning("FrameTimeVector unusable (%d values for %d frames); ignored", len(vals), n)
    interval_ms = _positive_ms(safe_get(ds, "FrameTime"))
    if interval_ms is None:
        for kw in ("CineRate", "RecommendedDisplayFrameRate"):
            rate = _positive_ms(safe_get(ds, kw))
            if rate is not None:
                interval_ms = 1000.0 / rate
                break
    if interval_ms is None or not math.isfinite(interval_ms) or interval_ms <= 0:
        return [0.0] * n, None
    return [i * interval_ms / 1000.0 for i in range(n)], 1000.0 / interval_ms


def acquisition_epoch(ds: Dataset) -> float | None:
    """Acquisition start as Unix epoch seconds (a DT without offset is taken as UTC)."""
    text: str | None = None
    if safe_get(ds, "AcquisitionDateTime"):
        text = str(safe_get(ds, "AcquisitionDateTime"))
    else:
        for d_kw, t_kw in (
            ("AcquisitionDate", "AcquisitionTime"),
            ("ContentDate", "ContentTime"),
            ("StudyDate", "StudyTime"),
        ):
            if safe_get(ds, d_kw):
                text = str(safe_get(ds, d_kw)) + str(safe_get(ds, t_kw) or "")
                break
    if not text:
        return None
    try:
        dt = pydicom.valuerep.DT(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=_dt.UTC)
        return dt.timestamp()
    except (ValueError, TypeError, OverflowError, OSError):
        return None


def dicom_info(
    ds: Dataset,
    path: str,
    spacing_mm: tuple[float, float] | None = None,
    layout: PixelLayout | None = None,
    spacing_override: bool = False,
) -> SourceInfo:
    """What the file says about itself; `layout` is the header checked by dicomguard.

    A user spacing that contradicts the file's own calibration is an InputError (which of
    them is right cannot be known here); with `spacing_override` the user's value wins."""
    if layout is None:
        layout = check_layout(ds, path)
    spacing, roi, origin = us_calibration(ds, path)
    rows, cols = layout.rows, layout.columns
    if roi is not None:
        # Some vendors (and cropped exports) declare regions past the matrix: clip to it.
        roi = Roi(min(roi.x0, cols), min(roi.y0, rows), min(roi.x1, cols), min(roi.y1, rows))
        if roi.width <= 0 or roi.height <= 0:
            roi = None
    user = check_spacing(spacing_mm)
    if spacing is None and user is not None:
        spacing, origin = user, "user"
    elif spacing is not None and user is not None:
        why = spacing_conflict(user, spacing, origin)
        if why is not None and not spacing_override:
            raise InputError(f"{why} (give --spacing-override to use yours)")
        if why is not None:
            log.warning("%s: %s; overridden by the user", path, why)
            spacing, origin = user, "user"
    n = layout.n_frames
    _, fps = frame_offsets_s(ds, n)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return SourceInfo(
        kind="dicom",
        path=path,
        n_frames=n,
        width=cols,
        height=rows,
        spacing_mm=spacing,
        roi=roi,
        fps_hz=fps,
        transfer_syntax=None if ts is None else f"{ts.name} ({ts})",
        vendor=str(safe_get(ds, "Manufacturer") or "") or None,
        model=str(safe_get(ds, "ManufacturerModelName") or "") or None,
        photometric=str(safe_get(ds, "PhotometricInterpretation") or "") or None,
        spacing_origin=origin,
        extra={
            "modality": str(safe_get(ds, "Modality") or ""),
            "sop_class": str(safe_get(ds, "SOPClassUID", "")),
            "bits_stored": _bits_stored(ds, layout),
            "samples_per_pixel": layout.samples_per_pixel,
        },
    )


def _bits_stored(ds: Dataset, layout: PixelLayout) -> int:
    try:
        bits = int(safe_get(ds, "BitsStored") or layout.bits_allocated)
    except (TypeError, ValueError):
        bits = layout.bits_allocated
    return bits if 1 <= bits <= layout.bits_allocated else layout.bits_allocated


class DicomSource(FrameSource):
    """Frames of one DICOM file as grayscale uint8 with the file's calibration.

    spacing_mm: the user's spacing, used when the file has none; one that contradicts the
    file's own calibration is an InputError unless spacing_override (then the user's wins). t0: epoch of frame 0 (default: the file's acquisition time, else 0).
    budget: what the file may cost (dicomguard.DicomBudget); frames are decoded one at a
    time, so peak memory stays within `budget.peak_bytes` of the baseline.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        spacing_mm: tuple[float, float] | None = None,
        spacing_override: bool = False,
        t0: float | None = None,
        times: list[float] | None = None,
        default_t0: float = 0.0,
        budget: DicomBudget = DEFAULT_BUDGET,
    ) -> None:
        self._path = str(path)
        self._ds = read_dataset(self._path, budget=budget)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # The header proves itself against the bytes before anything is allocated for it.
            self._layout = check_dicom_pixels(self._path, self._ds, budget)
            check_decoder_budget(self._path, self._ds, self._layout, budget)
            self._info = dicom_info(
                self._ds, self._path, spacing_mm, self._layout, spacing_override
            )
        for w in caught:  # pydicom's notes on odd headers: for the debug log, not the user
            log.debug("%s: %s", self._path, w.message)
        n = self._layout.n_frames
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
        size = 1 << self._layout.bits_allocated
        pos = np.clip(np.arange(size) - first, 0, n - 1)
        return np.ascontiguousarray(gray.reshape(n)[pos])

    def _decoded(self) -> Iterator[np.ndarray]:
        ds = self._ds
        photometric = str(safe_get(ds, "PhotometricInterpretation", "MONOCHROME2"))
        try:
            lut = None
            if photometric == "PALETTE COLOR":
                if self._layout.bits_allocated not in (8, 16):
                    # The gray table has 2**BitsAllocated entries: 32 bits would be 4 G.
                    raise InputError(
                        f"{self._path}: PALETTE COLOR with BitsAllocated="
                        f"{self._layout.bits_allocated} (must be 8 or 16)"
                    )
                if self._gray_lut is None:
                    self._gray_lut = self._palette_gray_lut()
                lut = self._gray_lut
            # Frames one at a time straight from the file. A deflated file has no per-frame
            # access: its dataset is already inflated in memory (bounded by check_deflated).
            deflated = str(getattr(ds.file_meta, "TransferSyntaxUID", "")) == DEFLATED_TS
            src: str | Dataset = ds if deflated else self._path
            # Native and RLE grayscale/palette frames straight into their own array (peak
            # memory; see dicomframes); everything else through pydicom's decoders.
            direct = None if deflated else direct_frames(self._path, ds, self._layout)
            out = Dataset()  # pydicom writes each frame's photometric interpretation here
            frames = (
                direct
                if direct is not None
                else pydicom.pixels.iter_pixels(src, ds_out=out, as_rgb=False)
            )
            while True:
                # pydicom warns about odd-but-decodable data (padding, bad VRs) per frame:
                # for the debug log, not the user's terminal (one line per error, no noise).
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    arr = next(frames, None)
                for w in caught:
                    log.debug("%s: %s", self._path, w.message)
                if arr is None:
                    return
                ybr = str(out.get("PhotometricInterpretation", ""))
                if direct is None and arr.ndim == 3 and ybr in ("YBR_FULL", "YBR_FULL_422"):
                    arr = ybr_to_rgb_inplace(arr, ybr)  # what as_rgb=True does, in blocks
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
            fmeta = dict(meta)
            if arr.ndim == 3 and arr.shape[-1] >= 3 and arr.dtype == np.uint8:
                # Colour inside the B-mode region (Doppler) is lost in gray: the view gate needs it.
                roi = self._info.roi
                box = None if roi is None else (roi.x0, roi.y0, roi.x1, roi.y1)
                fmeta["chroma_fraction"] = chroma_fraction(arr, box)
            # The decoded frame is ours alone: convert it in place (memory bound, dicomguard).
            gray = frame_to_gray(arr, photometric, bits, consume=True)
            del arr
            count += 1
            yield Frame(gray, self._times[i], i, self._info.spacing_mm, self._info.roi, fmeta)
        if count < len(self._times):
            raise InputError(f"{self._path}: only {count} of {len(self._times)} frames decodable")
