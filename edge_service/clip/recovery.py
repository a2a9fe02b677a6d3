"""What the clip link does when the clip reboots (docs/link.md, "Clip reboots").

Detected by a sequence restart (the decoder's DeviceReset) or a HELLO with a new boot id
(protocol 1.1). The link then counts it, restarts the clock fit, raises `clip_rebooted`
(with the reset cause from the HELLO), `clip_uncalibrated` if the clip came back without its
calibration, and, if the host had asked for samples, restores the rate it set and re-sends
`start` from a worker thread (commands wait for replies that the reader thread delivers).
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import TYPE_CHECKING

from dgsclip import protocol as P

from edge_service.clip.messages import ClipInfo
from edge_service.errors import DeviceError

if TYPE_CHECKING:
    from edge_service.clip.link import ClipLink

log = logging.getLogger("edge_service.clip.link")


class RebootRecovery:
    def __init__(self, link: ClipLink) -> None:
        self.link = link
        self.streaming_wanted = False  # the host sent `start` and not `stop` since
        self.rate_set: int | None = None  # the rate the host set, restored after a reboot
        self.boot_id: int | None = None  # of the last HELLO
        self._info_pending = False  # a sequence restart was seen; its HELLO follows
        self._how = ""
        self._lock = threading.Lock()
        self._pending = False
        self._again = False

    def hello(self, info: ClipInfo) -> None:
        prev = self.boot_id
        if info.boot_id is not None:
            self.boot_id = info.boot_id
        if self._info_pending:  # the HELLO of a restart the sequence showed
            self._info_pending = False
            self._announce(info, self._how)
        elif prev is not None and info.boot_id is not None and prev != info.boot_id:
            # A new boot id without a visible sequence restart (e.g. a reboot while
            # unplugged: the decoder's sequence state was reset on reconnect).
            self.rebooted(f"boot id {prev} -> {info.boot_id}", info)

    def rebooted(self, how: str, info: ClipInfo | None) -> None:
        link = self.link
        link.stats.clip_reboots += 1
        link.clock.reset("clip rebooted")
        if info is None:
            # The HELLO that follows the restart carries the reset cause: alarm then.
            self._info_pending = True
            self._how = how
        else:
            self._announce(info, how)
        if self.streaming_wanted:
            self._schedule_restart()

    def _announce(self, info: ClipInfo, how: str) -> None:
        alarms = self.link.alarms
        cause = info.reset_cause_name or "unknown"
        alarms.raise_(
            "clip_rebooted",
            f"clip rebooted ({how}; reset cause {cause})",
            reset_cause=cause,
            boot_id=info.boot_id,
            cal_state=info.cal_state,
        )
        if info.cal_state != P.CAL_FULL:
            alarms.raise_(
                "clip_uncalibrated",
                "the clip came back without its full calibration: recalibrate "
                "(dgs-clip calibrate) before trusting the angles",
                cal_state=info.cal_state,
            )
        else:
            alarms.clear("clip_uncalibrated")

    def _schedule_restart(self) -> None:
        with self._lock:
            self._again = True  # a reboot during a restart gets its own restart
            if self._pending:
                return
            self._pending = True
        threading.Thread(target=self._restart_stream, name="clip-restart", daemon=True).start()

    def _restart_stream(self) -> None:
        link = self.link
        while True:
            with self._lock:
                if not self._again or link.stopping:
                    self._pending = False
                    return
                self._again = False
            try:
                if self.rate_set is not None:
                    link.command(P.CMD_SET_RATE, struct.pack("<H", self.rate_set))
                link.command(P.CMD_START)
                link.stats.stream_restarts += 1
                link.alarms.clear("stream_restart_failed")
                log.info("clip stream restarted after reboot")
            except DeviceError as exc:
                link.alarms.raise_(
                    "stream_restart_failed", f"re-sending start after a reboot failed: {exc}"
                )
