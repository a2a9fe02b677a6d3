"""Input of the needle model (models/needle.onnx), pure numpy; training uses these very
functions so both sides see identical inputs.

Channels (1, 3, H, W): the current frame's B-mode ROI resized like the nerve model's input
(box average + bilinear, /255), and two temporal cues: the difference to the previous frame
and to the frame three back, scaled by DIFF_GAIN and clipped to [-1, 1]. A needle whose
shaft is out of the beam still moves the tissue around its tip; the differences carry that.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from edge_service.acquisition.frame import Frame, Roi
from edge_service.detector.preprocess import input_scale, prepare_input

IN_H, IN_W = 160, 224
LAGS = (1, 3)  # frames back for the difference channels
DIFF_GAIN = 4.0


def frame_plane(pixels: np.ndarray, roi: Roi, h: int = IN_H, w: int = IN_W) -> np.ndarray:
    """uint8 frame -> (h, w) float32 in [0, 1] over the ROI."""
    return prepare_input(pixels, roi, h, w)[0, 0]


def stack_planes(cur: np.ndarray, lagged: list[np.ndarray]) -> np.ndarray:
    """Current plane + one lagged plane per LAGS entry -> (1, 1 + len(LAGS), h, w)."""
    chans = [cur] + [np.clip(DIFF_GAIN * (cur - p), -1.0, 1.0) for p in lagged]
    return np.stack(chans)[None].astype(np.float32)


def to_input(row: float, col: float, roi: Roi, scale: tuple[float, float]) -> tuple[float, float]:
    """Frame pixel (row, col) -> input-grid coordinates (exactly prepare_input's mapping:
    input pixel i is centred on frame pixel roi0 + (i + 0.5) * scale - 0.5)."""
    return (row - roi.y0 + 0.5) / scale[0] - 0.5, (col - roi.x0 + 0.5) / scale[1] - 0.5


def to_frame(r: float, c: float, roi: Roi, scale: tuple[float, float]) -> tuple[float, float]:
    return roi.y0 + (r + 0.5) * scale[0] - 0.5, roi.x0 + (c + 0.5) * scale[1] - 0.5


def roi_scale(roi: Roi, h: int = IN_H, w: int = IN_W) -> tuple[float, float]:
    return input_scale(roi.height, roi.width, h, w)


class History:
    """The last few input planes of one source (reset between sessions). A change of ROI or
    frame size restarts it (the planes would not be comparable)."""

    def __init__(self, h: int = IN_H, w: int = IN_W) -> None:
        self.h, self.w = h, w
        self._planes: deque[np.ndarray] = deque(maxlen=max(LAGS) + 1)
        self._key: tuple[object, ...] | None = None

    def reset(self) -> None:
        self._planes.clear()
        self._key = None

    def push(self, frame: Frame) -> np.ndarray:
        """Add the frame and return the model input (1, C, h, w). Missing history (the first
        frames of a session) repeats the oldest plane, i.e. zero difference."""
        roi = frame.region
        key = (frame.pixels.shape, roi)
        if key != self._key:
            self.reset()
            self._key = key
        cur = frame_plane(frame.pixels, roi, self.h, self.w)
        self._planes.append(cur)
        planes = list(self._planes)
        lagged = [planes[max(0, len(planes) - 1 - lag)] for lag in LAGS]
        return stack_planes(cur, lagged)
