"""The one frame type every source yields and every consumer reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Roi:
    """B-mode region of interest in pixel coordinates, half-open: [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Frame:
    """One ultrasound frame.

    pixels: grayscale uint8, shape (H, W).
    t: host Unix epoch seconds at acquisition.
    index: 0-based frame index within the session/source.
    spacing_mm: (dx, dy) physical size of one pixel in mm (x = lateral, y = depth), or
        None when the source has no calibration (then no mm measurement is allowed).
    roi: the B-mode region (where the image is); defaults to the whole frame.
    """

    pixels: np.ndarray
    t: float
    index: int
    spacing_mm: tuple[float, float] | None
    roi: Roi | None = None
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 2:
            raise ValueError(
                f"Frame.pixels must be 2-D uint8, got {self.pixels.dtype} {self.pixels.shape}"
            )

    @property
    def region(self) -> Roi:
        h, w = self.pixels.shape
        return self.roi if self.roi is not None else Roi(0, 0, w, h)
