"""Detector settings (composed into the root config by the service)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DetectorSettings(BaseModel):
    """How the nerve/calcification detector runs.

    model_path: ONNX file; None = the model shipped in models/ (`precision` picks fp32/int8).
    precision: "fp32" (models/dgs_seg.onnx) or "int8" (models/dgs_seg.int8.onnx).
    threads: onnxruntime intra-op threads (1 = one core, leaves the rest to the service).
    nerve_threshold / calcification_threshold: class probability for a pixel to count.
    nerve_min_area_mm2: smaller nerve candidates are noise ("not found").
    calcification_min_area_mm2: smaller calcification candidates are ignored.
    shadow_ratio: a calcification casts a shadow when the echo below it is below this
        fraction of the echo above it.
    """

    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None
    precision: Literal["fp32", "int8"] = "fp32"
    threads: int = Field(default=1, ge=1, le=16)
    nerve_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    calcification_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    nerve_min_area_mm2: float = Field(default=8.0, ge=0.0)
    calcification_min_area_mm2: float = Field(default=2.0, ge=0.0)
    shadow_ratio: float = Field(default=0.5, gt=0.0, lt=1.0)
