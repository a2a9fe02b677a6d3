"""Session analysis: gliding tracker, manoeuvre detection, result document, report, compare."""

from __future__ import annotations

from edge_service.analysis.compare import compare
from edge_service.analysis.manoeuvres import Episode, detect
from edge_service.analysis.result import read_result, validate
from edge_service.analysis.session import SessionAnalyzer, analyze_session
from edge_service.analysis.settings import AnalysisSettings
from edge_service.analysis.tracker import Box, GlidingTracker, TrackStep

__all__ = [
    "AnalysisSettings",
    "Box",
    "Episode",
    "GlidingTracker",
    "SessionAnalyzer",
    "TrackStep",
    "analyze_session",
    "compare",
    "detect",
    "read_result",
    "validate",
]
