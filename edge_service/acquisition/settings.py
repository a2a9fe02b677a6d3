"""Settings of the frame source (composed into the root config by the lead)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_service.acquisition.frame import Roi

SourceKind = Literal["uvc", "dicom", "video", "folder", "recording", "phantom"]


class SourceSettings(BaseModel):
    """Where frames come from and how they are calibrated.

    Calibration precedence: the file's own (DICOM ultrasound regions) > `spacing_mm`
    > `depth_mm` (live sources). With none of them there is no mm measurement.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: SourceKind = Field(
        default="uvc", description="uvc | dicom | video | folder | recording | phantom"
    )
    device: str = Field(
        default="0",
        description="uvc: V4L2 index ('0') or device path ('/dev/video2'); files: the path",
    )
    crop_px: tuple[int, int, int, int] | None = Field(
        default=None, description="B-mode region to keep, x0,y0,x1,y1 in capture pixels (half-open)"
    )
    depth_mm: float | None = Field(
        default=None,
        gt=0,
        description="uvc: imaging depth shown over the crop height (probe preset)",
    )
    width_mm: float | None = Field(
        default=None,
        gt=0,
        description="uvc: lateral field width over the crop width (linear probes)",
    )
    spacing_mm: tuple[float, float] | None = Field(
        default=None, description="user calibration dx,dy mm/px when the source carries none"
    )
    fps_hz: float | None = Field(
        default=None,
        gt=0,
        description="requested capture rate (uvc) / nominal rate (folders, phantom)",
    )
    capture_size_px: tuple[int, int] | None = Field(
        default=None, description="uvc: requested capture width,height (None = driver default)"
    )
    stall_timeout_s: float = Field(
        default=2.0, gt=0, description="uvc: no frame this long = stalled"
    )
    reconnect_timeout_s: float = Field(
        default=10.0, ge=0, description="uvc: keep reopening a lost device this long, then fail"
    )
    freeze_mad_threshold: float = Field(
        default=0.25,
        ge=0,
        description="uvc: mean abs grey-level change below which a frame is flagged frozen (0 = off)",
    )
    phantom_manoeuvre: str = Field(default="fair", description="phantom: hip manoeuvre to simulate")
    phantom_seed: int = Field(default=0, description="phantom: random seed")

    @field_validator("spacing_mm")
    @classmethod
    def _positive_spacing(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        from edge_service.acquisition.source import spacing_problem

        for axis, val in zip(("dx", "dy"), v or (), strict=False):
            why = spacing_problem(val)
            if why is not None:
                raise ValueError(f"spacing_mm {axis}: {why}")
        return v

    @field_validator("crop_px")
    @classmethod
    def _crop_ordered(cls, v: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if v is not None and not (0 <= v[0] < v[2] and 0 <= v[1] < v[3]):
            raise ValueError("crop_px must be x0,y0,x1,y1 with 0 <= x0 < x1 and 0 <= y0 < y1")
        return v

    @model_validator(mode="after")
    def _width_needs_depth(self) -> SourceSettings:
        if self.width_mm is not None and self.depth_mm is None:
            raise ValueError("width_mm needs depth_mm")
        return self

    @property
    def crop(self) -> Roi | None:
        return None if self.crop_px is None else Roi(*self.crop_px)
