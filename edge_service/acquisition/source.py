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


#: Plausible ultrasound pixel spacing in mm/px, for every source (file, user, probe depth).
#: 0.01 mm/px is a high-frequency linear probe (~0.1 mm resolution) zoomed ~10x; 2 mm/px is
#: a 30 cm deep abdominal sector shown on ~150 px. A value outside is a unit error (mm given
#: as cm or m, a corrupt header), never a real image, and would give a wrong mm result.
SPACING_MIN_MM = 0.01
SPACING_MAX_MM = 2.0


def spacing_problem(value: object) -> str | None:
    """Why one spacing value (mm/px) is unusable, or None when it is plausible."""
    import math

    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"{value!r} is not a number"
    if not math.isfinite(v):
        return f"{v} is not finite"
    if v <= 0:
        return f"{v} is not positive"
    if not SPACING_MIN_MM <= v <= SPACING_MAX_MM:
        return (
            f"{v:.6g} mm/px is outside the plausible ultrasound range "
            f"{SPACING_MIN_MM}..{SPACING_MAX_MM} mm/px"
        )
    return None


def check_spacing(spacing_mm: tuple[float, float] | None) -> tuple[float, float] | None:
    """Validate a user/device spacing: two finite, positive, plausible numbers in mm/px."""
    if spacing_mm is None:
        return None
    from edge_service.errors import InputError

    try:
        dx, dy = spacing_mm
    except (TypeError, ValueError) as exc:
        raise InputError(f"spacing must be two numbers in mm/px, got {spacing_mm!r}") from exc
    for axis, v in (("dx", dx), ("dy", dy)):
        why = spacing_problem(v)
        if why is not None:
            raise InputError(f"spacing {axis}: {why} (must be positive mm/px)")
    return (float(dx), float(dy))


# A file's own calibration and a user spacing agree when within 1 % (rounding in exports).
SPACING_AGREE_REL = 0.01


def spacing_conflict(
    user: tuple[float, float], own: tuple[float, float], own_origin: str | None
) -> str | None:
    """The one line saying that `user` contradicts the file's calibration `own`, or None."""
    if all(abs(u - f) <= SPACING_AGREE_REL * f for u, f in zip(user, own, strict=True)):
        return None
    return (
        f"--spacing {user[0]:g},{user[1]:g} contradicts the file's own calibration "
        f"{own[0]:.4g},{own[1]:.4g} mm/px ({own_origin})"
    )
