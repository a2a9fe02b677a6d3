"""The one frame-source interface: every source is an iterator of `Frame` with `info`."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Self

from edge_service.acquisition.frame import Frame, Roi


@dataclass
class SourceInfo:
    """What a source knows about itself before (or without) decoding every frame.

    n_frames is None for live sources. spacing_mm is None when the source carries no
    physical calibration: then consumers must refuse mm measurements.
    """

    kind: str
    path: str
    n_frames: int | None
    width: int
    height: int
    spacing_mm: tuple[float, float] | None
    roi: Roi | None = None
    fps_hz: float | None = None
    transfer_syntax: str | None = None
    vendor: str | None = None
    model: str | None = None
    photometric: str | None = None
    spacing_origin: str | None = None  # "us-regions", "pixel-spacing", "user", "depth"
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["roi"] = (
            None if self.roi is None else [self.roi.x0, self.roi.y0, self.roi.x1, self.roi.y1]
        )
        d["spacing_mm"] = None if self.spacing_mm is None else list(self.spacing_mm)
        return d


class FrameSource(abc.ABC):
    """Iterator of `Frame`; a context manager; `close()` releases the device or file."""

    @property
    @abc.abstractmethod
    def info(self) -> SourceInfo: ...

    @abc.abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames in order. File sources can be iterated again; live ones cannot."""

    def close(self) -> None:  # noqa: B027 - optional hook, most file sources hold nothing open
        """Release resources; safe to call twice."""

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_spacing(spacing_mm: tuple[float, float] | None) -> tuple[float, float] | None:
    """Validate a user/device spacing: two positive finite numbers in mm/px."""
    if spacing_mm is None:
        return None
    import math

    from edge_service.errors import InputError

    try:
        dx, dy = (float(v) for v in spacing_mm)
    except (TypeError, ValueError) as exc:
        raise InputError(f"spacing must be two numbers in mm/px, got {spacing_mm!r}") from exc
    if not (math.isfinite(dx) and math.isfinite(dy) and dx > 0 and dy > 0):
        raise InputError(f"spacing must be positive mm/px, got {spacing_mm!r}")
    return (dx, dy)
