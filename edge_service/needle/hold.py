"""Hysteresis for a confirmed needle that rests (issue 16: injections).

A needle that stops moving loses the learned locator's strongest cue (the frame
differences), and a bolus at the tip changes the image around it: the tip heat map's peak
then often falls below the detection threshold although the needle has not gone anywhere.
Once a needle is confirmed (edge_service.needle.track) and has been seen travelling at
least HOLD_MIN_TRAVEL_MM, it is kept at its place while there is evidence of it THERE, either

- tip evidence: the tip heat map's peak within HOLD_RADIUS_MM of the last kept tip reaches
  HOLD_TIP_THRESHOLD (below the detection threshold: hysteresis); the tip follows that
  local peak; or
- shaft evidence: along the last kept shaft line, HOLD_NEAR_MM to HOLD_FAR_MM behind the tip,
  at least HOLD_SHAFT_SUPPORT of the image samples are brighter than the 90th percentile of
  the samples on two parallel lines HOLD_OFFSET_MM to either side (a bright specular line
  exactly where the shaft was; measured on the B-mode image itself, so a bolus that confuses
  the model's difference channels does not remove it). The tip stays where it was in the
  tissue: it follows the image patch around it (normalised cross-correlation within
  HOLD_TRACK_MM), since the tissue and the probe move a little even while the needle rests.

Without either, nothing is reported for that frame (no tip is invented), and after
track.LOST_FRAMES such frames in a row the needle is dropped. Nothing here can confirm a
needle: a static reflector or a speckle patch never gets past the confirmation.
Limit: a needle withdrawn along its own line by less than HOLD_FAR_MM while its tip shows no
evidence at all keeps its last tip; a moving tip normally gives the full-threshold evidence.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

HOLD_TIP_THRESHOLD = 0.15
# Only a needle seen travelling this far since it was confirmed is held: a still bright line
# (fascia, bone edge) confirmed by the jitter of its heat-map peak would otherwise be held by
# its own "shaft" evidence for ever.
HOLD_MIN_TRAVEL_MM = 4.0
HOLD_RADIUS_MM = 3.0
HOLD_SHAFT_SUPPORT = 0.5
HOLD_NEAR_MM = 3.0
HOLD_FAR_MM = 15.0
HOLD_OFFSET_MM = 1.5
MIN_SAMPLES = 12
HOLD_PATCH_MM = 4.0
HOLD_TRACK_MM = 1.0  # per frame
HOLD_MATCH = 0.5


def local_peak(heat: np.ndarray, center: tuple[float, float], radius: float) -> tuple[int, int]:
    """(row, col) of the heat map's maximum within `radius` (input px) of `center`."""
    h, w = heat.shape
    r0, c0 = center
    rad = max(1, math.ceil(radius))
    y0, y1 = max(0, math.floor(r0) - rad), min(h, math.floor(r0) + rad + 2)
    x0, x1 = max(0, math.floor(c0) - rad), min(w, math.floor(c0) + rad + 2)
    if y1 <= y0 or x1 <= x0:
        return -1, -1
    yy, xx = np.mgrid[y0:y1, x0:x1]
    win = np.where((yy - r0) ** 2 + (xx - c0) ** 2 <= radius**2, heat[y0:y1, x0:x1], -1.0)
    k = int(np.argmax(win))
    return y0 + k // (x1 - x0), x0 + k % (x1 - x0)


def shaft_support(
    pixels: np.ndarray,
    tip_px: tuple[float, float],
    direction: tuple[float, float],
    px_mm: float,
) -> float:
    """Share (0..1) of the line HOLD_NEAR_MM..HOLD_FAR_MM behind the tip (against
    `direction`, the unit (row, col) towards the tip) that is a bright line: brighter than
    the 90th percentile of its two parallel neighbours. 0 when too little is in the image."""
    dr, dc = direction
    norm = math.hypot(dr, dc)
    if norm < 1e-6 or px_mm <= 0:
        return 0.0
    dr, dc = dr / norm, dc / norm
    h, w = pixels.shape
    ks = np.arange(HOLD_NEAR_MM, HOLD_FAR_MM, 0.25) / px_mm
    nr, nc = dc, -dr  # normal to the line
    # Only a band around the line is smoothed (3x3: speckle averaging along one line).
    rows = np.concatenate([tip_px[0] - dr * ks, [tip_px[0]]])
    cols = np.concatenate([tip_px[1] - dc * ks, [tip_px[1]]])
    pad = math.ceil(HOLD_OFFSET_MM / px_mm) + 3
    y0 = max(0, math.floor(rows.min()) - pad)
    y1 = min(h, math.ceil(rows.max()) + pad + 1)
    x0 = max(0, math.floor(cols.min()) - pad)
    x1 = min(w, math.ceil(cols.max()) + pad + 1)
    if y1 - y0 < 3 or x1 - x0 < 3:
        return 0.0
    img = cv2.blur(pixels[y0:y1, x0:x1].astype(np.float32), (3, 3))

    def sample(offset_mm: float) -> np.ndarray:
        o = offset_mm / px_mm
        r = np.round(tip_px[0] - dr * ks + nr * o).astype(int) - y0
        c = np.round(tip_px[1] - dc * ks + nc * o).astype(int) - x0
        ok = (r >= 0) & (r < y1 - y0) & (c >= 0) & (c < x1 - x0)
        # samples outside the frame count as missing, not as dark
        return np.where(ok, img[np.clip(r, 0, y1 - y0 - 1), np.clip(c, 0, x1 - x0 - 1)], np.nan)

    on = sample(0.0)
    off = np.concatenate([sample(HOLD_OFFSET_MM), sample(-HOLD_OFFSET_MM)])
    valid = ~np.isnan(on)
    off = off[~np.isnan(off)]
    if int(valid.sum()) < MIN_SAMPLES or off.size < MIN_SAMPLES:
        return 0.0
    # a line in the black outside of the fan is not a shaft
    if float(np.nanmax(on)) <= 0.0:
        return 0.0
    return float(np.mean(on[valid] > np.percentile(off, 90)))


def patch(pixels: np.ndarray, center: tuple[float, float], px_mm: float) -> np.ndarray | None:
    """The image around a kept tip (HOLD_PATCH_MM square), the template that follows it."""
    half = max(3, round(HOLD_PATCH_MM / 2 / px_mm))
    r, c = round(center[0]), round(center[1])
    h, w = pixels.shape
    if r - half < 0 or c - half < 0 or r + half + 1 > h or c + half + 1 > w:
        return None
    return pixels[r - half : r + half + 1, c - half : c + half + 1].copy()


def follow(
    pixels: np.ndarray, template: np.ndarray, center: tuple[float, float], px_mm: float
) -> tuple[float, float] | None:
    """Shift (rows, cols) of the template's best match within HOLD_TRACK_MM of where it was
    (normalised cross-correlation): a resting needle moves with the tissue and the probe.
    None when the match is poor (correlation below HOLD_MATCH) or out of the image."""
    half = template.shape[0] // 2
    reach = max(1, round(HOLD_TRACK_MM / px_mm))
    r, c = round(center[0]), round(center[1])
    h, w = pixels.shape
    y0, y1 = r - half - reach, r + half + reach + 1
    x0, x1 = c - half - reach, c + half + reach + 1
    if y0 < 0 or x0 < 0 or y1 > h or x1 > w:
        return None
    res = cv2.matchTemplate(
        pixels[y0:y1, x0:x1].astype(np.float32), template.astype(np.float32), cv2.TM_CCOEFF_NORMED
    )
    _, best, _, loc = cv2.minMaxLoc(res)
    if not math.isfinite(best) or best < HOLD_MATCH:
        return None
    return float(loc[1] - reach), float(loc[0] - reach)
