"""Model input preparation, pure numpy (no OpenCV on the inference path).

The I/O contract of the segmentation model (models/MODEL_CARD.md): the B-mode ROI of the
frame is box-averaged down by an integer factor (speckle averaging, anti-aliasing) and then
resized bilinearly to the model's input size; values are pixels / 255 as float32 in
NCHW = (1, 1, H, W). Training uses this very function so both sides see identical inputs.
"""

from __future__ import annotations

import numpy as np

from edge_service.acquisition.frame import Roi


def _bilinear_index(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights for half-pixel-centred bilinear resampling."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def box_down(img: np.ndarray, ky: int, kx: int) -> np.ndarray:
    """Average non-overlapping ky x kx blocks (the remainder rows/columns are dropped)."""
    if ky == 1 and kx == 1:
        return img.astype(np.float32, copy=False)
    h, w = img.shape[0] // ky * ky, img.shape[1] // kx * kx
    # Strided adds beat reshape+mean ~20x here (it matters: this runs on every frame).
    acc_t = np.uint16 if img.dtype == np.uint8 and ky * kx <= 256 else np.float32
    v: np.ndarray = img[:h, :w].astype(acc_t)
    cols: np.ndarray = v[:, 0::kx].copy()
    for i in range(1, kx):
        cols += v[:, i::kx]
    rows: np.ndarray = cols[0::ky].copy()
    for i in range(1, ky):
        rows += cols[i::ky]
    return rows.astype(np.float32) * np.float32(1.0 / (ky * kx))


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    h, w = img.shape
    r0, r1, fy = _bilinear_index(h, out_h)
    c0, c1, fx = _bilinear_index(w, out_w)
    top = img[r0]
    bot = img[r1]
    fx2 = fx[None, :]
    a = top[:, c0] * (1 - fx2) + top[:, c1] * fx2
    b = bot[:, c0] * (1 - fx2) + bot[:, c1] * fx2
    return (a * (1 - fy[:, None]) + b * fy[:, None]).astype(np.float32)


def resize_area(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Integer box averaging then bilinear: cheap and alias-free for downscaling."""
    h, w = img.shape
    ky = max(1, h // out_h)
    kx = max(1, w // out_w)
    return resize_bilinear(box_down(img, ky, kx), out_h, out_w)


def content_roi(pixels: np.ndarray, level: int = 8, min_fraction: float = 0.01) -> Roi | None:
    """Bounding box of the image content (rows/columns with more than min_fraction of their
    pixels above `level`) for frames whose source gives no B-mode region (video, image
    files, DICOM without ultrasound regions). The model was trained on the ROI of the
    fan, so a capture with wide black margins would be scaled differently and look foreign.
    None when there is no content or it already fills the frame."""
    on = pixels > level
    rows = np.nonzero(on.mean(axis=1) > min_fraction)[0]
    cols = np.nonzero(on.mean(axis=0) > min_fraction)[0]
    if rows.size < 2 or cols.size < 2:
        return None
    roi = Roi(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    h, w = pixels.shape
    if roi.width == w and roi.height == h:
        return None
    return roi


def crop_roi(pixels: np.ndarray, roi: Roi | None) -> np.ndarray:
    if roi is None:
        return pixels
    return pixels[roi.y0 : roi.y1, roi.x0 : roi.x1]


def prepare_input(pixels: np.ndarray, roi: Roi | None, in_h: int, in_w: int) -> np.ndarray:
    """uint8 frame -> (1, 1, in_h, in_w) float32 in [0, 1] (the model's input tensor)."""
    x = resize_area(crop_roi(pixels, roi), in_h, in_w) * np.float32(1.0 / 255.0)
    return x[None, None]


def input_scale(roi_h: int, roi_w: int, in_h: int, in_w: int) -> tuple[float, float]:
    """ROI pixels per model-input pixel (rows, cols), exactly as prepare_input maps them
    (box averaging drops the remainder rows/columns)."""
    ky = max(1, roi_h // in_h)
    kx = max(1, roi_w // in_w)
    return (roi_h // ky * ky) / in_h, (roi_w // kx * kx) / in_w


def sample_bilinear(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """img sampled on the grid rows x cols (float source coordinates, clamped)."""
    h, w = img.shape
    r = np.clip(rows, 0.0, h - 1)
    c = np.clip(cols, 0.0, w - 1)
    r0 = np.floor(r).astype(np.intp)
    c0 = np.floor(c).astype(np.intp)
    r1 = np.minimum(r0 + 1, h - 1)
    c1 = np.minimum(c0 + 1, w - 1)
    fr = (r - r0).astype(np.float32)[:, None]
    fc = (c - c0).astype(np.float32)[None, :]
    top = img[r0][:, c0] * (1 - fc) + img[r0][:, c1] * fc
    bot = img[r1][:, c0] * (1 - fc) + img[r1][:, c1] * fc
    return top * (1 - fr) + bot * fr
