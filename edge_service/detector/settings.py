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
    nerve_relative_threshold: None = the fixed nerve_threshold; a value r = the nerve's
        boundary is at min(nerve_threshold, r * its peak probability) (a per-frame threshold
        for frames where the network is less sure of the whole nerve).
    nerve_size_from: "mask" = AP/width/CSA from the thresholded mask; "rim" = AP and width
        between the epineurium peaks of the image along the fitted axes, CSA scaled by the
        same corrections (docs/model.md, "Nerve size from the epineurium").
    calcification_max_extent_mm: a calcification candidate whose bright structure (the
        connected pixels at 80 % of the way from the soft tissue above to the candidate's echo,
        measure.bright_extent_mm) is longer than this is a bone cortex (a long continuous
        bright curve with its shadow: ischial spine, ischial shelf), not a focal calcification
        (phantom 5-15 mm long; 25 mm keeps every held-out own calcification in all three own
        validation sets, docs/model.md). None = off.
    view_gate: run the view / out-of-distribution gate (docs/model.md "View gate"); off only
        for models without a `features` output and its calibration (then every frame is
        taken as a valid view: use for development only).
    view_method: the gate's learned score: "classifier" (default: the auxiliary view
        classifier models/view_cls.onnx with models/view_cls.calibration.json, independent
        of the segmentation model) or "features" (the Mahalanobis distance of the
        segmentation model's features, calibrated in <model>.view.json; needs a model with a
        `features` output and a rerun of models.calibrate_view after every retraining).
    view_classifier_path: the view classifier's ONNX file (None = models/view_cls.onnx; its
        calibration is the .calibration.json next to it).
    view_min_score: frames whose view_score is below this get no measurements (None = the
        calibrated alpha of the chosen method).
    view_min_size_px / view_blank_std / view_contact_echo / view_contact_fraction /
        view_colour_fraction: the explicit checks (ROI smaller than this; ROI grey-level
        standard deviation below this; fewer than view_contact_fraction of the deep two
        thirds above grey level view_contact_echo; more than view_colour_fraction of the ROI
        with chroma).
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
    nerve_relative_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    nerve_size_from: Literal["mask", "rim"] = "mask"
    calcification_max_extent_mm: float | None = Field(default=25.0, gt=0.0)
    view_gate: bool = True
    view_method: Literal["classifier", "features"] = "classifier"
    view_classifier_path: str | None = None
    view_min_score: float | None = Field(default=None, gt=0.0, lt=1.0)
    view_min_size_px: int = Field(default=32, ge=1)
    view_blank_std: float = Field(default=3.0, ge=0.0)
    view_contact_echo: int = Field(default=25, ge=0, le=254)
    view_contact_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    view_colour_fraction: float = Field(default=0.002, ge=0.0, le=1.0)
