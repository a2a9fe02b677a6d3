"""Checks that make a DICOM header prove itself before any pixel is decoded.

A header is a claim: NumberOfFrames, Rows, Columns, SamplesPerPixel and BitsAllocated say
how much memory decoding will take, and nothing stops a corrupt or hostile file from
claiming 10^8 frames in 0.9 MB or 65535 x 65535 pixels. Every claim is checked here against
the bytes actually in the file and against `DicomBudget`, so an impossible file is refused
with one line (`InputError`) instead of a MemoryError, a multi-GB allocation or a traceback.

Memory bound (measured: `python -m benchmarks fuzz`, table "Peak memory on hostile DICOM
inputs"; asserted in tests/acquisition/test_dicom_hostile.py): frames are decoded one at a
time. The documented bound on peak memory growth for any single input is
`DicomBudget.peak_bytes` = 2 x `max_frame_bytes` (128 MiB with the defaults). Unsigned grey
(8/16 bit) and 8-bit RGB frames, native or RLE, are read into their own array without an
intermediate copy (acquisition/dicomframes.py): measured at the largest allowed frames
(64 MiB) 1.3-1.55 x. Frames that go through pydicom's codec plugins (JPEG, JPEG-LS,
JPEG 2000, ...) cost ~2.5-3.2 x their size, so they are limited to `max_decoder_frame_bytes`
(32 MiB). Hostile headers are refused before any allocation (< 1 MiB).
"""

from __future__ import annotations

import logging
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from edge_service.errors import InputError

log = logging.getLogger(__name__)

#: Item, sequence-delimiter tags of encapsulated pixel data (PS3.5 A.4).
_ITEM = 0xFFFEE000
_SEQ_DELIM = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
#: Markers a compressed frame's first fragment starts with: JPEG SOI, JPEG 2000 SOC.
_FRAME_STARTS = {
    "jpeg": b"\xff\xd8",
    "j2k": b"\xff\x4f",
}
#: The encapsulated transfer syntaxes whose frames start with a known marker.
_JPEG_FAMILY = (
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
)
_J2K_FAMILY = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
_RLE = "1.2.840.10008.1.2.5"
#: Native (uncompressed) syntaxes; deflate is native after inflation.
_NATIVE = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
)
_BITS_ALLOCATED = (1, 8, 16, 32)


@dataclass(frozen=True)
class DicomBudget:
    """What one DICOM input may cost before it is refused.

    max_frame_bytes: one decoded frame (Rows x Columns x SamplesPerPixel x BitsAllocated/8).
        64 MiB holds a 4096 x 4096 RGB frame, far above any ultrasound scanner's output
        (typically <= 1280 x 1024 RGB = 3.75 MiB).
    max_frames: frames of one cine. 250 000 = the longest session (3600 s) at ~70 fps.
    max_side_px: Rows and Columns each; 8192 covers every scanner and screen capture.
    max_decoder_frame_bytes: one frame that pydicom and its codec plugins decode (JPEG,
        JPEG-LS, JPEG 2000, deflate, big endian, signed, YBR or 32-bit samples): their own
        buffers hold ~2.5-3.2x the frame, so such frames are kept to 32 MiB to stay within
        `peak_bytes`. Unsigned 8/16-bit grey and 8-bit RGB, native or RLE, are read by
        acquisition/dicomframes.py straight into their array (<= 1.6x) up to the full budget.
    """

    max_frame_bytes: int = 64 << 20
    max_frames: int = 250_000
    max_side_px: int = 8192
    max_decoder_frame_bytes: int = 32 << 20

    @property
    def peak_bytes(self) -> int:
        """Documented bound on peak memory growth while reading one input: 2 x the frame
        budget (measured: benchmarks/results/fuzz.md, 'Peak memory')."""
        return 2 * self.max_frame_bytes


DEFAULT_BUDGET = DicomBudget()


@dataclass(frozen=True)
class PixelLayout:
    """The verified shape of a file's pixel data."""

    n_frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    encapsulated: bool

    @property
    def frame_bytes(self) -> int:
        return math.ceil(
            self.rows * self.columns * self.samples_per_pixel * self.bits_allocated / 8
        )


def safe_get(ds: Dataset, kw: str, default: Any = None) -> Any:
    """`ds.get(kw)` that never raises: pydicom converts a value on first access, and a
    malformed one (IS 'abc', a DS 'NaN' under strict validation, a broken sequence) would
    otherwise escape as ValueError from wherever it is read. Unreadable = absent."""
    try:
        return ds.get(kw, default)
    except Exception:  # any conversion failure means "no usable value"
        log.debug("unreadable %s treated as absent", kw)
        return default


def _int_attr(ds: Dataset, kw: str, where: str, default: int | None = None) -> int:
    raw = safe_get(ds, kw)
    if raw is None or raw == "":
        if default is None:
            raise InputError(f"{where}: {kw} is missing")
        return default
    try:
        val = float(raw)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {kw}={raw!r} is not a number") from None
    if not math.isfinite(val) or val != int(val):
        raise InputError(f"{where}: {kw}={raw!r} is not a whole number")
    return int(val)


def check_layout(ds: Dataset, where: str, budget: DicomBudget = DEFAULT_BUDGET) -> PixelLayout:
    """Header plausibility alone (no file access): sizes, frame count, memory budget."""
    rows = _int_attr(ds, "Rows", where)
    cols = _int_attr(ds, "Columns", where)
    spp = _int_attr(ds, "SamplesPerPixel", where, 1)
    bits = _int_attr(ds, "BitsAllocated", where, 8)
    # NumberOfFrames absent = one frame (PS3.3 C.7.6.6); present, it must be >= 1.
    n = _int_attr(ds, "NumberOfFrames", where, 1)
    for kw, v in (("Rows", rows), ("Columns", cols)):
        if not 1 <= v <= budget.max_side_px:
            raise InputError(f"{where}: {kw}={v} outside 1..{budget.max_side_px}")
    if spp not in (1, 3, 4):
        raise InputError(f"{where}: SamplesPerPixel={spp} (expected 1 or 3)")
    if bits not in _BITS_ALLOCATED:
        raise InputError(f"{where}: BitsAllocated={bits} (expected one of {_BITS_ALLOCATED})")
    if not 1 <= n <= budget.max_frames:
        raise InputError(f"{where}: NumberOfFrames={n} outside 1..{budget.max_frames}")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    layout = PixelLayout(n, rows, cols, spp, bits, encapsulated=_encapsulated(ts, where))
    if layout.frame_bytes > budget.max_frame_bytes:
        raise InputError(
            f"{where}: one frame of {cols}x{rows}x{spp} at {bits} bits needs "
            f"{layout.frame_bytes / 2**20:.0f} MiB, over the {budget.max_frame_bytes >> 20} MiB "
            "frame budget"
        )
    return layout


def _encapsulated(ts: object, where: str) -> bool:
    if ts is None:
        return False  # no file meta (old ACR-NEMA style): pydicom reads it as implicit LE
    uid = UID(str(ts))
    if str(uid) in _NATIVE:
        return False
    if str(uid) in _JPEG_FAMILY or str(uid) in _J2K_FAMILY or str(uid) == _RLE:
        return True
    if uid.is_transfer_syntax and uid.is_compressed:
        from pydicom.pixels.decoders.base import get_decoder

        try:
            if get_decoder(uid).is_available:
                return True
        except NotImplementedError:
            pass
    name = uid.name if uid.name != str(uid) else "unknown"
    raise InputError(f"{where}: transfer syntax {uid} ({name}) cannot be decoded here")


def check_pixel_bytes(
    path: str | os.PathLike[str], ds: Dataset, layout: PixelLayout
) -> PixelLayout:
    """The header's claims against the Pixel Data actually in the file.

    Native data: its length must be exactly frames x frame size (one pad byte allowed).
    Encapsulated data: item headers are walked (8 bytes read per fragment, never the
    fragments): a Basic Offset Table must list every frame, RLE has exactly one fragment per
    frame, and JPEG / JPEG 2000 frames must each start a fragment with their start marker.
    """
    where = str(path)
    elem = ds.get_item("PixelData", keep_deferred=True)
    if elem is None:
        raise InputError(f"{where}: DICOM file has no pixel data")
    size = Path(path).stat().st_size
    length = getattr(elem, "length", None)
    value = getattr(elem, "value", None)
    if not layout.encapsulated:
        if isinstance(value, bytes | bytearray):
            have = len(value)
        elif length is not None and length != _UNDEFINED:
            have = int(length)
            tell = getattr(elem, "value_tell", None)
            deflated = _is_deflated(ds)
            if tell is not None and not deflated and tell + have > size:
                raise InputError(
                    f"{where}: Pixel Data claims {have} bytes but the file ends after "
                    f"{max(size - tell, 0)} (truncated)"
                )
        else:
            raise InputError(f"{where}: native Pixel Data with undefined length")
        need = layout.frame_bytes * layout.n_frames
        if layout.bits_allocated == 1:
            need = math.ceil(
                layout.rows * layout.columns * layout.samples_per_pixel * layout.n_frames / 8
            )
        if have < need or have > need + 1:
            held = have / layout.frame_bytes if layout.frame_bytes else 0
            raise InputError(
                f"{where}: header says {layout.n_frames} frame(s) of {layout.frame_bytes} bytes "
                f"({need} bytes) but Pixel Data holds {have} bytes (~{held:.4g} frames)"
            )
        return layout
    fragments = _fragments(path, ds, elem, layout, size)
    return _check_fragments(where, ds, layout, fragments)


def _is_deflated(ds: Dataset) -> bool:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return str(ts) == "1.2.840.10008.1.2.1.99"


def _fragments(
    path: str | os.PathLike[str], ds: Dataset, elem: object, layout: PixelLayout, size: int
) -> tuple[int, list[bytes]]:
    """(Basic Offset Table entries, first two bytes of every fragment)."""
    where = str(path)
    fmt = "<" if getattr(ds, "is_little_endian", True) in (True, None) else ">"
    value = getattr(elem, "value", None)
    max_fragments = layout.n_frames * 64 + 1024
    try:
        if isinstance(value, bytes | bytearray):
            import io

            # pydicom's value of encapsulated data stops before the sequence delimiter.
            return _walk(io.BytesIO(value), fmt, len(value), max_fragments, where, False)
        tell = getattr(elem, "value_tell", None)
        if tell is None:
            raise InputError(f"{where}: cannot locate the encapsulated Pixel Data")
        with open(path, "rb") as f:
            f.seek(int(tell))
            return _walk(f, fmt, size - int(tell), max_fragments, where, True)
    except OSError as exc:
        raise InputError(f"{where}: cannot read the Pixel Data ({exc.strerror})") from exc


def _walk(
    f: object, fmt: str, avail: int, max_fragments: int, where: str, delimited: bool
) -> tuple[int, list[bytes]]:
    read = f.read  # type: ignore[attr-defined]
    seek = f.seek  # type: ignore[attr-defined]
    hdr = struct.Struct(fmt + "HHL")
    pos = 0
    bot_entries = -1
    starts: list[bytes] = []
    while True:
        raw = read(8)
        if not raw and not delimited and bot_entries >= 0:
            break
        if len(raw) < 8:
            raise InputError(
                f"{where}: encapsulated Pixel Data ends without a delimiter (truncated)"
            )
        group, elem, length = hdr.unpack(raw)
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQ_DELIM:
            break
        if tag != _ITEM or length == _UNDEFINED:
            raise InputError(f"{where}: malformed encapsulated Pixel Data (item tag {tag:08X})")
        if pos + length > avail:
            raise InputError(
                f"{where}: a Pixel Data fragment of {length} bytes runs past the end of the file "
                "(truncated)"
            )
        if bot_entries < 0:
            bot_entries = length // 4  # the first item is the Basic Offset Table
            seek(length, 1)
        else:
            head = read(min(2, length))
            starts.append(head)
            seek(length - len(head), 1)
            if len(starts) > max_fragments:
                raise InputError(f"{where}: more than {max_fragments} Pixel Data fragments")
        pos += length
    if bot_entries < 0:
        raise InputError(f"{where}: encapsulated Pixel Data has no Basic Offset Table item")
    return bot_entries, starts


def _check_fragments(
    where: str, ds: Dataset, layout: PixelLayout, fragments: tuple[int, list[bytes]]
) -> PixelLayout:
    bot, starts = fragments
    n = layout.n_frames
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    said = f"header says {n} frame(s)"
    if not starts:
        raise InputError(f"{where}: encapsulated Pixel Data holds no fragment")
    if bot and bot != n:
        raise InputError(f"{where}: {said} but the Basic Offset Table lists {bot}")
    if len(starts) < n:
        raise InputError(f"{where}: {said} but Pixel Data holds only {len(starts)} fragment(s)")
    if ts == _RLE and len(starts) != n:
        # PS3.5 A.4.2: each RLE frame is exactly one fragment.
        raise InputError(f"{where}: {said} but the RLE Pixel Data holds {len(starts)} frames")
    marker = (
        _FRAME_STARTS["jpeg"]
        if ts in _JPEG_FAMILY
        else _FRAME_STARTS["j2k"]
        if ts in _J2K_FAMILY
        else None
    )
    if marker is not None and not bot:
        framed = sum(1 for s in starts if s == marker)
        # Without a marker at all (an odd encoder), one fragment per frame is the rule.
        if framed != n and not (framed == 0 and len(starts) == n):
            raise InputError(
                f"{where}: {said} but the Pixel Data holds {framed} compressed frame(s)"
            )
    ext = safe_get(ds, "ExtendedOffsetTable")
    if ext is not None and len(ext) // 8 != n:
        raise InputError(f"{where}: {said} but the Extended Offset Table lists {len(ext) // 8}")
    return layout


def check_deflated(path: str | os.PathLike[str], budget: DicomBudget = DEFAULT_BUDGET) -> None:
    """A file labelled Deflated Explicit VR Little Endian must inflate, and within budget.

    pydicom inflates a deflated dataset whole, in memory, before reading it (there is no
    lazy path), so the inflated dataset is held while its frame decodes: it may be at most
    `budget.max_frame_bytes`, keeping the whole within `budget.peak_bytes`. The check streams
    through the data without keeping it.
    """
    import zlib

    where = str(path)
    with open(path, "rb") as f:
        head = f.read(144)
        if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
            raise InputError(f"{where}: deflated file without a readable file meta group")
        meta_len = struct.unpack("<L", head[140:144])[0]
        f.seek(144 + meta_len)
        d = zlib.decompressobj(-zlib.MAX_WBITS)
        out = 0
        try:
            while chunk := f.read(1 << 16):
                while chunk:
                    out += len(d.decompress(chunk, 1 << 20))
                    chunk = d.unconsumed_tail
                    if out > budget.max_frame_bytes:
                        raise InputError(
                            f"{where}: deflated dataset inflates past "
                            f"{budget.max_frame_bytes >> 20} MiB; re-encode it uncompressed or RLE"
                        )
                if d.eof:
                    break
        except zlib.error as exc:
            raise InputError(
                f"{where}: labelled Deflated Explicit VR Little Endian but the data is not "
                f"deflate-compressed ({exc})"
            ) from None
    if out == 0:
        raise InputError(f"{where}: deflated dataset is empty")


def check_dicom_pixels(
    path: str | os.PathLike[str], ds: Dataset, budget: DicomBudget = DEFAULT_BUDGET
) -> PixelLayout:
    """Everything above, in order: header plausibility, then the header against the bytes."""
    return check_pixel_bytes(path, ds, check_layout(ds, str(path), budget))
