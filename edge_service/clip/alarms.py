"""Alarms of the clip link (docs/link.md, "Alarms") and the plausibility check of samples.

`AlarmBoard` keeps the active conditions and a bounded log and calls subscribers; the link
raises and clears; the service and the MQTT status read `ClipLink.stats_dict()["alarms"]`
or subscribe with `ClipLink.on_alarm(fn)`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dgsclip import protocol as P

from edge_service.clip.messages import Sample

log = logging.getLogger("edge_service.clip.link")

# Alarm codes (docs/link.md). "event" alarms happen once; "condition" alarms stay active
# until cleared (cleared=True is raised when they end).
ALARMS: dict[str, str] = {
    "clip_rebooted": "event: the clip rebooted (reset cause and boot id in details)",
    "stream_restart_failed": "condition: after a clip reboot, re-sending start failed",
    "clip_uncalibrated": "condition: the clip came back without its calibration",
    "incompatible_protocol": "condition: frames of another protocol major arrive",
    "clip_samples_dropped": "event: the clip's ring overflowed (host stalled too long)",
    "implausible_samples": "event: valid-CRC samples with impossible values were dropped",
}

_MAX_ANGLE_CDEG = 18000  # ISB hip angles lie in [-180, 180] deg
_Q14_NORM_TOL = 0.05  # |q| of a unit quaternion in Q14, allowing rounding


def implausible(m: Sample) -> str | None:
    """Why a checked SAMPLE cannot be a real measurement, or None."""
    if max(abs(m.flex_cdeg), abs(m.add_cdeg), abs(m.rot_cdeg)) > _MAX_ANGLE_CDEG:
        return "angle beyond +-180 deg"
    for q in (m.quat, m.pelvis_quat):
        if q is None:
            continue
        n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]) ** 0.5 / P.Q14
        if abs(n - 1.0) > _Q14_NORM_TOL:
            return f"quaternion norm {n:.3f}"
    return None


@dataclass(frozen=True)
class Alarm:
    code: str  # a key of ALARMS
    message: str
    at: float  # time.time()
    details: dict[str, Any] = field(default_factory=dict)
    cleared: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "at": round(self.at, 3),
            "details": dict(self.details),
            "cleared": self.cleared,
        }


class AlarmBoard:
    def __init__(self, log_size: int = 20) -> None:
        self.active: dict[str, Alarm] = {}
        self.log: deque[Alarm] = deque(maxlen=log_size)
        self._subs: list[Callable[[Alarm], None]] = []
        self._lock = threading.Lock()  # raised from the reader and the restart threads

    def subscribe(self, fn: Callable[[Alarm], None]) -> None:
        self._subs.append(fn)

    def raise_(self, code: str, message: str, **details: Any) -> None:
        a = Alarm(code, message, time.time(), details)
        with self._lock:
            if ALARMS[code].startswith("condition"):
                if code in self.active:
                    return
                self.active[code] = a
            self.log.append(a)
        log.warning("clip alarm %s: %s", code, message)
        self._emit(a)

    def clear(self, code: str) -> None:
        with self._lock:
            a = self.active.pop(code, None)
            if a is None:
                return
            c = Alarm(code, a.message, time.time(), a.details, cleared=True)
            self.log.append(c)
        log.info("clip alarm %s cleared", code)
        self._emit(c)

    def _emit(self, a: Alarm) -> None:
        for fn in self._subs:
            try:
                fn(a)
            except Exception:  # a broken alarm consumer must not kill the link
                log.exception("alarm subscriber failed")
