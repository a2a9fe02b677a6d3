"""Typed messages of clip wire protocol 1.0 (docs/protocol.md), as the host decoder yields them.

Integer wire units are kept (0.01 deg, Q14 quaternions) so decoding is exact and can be checked
against the golden vectors; properties give degrees and float quaternions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from dgsclip import protocol as P

_FLAG_NAMES: tuple[tuple[int, str], ...] = tuple(P.FLAG_NAMES)
_STATUS = struct.Struct(P.STATUS_FMT)
_HELLO_FIXED = struct.Struct(P.HELLO_FIXED_FMT)
_HELLO_EXT = struct.Struct(P.HELLO_EXT_FMT)
_STATUS_EXT = struct.Struct(P.STATUS_EXT_FMT)


def flag_names(flags: int) -> list[str]:
    """Names of the set SAMPLE status bits (unknown bits are ignored, per the spec)."""
    return [name for bit, name in _FLAG_NAMES if flags & bit]


@dataclass(slots=True)
class Sample:
    """One SAMPLE frame. Not frozen only because frozen dataclass construction costs ~3 µs
    (a quarter of the decode time per sample); treat it as read-only."""

    seq: int
    t_us: int
    flex_cdeg: int
    add_cdeg: int
    rot_cdeg: int
    quat: tuple[int, int, int, int]  # thigh orientation, Q14 (w, x, y, z)
    flags: int
    i2c_errors: int
    overruns: int
    pelvis_quat: tuple[int, int, int, int] | None = None
    minor: int = 0

    @property
    def flexion_deg(self) -> float:
        return self.flex_cdeg / 100.0

    @property
    def adduction_deg(self) -> float:
        return self.add_cdeg / 100.0

    @property
    def rotation_deg(self) -> float:
        return self.rot_cdeg / 100.0

    @property
    def quat_f(self) -> tuple[float, float, float, float]:
        w, x, y, z = self.quat
        return (w / P.Q14, x / P.Q14, y / P.Q14, z / P.Q14)

    @property
    def calibrated(self) -> bool:
        return bool(self.flags & P.FLAG_CALIBRATED)

    @property
    def status(self) -> list[str]:
        return flag_names(self.flags)


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """HELLO payload (also carried by the ACK of the `info` command)."""

    proto_major: int
    proto_minor: int
    rate_hz: int
    cal_state: int
    imu_count: int
    state: int
    fw_version: str
    device_id: str
    imu_models: str
    boot_id: int | None = None  # 1.1+: low 16 bits of the clip's boot counter
    reset_cause: int | None = None  # 1.1+: P.RESET_*

    @property
    def imus(self) -> list[str]:
        return [m for m in self.imu_models.split(",") if m]

    @property
    def reset_cause_name(self) -> str | None:
        if self.reset_cause is None:
            return None
        return P.RESET_NAMES.get(self.reset_cause, f"cause_{self.reset_cause}")


@dataclass(frozen=True, slots=True)
class Hello:
    seq: int
    t_us: int
    info: ClipInfo


@dataclass(frozen=True, slots=True)
class Log:
    seq: int
    t_us: int
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class ClipStatus:
    state: int
    cal_state: int
    rate_hz: int
    samples: int
    i2c_errors: int
    overruns: int
    cmd_errors: int
    free_mem: int
    uptime_s: int
    # 1.1+ (None from a 1.0 clip)
    ring_dropped: int | None = None
    ring_peak: int | None = None
    ring_capacity: int | None = None
    fifo_overflows: int | None = None
    tx_stalls: int | None = None
    tx_dropped: int | None = None
    boot_id: int | None = None
    reset_cause: int | None = None
    resets: int | None = None


@dataclass(frozen=True, slots=True)
class Status:
    seq: int
    t_us: int
    status: ClipStatus


@dataclass(frozen=True, slots=True)
class Ack:
    """ACK (code 0) or NAK (code != 0) for the command whose frame seq was `cmd_id`."""

    seq: int
    t_us: int
    cmd_id: int
    cmd: int
    code: int
    payload: bytes = b""

    @property
    def ok(self) -> bool:
        return self.code == P.ERR_OK

    @property
    def error_name(self) -> str:
        return P.ERROR_NAMES.get(self.code, f"error_{self.code}")

    def info(self) -> ClipInfo:
        return parse_info(self.payload)

    def clip_status(self) -> ClipStatus:
        return parse_status(self.payload)

    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class Command:
    """Host -> clip command (decoded by tests and virtual clips)."""

    cmd_id: int
    cmd: int
    args: bytes = b""

    @property
    def name(self) -> str:
        return P.COMMAND_NAMES.get(self.cmd, f"cmd_{self.cmd}")


@dataclass(frozen=True, slots=True)
class DeviceReset:
    """Emitted before the first frame after the clip rebooted (sequence restarted)."""

    seq: int
    t_us: int
    previous_seq: int
    reason: str = "sequence restarted"


Message = Sample | Hello | Log | Status | Ack | Command | DeviceReset


class PayloadError(ValueError):
    """A payload too short for its type (reported as a `length` error)."""


def parse_info(b: bytes) -> ClipInfo:
    if len(b) < P.HELLO_FIXED_SIZE:
        raise PayloadError("hello payload too short")
    major, minor, rate, cal, count, state = _HELLO_FIXED.unpack_from(b, 0)
    p = P.HELLO_FIXED_SIZE
    strings: list[str] = []
    for _ in range(3):
        if p >= len(b):
            raise PayloadError("hello payload truncated")
        n = b[p]
        if p + 1 + n > len(b):
            raise PayloadError("hello string truncated")
        strings.append(b[p + 1 : p + 1 + n].decode("utf-8", errors="replace"))
        p += 1 + n
    boot_id = cause = None
    if len(b) >= p + P.HELLO_EXT_SIZE:  # 1.1 fields; a 1.0 clip ends after the strings
        boot_id, cause = _HELLO_EXT.unpack_from(b, p)
    return ClipInfo(
        major, minor, rate, cal, count, state, strings[0], strings[1], strings[2], boot_id, cause
    )


def parse_status(b: bytes) -> ClipStatus:
    if len(b) < P.STATUS_SIZE:
        raise PayloadError("status payload too short")
    base = _STATUS.unpack_from(b, 0)
    if len(b) >= P.STATUS_SIZE + P.STATUS_EXT_SIZE:
        return ClipStatus(*base, *_STATUS_EXT.unpack_from(b, P.STATUS_SIZE))
    return ClipStatus(*base)


@dataclass
class DecoderStats:
    bytes: int = 0
    frames: int = 0
    samples: int = 0
    crc_errors: int = 0
    cobs_errors: int = 0
    truncated: int = 0
    oversize: int = 0
    length_errors: int = 0
    version_errors: int = 0
    unknown_types: int = 0
    resyncs: int = 0  # chunks dropped (bytes skipped up to the next delimiter)
    seq_gaps: int = 0
    lost_frames: int = 0
    duplicates: int = 0
    reboots: int = 0
    stray_text: int = 0  # dropped chunks that were readable text (tracebacks, prints)
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        d = {k: v for k, v in self.__dict__.items() if isinstance(v, int)}
        return d
