"""Edge side of the IMU clip: wire decoder, serial link, clock sync and angle timeline.

Protocol spec: docs/protocol.md; design and API: docs/link.md.
"""

from edge_service.clip.clocksync import ClockSync
from edge_service.clip.decoder import FrameDecoder, IncompatibleVersion
from edge_service.clip.link import ClipLink, CommandFailed, CommandTimeout, detect_port
from edge_service.clip.settings import ClipLinkSettings, ClockSyncSettings, TimelineSettings
from edge_service.clip.timeline import Angles, AngleTimeline, ImuJsonlWriter, TimedSample

__all__ = [
    "AngleTimeline",
    "Angles",
    "ClipLink",
    "ClipLinkSettings",
    "ClockSync",
    "ClockSyncSettings",
    "CommandFailed",
    "CommandTimeout",
    "FrameDecoder",
    "ImuJsonlWriter",
    "IncompatibleVersion",
    "TimedSample",
    "TimelineSettings",
    "detect_port",
]
