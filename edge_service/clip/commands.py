"""The clip's commands as typed methods, on top of `ClipLink.command` (ACK/NAK, retries).

Kept apart from the link so the reader thread, reconnect and statistics stay in one module
and the command vocabulary (one method per protocol command) in another."""

from __future__ import annotations

import json
import struct
from typing import Any

from dgsclip import protocol as P

from edge_service.clip.messages import Ack, ClipInfo, ClipStatus
from edge_service.clip.recovery import RebootRecovery
from edge_service.clip.settings import ClipLinkSettings
from edge_service.errors import DeviceError


class ClipCommands:
    """Mixin: needs `command()`, `settings`, `recovery`, `info` and `status` from the link."""

    settings: ClipLinkSettings
    recovery: RebootRecovery
    info: ClipInfo | None
    status: ClipStatus | None

    def command(
        self,
        cmd: int,
        args: bytes = b"",
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> Ack:
        raise NotImplementedError

    def get_info(self) -> ClipInfo:
        info = self.command(P.CMD_INFO).info()
        self.info = info
        return info

    def start(self) -> None:
        self.recovery.streaming_wanted = True  # first: a reboot meanwhile restarts it
        self.command(P.CMD_START)

    def stop(self) -> None:
        self.recovery.streaming_wanted = False
        self.command(P.CMD_STOP)

    def set_rate(self, rate_hz: int) -> None:
        if not 1 <= rate_hz <= 0xFFFF:
            raise DeviceError(f"rate {rate_hz} Hz is out of range")
        self.command(P.CMD_SET_RATE, struct.pack("<H", rate_hz))
        self.recovery.rate_set = rate_hz

    def calibrate_neutral(self, duration_s: float = 3.0) -> str:
        return self._calibrate(P.CMD_CALIBRATE_NEUTRAL, duration_s)

    def calibrate_functional(self, duration_s: float = 8.0) -> str:
        return self._calibrate(P.CMD_CALIBRATE_FUNCTIONAL, duration_s)

    def _calibrate(self, cmd: int, duration_s: float) -> str:
        ms = round(duration_s * 1000)
        if not 0 <= ms <= 0xFFFF:
            raise DeviceError(f"calibration duration {duration_s} s is out of range (0..65 s)")
        ack = self.command(
            cmd,
            struct.pack("<H", ms),
            timeout_s=duration_s + self.settings.calibrate_margin_s,
            retries=0,
        )
        return ack.text()

    def get_config(self) -> dict[str, Any]:
        text = self.command(P.CMD_GET_CONFIG).text()
        try:
            cfg = json.loads(text) if text else {}
        except ValueError:
            raise DeviceError(f"clip sent an unreadable config: {text[:80]!r}") from None
        if not isinstance(cfg, dict):
            raise DeviceError("clip config is not a JSON object")
        return cfg

    def set_config(self, changes: dict[str, Any]) -> None:
        blob = json.dumps(changes, separators=(",", ":")).encode()
        if len(blob) > P.MAX_PAYLOAD - 1:
            raise DeviceError("config update too large for one frame; send fewer keys")
        self.command(P.CMD_SET_CONFIG, blob)

    def self_test(self) -> str:
        return self.command(
            P.CMD_SELF_TEST, timeout_s=max(2.0, self.settings.command_timeout_s)
        ).text()

    def get_status(self) -> ClipStatus:
        st = self.command(P.CMD_GET_STATUS).clip_status()
        self.status = st
        return st

    def reboot(self) -> None:
        self.command(P.CMD_REBOOT, retries=0)

    def exit_repl(self) -> None:
        self.command(P.CMD_EXIT_REPL, retries=0)
