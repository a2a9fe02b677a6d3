"""Injection guidance (issue 16, case report 2.4): per-frame procedure state from the needle
locator and the detector, alarms, injections, needle passes and the procedure result.

Pure logic over `Observation`s (unit-tested with NeedleResult sequences); the image step that
measures the injectate spread is `spread.SpreadMeter`; the live session wires them up
(edge_service/live/procedure.py).
"""

from edge_service.procedure.observation import Alarm, FrameState, Observation
from edge_service.procedure.settings import ProcedureSettings
from edge_service.procedure.tracker import ProcedureTracker

__all__ = ["Alarm", "FrameState", "Observation", "ProcedureSettings", "ProcedureTracker"]
