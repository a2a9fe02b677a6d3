"""Finding the clip: serial ports with a known USB VID:PID, confirmed by a hello handshake."""

from __future__ import annotations

import logging
import time

import serial
from dgsclip import protocol as P
from serial.tools import list_ports

from edge_service.clip.decoder import FrameDecoder, IncompatibleVersion
from edge_service.clip.messages import Ack, ClipInfo, Hello
from edge_service.clip.settings import ClipLinkSettings
from edge_service.errors import DeviceError

log = logging.getLogger(__name__)

_VID_PID_CACHE: dict[str, tuple[int, int]] = {}


def _vid_pid(s: str) -> tuple[int, int]:
    if s not in _VID_PID_CACHE:
        v, p = s.split(":")
        _VID_PID_CACHE[s] = (int(v, 16), int(p, 16))
    return _VID_PID_CACHE[s]


def usb_candidates(vid_pids: list[str]) -> list[str]:
    """Serial ports whose USB VID:PID is one of the clip boards'."""
    wanted = {_vid_pid(s) for s in vid_pids}
    return [p.device for p in list_ports.comports() if (p.vid, p.pid) in wanted]


def probe(port: str, settings: ClipLinkSettings) -> ClipInfo | None:
    """Hello handshake: open `port`, send `info`, return the clip's identity or None."""
    try:
        ser = serial.Serial(port, settings.baudrate, timeout=0.05, exclusive=True)
    except (serial.SerialException, OSError) as exc:
        log.debug("probe %s: cannot open (%s)", port, exc)
        return None
    try:
        dec = FrameDecoder(track_sequence=False)
        ser.write(b"\x00" + P.encode_command(0xFFFFFF00, P.CMD_INFO))
        deadline = time.monotonic() + settings.handshake_timeout_s
        while time.monotonic() < deadline:
            try:
                msgs = dec.feed(ser.read(ser.in_waiting or 1))
            except IncompatibleVersion as exc:
                log.warning("probe %s: %s", port, exc)
                return None
            for m in msgs:
                if isinstance(m, Hello):
                    return m.info
                if isinstance(m, Ack) and m.cmd == P.CMD_INFO and m.ok:
                    return m.info()
        return None
    except (serial.SerialException, OSError):
        return None
    finally:
        ser.close()


def detect_port(settings: ClipLinkSettings, candidates: list[str] | None = None) -> str:
    """The clip's port: USB VID/PID match (or the given candidates), confirmed by handshake."""
    ports = candidates if candidates is not None else usb_candidates(settings.vid_pids)
    if not ports:
        raise DeviceError(
            "no clip found: no serial port with a known clip USB id; plug it in or pass --port"
        )
    for port in ports:
        if probe(port, settings) is not None:
            return port
    raise DeviceError(f"no clip answered on {', '.join(ports)}; is the firmware running?")
