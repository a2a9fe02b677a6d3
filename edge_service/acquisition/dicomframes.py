"""Frames of the common large layouts decoded straight into their own array.

pydicom's per-frame path holds a frame's bytes and the array made from them at once, and the
RLE plugin adds its own buffer: ~2.0x (native grey), ~2.5x (RLE) and, with the RGB colour
check, ~4.3x (native RGB) of the largest decoded frame at peak. For grey/palette samples of
8 or 16 bits and 8-bit RGB (unsigned, little endian: every ultrasound cine seen so far, and
the largest frames the budget admits), this reads a native frame with `readinto` into a
fresh array (1x), and unpacks an RLE frame into its array (the plugin's buffer becomes the
array for ordinary frames; frames over LEAN_RLE_BYTES are unpacked plane by plane from the
file). Anything else returns None and goes through pydicom.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset

from edge_service.acquisition.dicomguard import DicomBudget, PixelLayout, safe_get
from edge_service.errors import InputError

NATIVE_LE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")  # implicit / explicit VR LE
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
_ITEM, _SEQ_DELIM = 0xFFFEE000, 0xFFFEE0DD
_ITEM_HDR = struct.Struct("<HHL")
#: RLE frames larger than this are unpacked plane by plane (see _rle).
LEAN_RLE_BYTES = 16 << 20


def direct_frames(path: str, ds: Dataset, layout: PixelLayout) -> Iterator[np.ndarray] | None:
    """Frames as (rows, columns) or (rows, columns, 3) arrays of the stored values, or None
    for other layouts. The layout has been checked against the file by dicomguard (sizes,
    fragment count)."""
    plan = direct_plan(ds, layout)
    if plan is None:
        return None
    ts, tell, dtype = plan
    if ts == RLE_LOSSLESS:
        return _rle(path, tell, layout, dtype)
    return _native(path, tell, layout, dtype)


def direct_plan(ds: Dataset, layout: PixelLayout) -> tuple[str, int, np.dtype] | None:
    """(transfer syntax, file offset of the Pixel Data value, sample dtype) when this module
    reads the file's frames, else None (pydicom and its codec plugins do)."""
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    spp, bits = layout.samples_per_pixel, layout.bits_allocated
    photometric = str(safe_get(ds, "PhotometricInterpretation", ""))
    grey = spp == 1 and bits in (8, 16)
    # RGB only: pydicom converts YBR to RGB, which these paths do not.
    rgb = spp == 3 and bits == 8 and photometric == "RGB"
    if (
        not (grey or rgb)
        or _int(safe_get(ds, "PixelRepresentation", 0)) != 0
        or ts not in (*NATIVE_LE, RLE_LOSSLESS)
        or (rgb and ts != RLE_LOSSLESS and _int(safe_get(ds, "PlanarConfiguration", 0)) != 0)
    ):
        return None
    elem = ds.get_item("PixelData", keep_deferred=True)
    tell = getattr(elem, "value_tell", None)
    if tell is None or getattr(elem, "value", None) is not None:
        return None  # read into memory already (a small file): pydicom is as good
    return ts, int(tell), np.dtype("<u2" if bits == 16 else "u1")


def check_decoder_budget(path: str, ds: Dataset, layout: PixelLayout, budget: DicomBudget) -> None:
    """Frames decoded by pydicom's plugins hold ~2.5-3x their size (dicomguard)."""
    if layout.frame_bytes <= budget.max_decoder_frame_bytes or direct_plan(ds, layout):
        return
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = ts.name if ts is not None else "implicit VR"
    raise InputError(
        f"{path}: one {name} frame of {layout.frame_bytes / 2**20:.0f} MiB is over the "
        f"{budget.max_decoder_frame_bytes >> 20} MiB limit for frames in this encoding (only "
        f"unsigned grey and RGB frames, uncompressed or RLE, may be up to "
        f"{budget.max_frame_bytes >> 20} MiB); re-encode it"
    )


def _int(v: object) -> int:
    try:
        return int(v)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return -1


def _shape(layout: PixelLayout) -> tuple[int, ...]:
    spp = layout.samples_per_pixel
    return (layout.rows, layout.columns) + ((spp,) if spp > 1 else ())


def _native(path: str, tell: int, layout: PixelLayout, dtype: np.dtype) -> Iterator[np.ndarray]:
    size = layout.frame_bytes
    with open(path, "rb") as f:
        f.seek(tell)
        for i in range(layout.n_frames):
            arr = np.empty(_shape(layout), dtype)
            if f.readinto(arr.data.cast("B")) != size:
                raise InputError(f"{path}: frame {i} is cut short (truncated file)")
            yield arr


def _rle(path: str, tell: int, layout: PixelLayout, dtype: np.dtype) -> Iterator[np.ndarray]:
    from rle.rle import decode_frame  # pylibjpeg-rle: pydicom's RLE plugin

    pixels = layout.rows * layout.columns
    spp = layout.samples_per_pixel
    # The plugin holds its result twice (its own vector, then the bytearray): fine for
    # ordinary frames, over 2x for frames near the budget, which are unpacked here instead.
    lean = layout.frame_bytes > LEAN_RLE_BYTES
    with open(path, "rb") as f:
        f.seek(tell)
        f.seek(_item(f, path), 1)  # skip the Basic Offset Table
        for i in range(layout.n_frames):
            length = _item(f, path)
            if lean:
                start = f.tell()
                yield _rle_lean(f, start, length, layout, dtype, f"{path}: RLE frame {i}")
                f.seek(start + length)
                continue
            frag = f.read(length)
            if len(frag) != length:
                raise InputError(f"{path}: RLE frame {i} is cut short (truncated file)")
            try:
                buf = decode_frame(frag, pixels, layout.bits_allocated, "<")
            except ValueError as exc:
                raise InputError(f"{path}: RLE frame {i} cannot be decoded: {exc}") from None
            del frag
            if len(buf) != pixels * spp * dtype.itemsize:
                raise InputError(f"{path}: RLE frame {i} decodes to {len(buf)} bytes")
            # The decoder's own bytearray becomes the frame (writable, no copy); colour
            # comes out one plane after the other (a view puts the samples last).
            arr = np.frombuffer(buf, dtype)
            if spp == 1:
                yield arr.reshape(layout.rows, layout.columns)
            else:
                yield arr.reshape(spp, layout.rows, layout.columns).transpose(1, 2, 0)


def _rle_lean(
    f: BinaryIO, start: int, length: int, layout: PixelLayout, dtype: np.dtype, where: str
) -> np.ndarray:
    """One RLE frame, one segment (byte plane) at a time, read from the file in chunks:
    peak = the frame + one plane (PS3.5 G: a 64-byte header, then PackBits segments, sample
    by sample, most significant byte first)."""
    pixels = layout.rows * layout.columns
    spp, width = layout.samples_per_pixel, dtype.itemsize
    header = f.read(64)
    if len(header) != 64 or length < 64:
        raise InputError(f"{where}: no RLE header (truncated)")
    n_seg, *offsets = struct.unpack("<16L", header)
    if n_seg != spp * width:
        raise InputError(f"{where}: {n_seg} RLE segments for {spp} x {width}-byte samples")
    bounds = [*offsets[:n_seg], length]
    out = np.empty(pixels * spp, dtype)
    plane = out if n_seg == 1 else np.empty(pixels, np.uint8)
    stride = spp * width  # bytes per pixel in `out`
    for k in range(n_seg):
        lo, hi = bounds[k], bounds[k + 1]
        if not 64 <= lo <= hi <= length:
            raise InputError(f"{where}: RLE segment {k} offsets {lo}..{hi} outside the frame")
        f.seek(start + lo)
        _unpack_bits(f, hi - lo, plane.data.cast("B"), f"{where} segment {k}")
        if plane is not out:
            sample, msb_index = divmod(k, width)  # little endian: the MSB is the last byte
            at = sample * width + (width - 1 - msb_index)
            out.view(np.uint8)[at::stride] = plane
    return out.reshape(_shape(layout))


_RUNS = [bytes((v,)) * 128 for v in range(256)]
_CHUNK = 1 << 20


def _unpack_bits(f: BinaryIO, size: int, out: memoryview, where: str) -> None:
    """PackBits (PS3.5 G.3.1) of `size` bytes read from `f` in chunks into `out`, which it
    must fill exactly."""
    n, pos, j, left = len(out), 0, 0, size
    enc = b""
    while pos < n:
        if len(enc) - j < 129 and left:  # one command needs at most 129 bytes
            more = f.read(min(left, _CHUNK))
            if not more:
                raise InputError(f"{where}: cut short (truncated file)")
            enc, j, left = enc[j:] + more, 0, left - len(more)
        m = len(enc)
        if j >= m:
            raise InputError(f"{where}: decodes to {pos} bytes, {n} expected")
        c = enc[j]
        j += 1
        if c < 128:  # the next c + 1 bytes literally
            k = c + 1
            if pos + k > n or j + k > m:
                raise InputError(f"{where}: literal run past the end of the segment")
            out[pos : pos + k] = enc[j : j + k]
            j += k
        elif c > 128:  # the next byte 257 - c times
            k = 257 - c
            if pos + k > n or j >= m:
                raise InputError(f"{where}: repeat run past the end of the segment")
            out[pos : pos + k] = _RUNS[enc[j]][:k]
            j += 1
        else:
            continue  # 128: no operation
        pos += k


def _item(f: BinaryIO, path: str) -> int:
    raw = f.read(8)
    if len(raw) != 8:
        raise InputError(f"{path}: encapsulated Pixel Data cut short (truncated file)")
    group, elem, length = _ITEM_HDR.unpack(raw)
    if (group << 16 | elem) != _ITEM:
        raise InputError(
            f"{path}: malformed encapsulated Pixel Data (item tag {group:04X}{elem:04X})"
        )
    return int(length)


def ybr_to_rgb_inplace(arr: np.ndarray, photometric: str) -> np.ndarray:
    """pydicom's YBR_FULL(_422) -> RGB conversion (bit-identical), in blocks of rows written
    back into `arr`: pydicom converts a whole frame through float temporaries, ~9x a
    frame at peak (measured on a 32 MiB JPEG frame)."""
    from pydicom.pixels.processing import convert_color_space

    h, w = arr.shape[:2]
    step = max(1, (1 << 20) // max(1, w * 3))
    for y in range(0, h, step):
        arr[y : y + step] = convert_color_space(arr[y : y + step], photometric, "RGB")
    return arr
