"""Conversions of decoded pixel arrays (any photometric interpretation) to grayscale uint8."""

from __future__ import annotations

import numpy as np

from edge_service.errors import InputError


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, the same weights the scanners' YBR encoding uses."""
    if rgb.dtype != np.uint8:
        rgb = to_uint8(rgb)
    import cv2

    return np.ascontiguousarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))


def chroma_fraction(rgb: np.ndarray, box: tuple[int, int, int, int] | None = None) -> float:
    """Fraction of pixels (inside box = (x0, y0, x1, y1)) whose channels differ by more than
    30 grey levels: colour/power Doppler, colour maps. B-mode, even through lossy YBR/JPEG
    chroma subsampling, stays well below that spread. Channel order does not matter."""
    if box is not None:
        x0, y0, x1, y1 = box
        rgb = rgb[y0:y1, x0:x1]
    if rgb.size == 0 or rgb.ndim != 3 or rgb.shape[-1] < 3:
        return 0.0
    if rgb.dtype != np.uint8:
        c = rgb[..., :3].astype(np.int32)
        spread = c.max(axis=-1) - c.min(axis=-1)
        return float((spread > 30).mean())
    # uint8: max - min cannot wrap; in blocks of rows, so a frame near the memory budget
    # needs no full-size temporaries (the int16 copy alone was twice the frame).
    h, w = rgb.shape[:2]
    step = max(1, (4 << 20) // (w * 3))
    hits = 0
    for y in range(0, h, step):
        blk = rgb[y : y + step, :, :3]
        hits += int(np.count_nonzero(blk.max(axis=-1) - blk.min(axis=-1) > 30))
    return hits / (h * w)


def to_uint8(
    arr: np.ndarray, bits_stored: int | None = None, *, consume: bool = False
) -> np.ndarray:
    """Scale an integer array to uint8 by dropping low bits (no per-frame windowing:
    that would make brightness depend on the frame's content and break replay).

    Works in the array's own width (never widening to int64: for a 64 MiB 16-bit frame that
    alone was 512 MiB). consume=True lets it shift `arr` in place (the caller's array is then
    garbage), so converting one frame costs half a frame more instead of one and a half.
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        span = hi - lo if hi > lo else 1.0
        return np.clip((arr - lo) * (255.0 / span), 0, 255).astype(np.uint8)
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    width = arr.dtype.itemsize * 8
    if arr.dtype.kind == "i":
        # Signed -> unsigned of the same width by adding the offset modulo 2**width: exact
        # for every in-range sample, no wider temporary.
        utype = np.dtype(f"u{arr.dtype.itemsize}").newbyteorder(arr.dtype.byteorder)
        offset = 1 << ((bits_stored if bits_stored and bits_stored <= width else width) - 1)
        arr = arr.view(utype) + utype.type(offset)
        consume = True  # a fresh array now: ours to modify
    bits = min(bits_stored or width, width)
    shift = max(bits - 8, 0)
    out = np.right_shift(arr, shift, out=arr if consume and arr.flags.writeable else None)
    np.minimum(out, 255, out=out)
    return out.astype(np.uint8)


def frame_to_gray(
    frame: np.ndarray, photometric: str, bits_stored: int | None, *, consume: bool = False
) -> np.ndarray:
    """One decoded frame (H,W) or (H,W,3) already in RGB/monochrome space -> (H,W) uint8.

    consume=True: `frame` is a temporary the caller no longer needs (converted in place)."""
    if frame.ndim == 3:
        if frame.shape[-1] == 1:
            frame = frame[..., 0]
        elif frame.shape[-1] in (3, 4):
            return rgb_to_gray(frame[..., :3])
        else:
            raise InputError(f"unsupported pixel layout {frame.shape}")
    if frame.ndim != 2:
        raise InputError(f"unsupported pixel layout {frame.shape}")
    gray = to_uint8(frame, bits_stored, consume=consume)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.ascontiguousarray(gray)
