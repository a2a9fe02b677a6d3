"""Pure, incremental decoder of the clip byte stream (protocol 1.0, docs/protocol.md).

`FrameDecoder.feed(bytes)` splits on the 0x00 delimiter, COBS-decodes, checks size, CRC and
version, parses the payload and returns typed messages. No I/O, no threads: the serial link,
recordings and tests all drive the same code. A chunk that fails any check is dropped whole (the
next 0x00 is the resync point), so a corrupt sample is never yielded.
"""

from __future__ import annotations

import binascii
import logging
import struct
from collections import deque

from dgsclip import protocol as P

from edge_service.clip.messages import (
    Ack,
    Command,
    DecoderStats,
    DeviceReset,
    Hello,
    Log,
    Message,
    PayloadError,
    Sample,
    Status,
    parse_info,
    parse_status,
)
from edge_service.errors import DeviceError

log = logging.getLogger(__name__)

_HEADER = struct.Struct(P.HEADER_FMT)
_SAMPLE = struct.Struct(P.SAMPLE_FMT)
_PELVIS = struct.Struct(P.PELVIS_FMT)
_ACK = struct.Struct(P.ACK_FIXED_FMT)
_MAX_CHUNK = P.MAX_ENCODED - 1  # longest legal chunk between delimiters
_DUP_WINDOW = 256  # recent frames remembered to recognise duplicates
_SEQ_MOD = 1 << 32
_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}
_MIN_TEXT = 8  # shorter printable runs are as likely to be frame bytes as words


class IncompatibleVersion(DeviceError):
    """A well-formed frame with a protocol major version this host does not speak."""

    def __init__(self, major: int, minor: int) -> None:
        super().__init__(
            f"clip speaks protocol {major}.{minor}, this host speaks {P.PROTO_MAJOR}.x: "
            "update the firmware (dgs-clip flash) or the edge service"
        )
        self.major = major
        self.minor = minor


class FrameError(ValueError):
    """One dropped chunk; `kind` is cobs, truncated, oversize, crc, version or length."""

    def __init__(self, kind: str, major: int = 0, minor: int = 0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.major = major
        self.minor = minor


def cobs_decode(chunk: bytes | bytearray) -> bytearray:
    """COBS-decode one chunk (no 0x00 inside). Raises FrameError('cobs').

    Fast path for frames shorter than 254 bytes (all legal v1 frames): no code byte can be
    0xFF, so decoding is "turn every code byte into 0x00 and drop the first one"; only the
    code bytes are visited, not every data byte."""
    out = bytearray(chunk)
    n = len(out)
    i = 0
    while i < n:
        code = out[i]
        if code == 0xFF:
            return _cobs_decode_slow(bytes(chunk))
        if code == 0:
            raise FrameError("cobs")
        out[i] = 0
        i += code
    if i != n:
        raise FrameError("cobs")
    del out[0]
    return out


def _cobs_decode_slow(chunk: bytes) -> bytearray:
    out = bytearray()
    i = 0
    n = len(chunk)
    while i < n:
        code = chunk[i]
        end = i + code
        if code == 0 or end > n:
            raise FrameError("cobs")
        out += chunk[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return out


def unframe(chunk: bytes | bytearray) -> tuple[int, int, int, int, int, bytes]:
    """Check one chunk: returns (major, minor, type, seq, t_us, payload) or raises FrameError."""
    if len(chunk) > _MAX_CHUNK:
        raise FrameError("oversize")
    raw = cobs_decode(chunk)
    m = len(raw)
    if m < P.HEADER_SIZE + P.CRC_SIZE:
        raise FrameError("truncated")
    if m > P.MAX_FRAME:
        raise FrameError("oversize")
    if binascii.crc_hqx(memoryview(raw)[:-2], 0xFFFF) != raw[-2] | (raw[-1] << 8):
        raise FrameError("crc")
    ver, typ, seq, t_us, plen = _HEADER.unpack_from(raw, 0)
    major, minor = ver >> 4, ver & 0x0F
    if major != P.PROTO_MAJOR:
        raise FrameError("version", major, minor)
    if P.HEADER_SIZE + plen + P.CRC_SIZE != m:
        raise FrameError("length")
    return major, minor, typ, seq, t_us, bytes(raw[P.HEADER_SIZE : P.HEADER_SIZE + plen])


def parse_payload(typ: int, seq: int, t_us: int, minor: int, pl: bytes) -> Message | None:
    """Typed message for a checked frame; None for a type this version does not know."""
    if typ == P.MSG_SAMPLE:
        if len(pl) < P.SAMPLE_SIZE:
            raise PayloadError("sample payload too short")
        flags, fx, ad, ro, qw, qx, qy, qz, i2c, ovr = _SAMPLE.unpack_from(pl, 0)
        pq = None
        if flags & P.FLAG_PELVIS_PRESENT:
            if len(pl) < P.SAMPLE_PELVIS_SIZE:
                raise PayloadError("pelvis quaternion missing")
            pq = _PELVIS.unpack_from(pl, P.SAMPLE_SIZE)
        return Sample(seq, t_us, fx, ad, ro, (qw, qx, qy, qz), flags, i2c, ovr, pq, minor)
    if typ == P.MSG_LOG:
        if len(pl) < 1:
            raise PayloadError("log payload too short")
        return Log(seq, t_us, pl[0], pl[1:].decode("utf-8", errors="replace"))
    if typ in (P.MSG_ACK, P.MSG_NAK):
        if len(pl) < P.ACK_FIXED_SIZE:
            raise PayloadError("ack payload too short")
        cmd_id, cmd, code = _ACK.unpack_from(pl, 0)
        if (typ == P.MSG_ACK) != (code == P.ERR_OK):
            raise PayloadError("ack type and code disagree")
        return Ack(seq, t_us, cmd_id, cmd, code, bytes(pl[P.ACK_FIXED_SIZE :]))
    if typ == P.MSG_HELLO:
        return Hello(seq, t_us, parse_info(pl))
    if typ == P.MSG_STATUS:
        return Status(seq, t_us, parse_status(pl))
    if typ == P.MSG_COMMAND:
        if len(pl) < 1:
            raise PayloadError("command payload too short")
        return Command(seq, pl[0], bytes(pl[1:]))
    return None


# Error kinds that also have a named counter in DecoderStats (all are in errors_by_kind).
_KIND_COUNTERS = {
    "crc": "crc_errors",
    "cobs": "cobs_errors",
    "truncated": "truncated",
    "oversize": "oversize",
    "length": "length_errors",
    "version": "version_errors",
}


class FrameDecoder:
    """Incremental decoder: `feed(data)` returns the complete messages found so far.

    Sequence tracking (clip -> host frames share one counter): a gap counts `seq_gaps` and
    `lost_frames`; a repeated recent seq is a duplicate and is dropped; a seq far behind the
    last one (or a HELLO with seq 0) is a reboot and yields `DeviceReset` first. A frame of an
    incompatible major version raises `IncompatibleVersion`; messages decoded before it in the
    same call are kept and returned by the next `feed`.
    """

    def __init__(self, track_sequence: bool = True) -> None:
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._skipping = False  # inside an oversize chunk: drop bytes until the next 0x00
        self._last_seq: int | None = None
        self._boot_id: int | None = None  # of the last HELLO (protocol 1.1)
        self._recent: dict[int, int] = {}  # seq -> t_us of the last _DUP_WINDOW frames
        self._order: deque[int] = deque()
        self._pending: list[Message] = []
        self._track = track_sequence
        self.last_error: str | None = None
        self.stray_text: deque[str] = deque(maxlen=20)  # recent text printed outside frames
        self._new_text: list[str] = []

    def reset(self) -> None:
        """Forget partial bytes and sequence state (after a reconnect)."""
        self._buf.clear()
        self._skipping = False
        self._last_seq = None
        self._recent.clear()
        self._order.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        out, self._pending = self._pending, []
        self.stats.bytes += len(data)
        buf = self._buf
        buf += data
        start = 0
        while True:
            end = buf.find(0, start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif end > start:
                try:
                    self._chunk(buf[start:end], out)
                except IncompatibleVersion:
                    del buf[: end + 1]
                    self._pending = out
                    raise
            start = end + 1
        del buf[:start]
        if len(buf) > _MAX_CHUNK:
            # No delimiter in sight: the chunk can no longer be a legal frame.
            self._error("oversize")
            self._note_text(buf)
            buf.clear()
            self._skipping = True
        elif self._skipping:
            buf.clear()
        return out

    def _note_text(self, chunk: bytes | bytearray) -> None:
        """Keep readable text found where a frame should be (a MicroPython traceback, a
        stray print): it tells the engineer why the clip misbehaves."""
        n = 0
        for b in chunk:
            if b in _TEXT_BYTES:
                n += 1
            else:
                break
        if n >= _MIN_TEXT:
            text = bytes(chunk[:n]).decode("ascii").strip()
            if text:
                self.stats.stray_text += 1
                self.stray_text.append(text)
                self._new_text.append(text)

    def flush_text(self) -> None:
        """Call when the line went quiet: undelimited pending bytes that are all text (a
        traceback followed by the REPL prompt never gets a 0x00) are taken as stray text."""
        buf = self._buf
        if len(buf) >= _MIN_TEXT and all(b in _TEXT_BYTES for b in buf):
            self._note_text(buf)
            buf.clear()

    def take_stray_text(self) -> list[str]:
        """Stray text found since the last call."""
        new, self._new_text = self._new_text, []
        return new

    def _error(self, kind: str) -> None:
        st = self.stats
        st.resyncs += 1
        st.errors_by_kind[kind] = st.errors_by_kind.get(kind, 0) + 1
        counter = _KIND_COUNTERS.get(kind)
        if counter is not None:
            setattr(st, counter, getattr(st, counter) + 1)
        self.last_error = kind
        log.debug("dropped chunk: %s", kind)

    def _chunk(self, chunk: bytearray, out: list[Message]) -> None:
        try:
            _major, minor, typ, seq, t_us, pl = unframe(chunk)
            msg = parse_payload(typ, seq, t_us, minor, pl)
        except FrameError as exc:
            self._error(exc.kind)
            if exc.kind == "version":
                raise IncompatibleVersion(exc.major, exc.minor) from None
            self._note_text(chunk)
            return
        except PayloadError:
            self._error("length")
            return
        self.stats.frames += 1
        boot_id = msg.info.boot_id if isinstance(msg, Hello) else None
        if (
            self._track
            and typ != P.MSG_COMMAND
            and not self._sequence(typ, seq, t_us, out, boot_id)
        ):
            return
        if msg is None:
            self.stats.unknown_types += 1
            return
        if typ == P.MSG_SAMPLE:
            self.stats.samples += 1
        out.append(msg)

    def _sequence(
        self, typ: int, seq: int, t_us: int, out: list[Message], boot_id: int | None = None
    ) -> bool:
        """Update sequence statistics; False when the frame is a duplicate to drop.

        A duplicate is an exact repeat of a recent (seq, t_us) pair, e.g. a chunk delivered
        twice; a seq that goes backwards with a different timestamp is a reboot. A boot HELLO
        (seq 0) with a new boot id (1.1) is a reboot even if its timestamp repeats the last
        boot's (boot takes the same time every time)."""
        last = self._last_seq
        st = self.stats
        new_boot = boot_id is not None and self._boot_id is not None and boot_id != self._boot_id
        if boot_id is not None:
            self._boot_id = boot_id
        if last is not None:
            ahead = (seq - last) % _SEQ_MOD
            if ahead == 1 and not new_boot:
                pass
            elif new_boot and seq == 0:
                st.reboots += 1
                self._recent.clear()
                self._order.clear()
                out.append(DeviceReset(seq, t_us, last))
            elif self._recent.get(seq) == t_us:
                st.duplicates += 1
                return False
            elif (typ == P.MSG_HELLO and seq == 0) or ahead == 0 or ahead >= _SEQ_MOD // 2:
                st.reboots += 1
                self._recent.clear()
                self._order.clear()
                out.append(DeviceReset(seq, t_us, last))
            else:
                st.seq_gaps += 1
                st.lost_frames += ahead - 1
        self._last_seq = seq
        if len(self._order) == _DUP_WINDOW:
            self._recent.pop(self._order.popleft(), None)
        self._order.append(seq)
        self._recent[seq] = t_us
        return True
