"""Nerve/calcification detector: onnxruntime segmentation + measurements in mm."""

from __future__ import annotations

from edge_service.detector.detector import (
    CalcificationResult,
    Detection,
    Detector,
    NerveResult,
)
from edge_service.detector.settings import DetectorSettings

__all__ = ["CalcificationResult", "Detection", "Detector", "DetectorSettings", "NerveResult"]
