# dgs-clip serial protocol v1.1 (spec: docs/protocol.md), clip side.
#
# Runs unchanged on MicroPython 1.2x and CPython: no typing, no dataclasses, only
# `struct`, preallocated buffers and integer arithmetic. The host decoder lives in
# edge_service/clip/decoder.py and shares the constants below.
#
# Wire frame:  COBS( header | payload | crc16 ) 0x00
#   header (11 bytes, little-endian):
#     u8  version   (major << 4) | minor          0x10 for 1.0
#     u8  type      MSG_*
#     u32 seq       per-sender counter, +1 per frame (commands: the command id)
#     u32 t_us      device time.ticks_us(), wraps at 2**30 (TICKS_PERIOD on every port)
#     u8  length    payload length, <= MAX_PAYLOAD
#   crc16 CRC-16/CCITT-FALSE over header+payload, little-endian.
import struct
from array import array

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from dgsclip.framing import (  # noqa: F401  (re-exported: one import for the clip code)
    CRC_SIZE,
    HEADER_FMT,
    HEADER_SIZE,
    MAX_ENCODED,
    MAX_FRAME,
    MAX_PAYLOAD,
    PROTO_MAJOR,
    PROTO_MINOR,
    VERSION_BYTE,
    ProtocolError,
    _crc_table,
    cobs_decode_into,
    cobs_encode_into,
    crc16,
    unframe,
)

_slot_native = None  # fxio.sample_frame as viper, once checked (False: not available)
_CRC_TAB = None

TICKS_PERIOD = const(0x40000000)  # MicroPython ticks_us wraps at 2**30
TICKS_MASK = const(0x3FFFFFFF)
Q14 = const(16384)  # quaternion scale: 1.0 == 16384

# Message types (clip -> host unless noted)
MSG_HELLO = const(0x01)
MSG_SAMPLE = const(0x02)
MSG_LOG = const(0x03)
MSG_STATUS = const(0x04)
MSG_ACK = const(0x05)
MSG_NAK = const(0x06)
MSG_COMMAND = const(0x10)  # host -> clip

# Command codes (first payload byte of MSG_COMMAND)
CMD_INFO = const(0x01)
CMD_START = const(0x02)
CMD_STOP = const(0x03)
CMD_SET_RATE = const(0x04)  # args: u16 rate_hz
CMD_CALIBRATE_NEUTRAL = const(0x05)  # args: u16 duration_ms (0 = clip default)
CMD_CALIBRATE_FUNCTIONAL = const(0x06)  # args: u16 duration_ms (0 = clip default)
CMD_GET_CONFIG = const(0x07)
CMD_SET_CONFIG = const(0x08)  # args: utf-8 JSON object (partial update)
CMD_SELF_TEST = const(0x09)
CMD_REBOOT = const(0x0A)
CMD_EXIT_REPL = const(0x0B)
CMD_GET_STATUS = const(0x0C)

COMMAND_NAMES = {
    CMD_INFO: "info",
    CMD_START: "start",
    CMD_STOP: "stop",
    CMD_SET_RATE: "set_rate",
    CMD_CALIBRATE_NEUTRAL: "calibrate_neutral",
    CMD_CALIBRATE_FUNCTIONAL: "calibrate_functional",
    CMD_GET_CONFIG: "get_config",
    CMD_SET_CONFIG: "set_config",
    CMD_SELF_TEST: "self_test",
    CMD_REBOOT: "reboot",
    CMD_EXIT_REPL: "exit_repl",
    CMD_GET_STATUS: "get_status",
}

# ACK/NAK result codes
ERR_OK = const(0)
ERR_UNKNOWN_COMMAND = const(1)
ERR_BAD_ARGUMENT = const(2)
ERR_BUSY = const(3)
ERR_FAILED = const(4)
ERR_NOT_SUPPORTED = const(5)
ERR_BAD_STATE = const(6)

ERROR_NAMES = {
    ERR_OK: "ok",
    ERR_UNKNOWN_COMMAND: "unknown_command",
    ERR_BAD_ARGUMENT: "bad_argument",
    ERR_BUSY: "busy",
    ERR_FAILED: "failed",
    ERR_NOT_SUPPORTED: "not_supported",
    ERR_BAD_STATE: "bad_state",
}

# SAMPLE status flags (u16). Unknown bits must be ignored by receivers.
FLAG_CALIBRATED = const(0x0001)
FLAG_STATIONARY = const(0x0002)
FLAG_ACCEL_REJECTED = const(0x0004)
FLAG_I2C_ERROR = const(0x0008)  # an I2C error happened since the previous sample
FLAG_OVERRUN = const(0x0010)  # this sample was late / a period was skipped
FLAG_PELVIS_PRESENT = const(0x0020)  # payload carries the pelvis quaternion
FLAG_CALIBRATING = const(0x0040)
FLAG_PELVIS_ERROR = const(0x0080)  # pelvis IMU configured but not answering

FLAG_NAMES = (
    (FLAG_CALIBRATED, "calibrated"),
    (FLAG_STATIONARY, "stationary"),
    (FLAG_ACCEL_REJECTED, "accel_rejected"),
    (FLAG_I2C_ERROR, "i2c_error"),
    (FLAG_OVERRUN, "overrun"),
    (FLAG_PELVIS_PRESENT, "pelvis_present"),
    (FLAG_CALIBRATING, "calibrating"),
    (FLAG_PELVIS_ERROR, "pelvis_error"),
)

# Clip states (HELLO / STATUS)
STATE_IDLE = const(0)
STATE_STREAMING = const(1)
STATE_CALIBRATING = const(2)
STATE_ERROR = const(3)

# Reset causes (HELLO / STATUS, 1.1): machine.reset_cause() mapped by main.py
RESET_UNKNOWN = const(0)
RESET_POWER_ON = const(1)
RESET_HARD = const(2)  # reset pin / brown-out detector (ports report both as HARD_RESET)
RESET_WATCHDOG = const(3)
RESET_SOFT = const(4)  # machine.reset(): the firmware or `reboot` asked for it
RESET_DEEPSLEEP = const(5)
RESET_NAMES = {
    RESET_UNKNOWN: "unknown",
    RESET_POWER_ON: "power_on",
    RESET_HARD: "hard_reset",
    RESET_WATCHDOG: "watchdog",
    RESET_SOFT: "soft_reset",
    RESET_DEEPSLEEP: "deepsleep",
}

# Calibration states (HELLO / STATUS)
CAL_NONE = const(0)
CAL_NEUTRAL = const(1)  # static neutral only
CAL_FULL = const(2)  # neutral + functional flexion axis

# Payload layouts (little-endian)
SAMPLE_FMT = "<HhhhhhhhHH"  # flags, flex, add, rot (0.01 deg), q w x y z (Q14), i2c_err, overruns
SAMPLE_SIZE = const(20)
PELVIS_FMT = "<hhhh"
SAMPLE_PELVIS_SIZE = const(28)
STATUS_FMT = (
    "<BBHIHHHII"  # state, cal, rate_hz, samples, i2c_err, overruns, cmd_err, free_mem, uptime_s
)
STATUS_SIZE = const(22)
# The STATUS payload fields in STATUS_FMT order: Encoder.status / ack_status take them
# positionally after (seq, t_us[, cmd_id]).
STATUS_FIELDS = (
    "state",
    "cal_state",
    "rate_hz",
    "samples",
    "i2c_errors",
    "overruns",
    "cmd_errors",
    "free_mem",
    "uptime_s",
)
# 1.1: appended to STATUS (and the ACK of get_status): ring and output counters, reboots.
STATUS_EXT_FMT = "<IHHHHHHBH"
STATUS_EXT_SIZE = const(19)
STATUS_EXT_FIELDS = (
    "ring_dropped",  # samples fused but never sent: the ring was full (host stalled)
    "ring_peak",  # most samples ever waiting in the ring
    "ring_capacity",
    "fifo_overflows",  # the IMU's own FIFO overflowed (samples lost in the chip)
    "tx_stalls",  # times the host was found not reading
    "tx_dropped",  # non-sample frames (status, log, ack) dropped while the host stalled
    "boot_id",
    "reset_cause",
    "resets",  # watchdog + firmware-initiated resets, counted across boots
)
# 1.1: appended to HELLO (and the ACK of info), after the three strings.
HELLO_EXT_FMT = "<HB"  # boot_id, reset_cause
HELLO_EXT_SIZE = const(3)
HELLO_FIXED_FMT = "<BBHBBB"  # proto major, minor, rate_hz, cal_state, imu_count, state
HELLO_FIXED_SIZE = const(7)
ACK_FIXED_FMT = "<IBB"  # cmd_id, cmd, code
ACK_FIXED_SIZE = const(6)

# Raw escape to the REPL, recognised without framing (see docs/protocol.md, "REPL escape"):
# a chunk (bytes after a 0x00) that starts with "\r\x03" (what mpremote sends) or "\x03\x03",
# or that is exactly "!REPL". Neither can begin a valid v1 frame.
REPL_ESCAPE_TEXT = b"!REPL"


class Encoder:
    """Builds clip -> host frames into preallocated buffers.

    Every method returns a memoryview into an internal buffer that is valid until the next
    call: write it to the port before encoding the next frame. The sequence number is kept
    here (one counter for all frame types) unless `seq` is passed explicitly."""

    def __init__(self, minor=PROTO_MINOR):
        """minor: the protocol minor to speak (0 reproduces the frozen 1.0 vectors: no 1.1
        fields appended)."""
        self._raw = bytearray(MAX_FRAME)
        self._out = bytearray(MAX_ENCODED)
        self._mv = memoryview(self._out)
        self.seqa = array("H", (0, 0))  # seq as two halves for the viper framing kernels
        self.seq = 0
        self._views = {}
        self._q14 = array("h", (0, 0, 0, 0))
        self._pq14 = array("h", (0, 0, 0, 0))
        self.minor = minor
        self._ver = (PROTO_MAJOR << 4) | minor

    def _next_seq(self, seq):
        # No `& 0xFFFFFFFF` on the hot path: that constant is a big int on MicroPython and
        # the AND would allocate one per frame. seq stays a small int below 2**30.
        if seq is None:
            seq = self.seq
        elif seq > 0xFFFFFFFF or seq < 0:
            seq &= 0xFFFFFFFF
        n = seq + 1
        self.seq = 0 if n > 0xFFFFFFFF else n
        return seq

    def _finish(self, typ, seq, t_us, plen):
        raw = self._raw
        struct.pack_into(HEADER_FMT, raw, 0, self._ver, typ, seq, t_us & TICKS_MASK, plen)
        m = HEADER_SIZE + plen
        c = crc16(raw, m)
        raw[m] = c & 0xFF
        raw[m + 1] = c >> 8
        k = cobs_encode_into(raw, m + 2, self._out)
        self._out[k] = 0
        # One memoryview per frame length, made once: slicing would allocate per frame.
        v = self._views.get(k + 1)
        if v is None:
            v = self._mv[: k + 1]
            self._views[k + 1] = v
        return v

    def sample(
        self,
        seq,
        t_us,
        flex_cdeg,
        add_cdeg,
        rot_cdeg,
        quat,
        flags,
        i2c_errors=0,
        overruns=0,
        pelvis_quat=None,
    ):
        """quat / pelvis_quat: 4 ints in Q14 (w, x, y, z). Angles in 0.01 deg, clamped to int16."""
        seq = self._next_seq(seq)
        raw = self._raw
        if pelvis_quat is not None:
            flags |= FLAG_PELVIS_PRESENT
        else:
            flags &= ~FLAG_PELVIS_PRESENT
        struct.pack_into(
            SAMPLE_FMT,
            raw,
            HEADER_SIZE,
            flags & 0xFFFF,
            _i16(flex_cdeg),
            _i16(add_cdeg),
            _i16(rot_cdeg),
            _i16(quat[0]),
            _i16(quat[1]),
            _i16(quat[2]),
            _i16(quat[3]),
            i2c_errors & 0xFFFF,
            overruns & 0xFFFF,
        )
        plen = SAMPLE_SIZE
        if pelvis_quat is not None:
            struct.pack_into(
                PELVIS_FMT,
                raw,
                HEADER_SIZE + SAMPLE_SIZE,
                _i16(pelvis_quat[0]),
                _i16(pelvis_quat[1]),
                _i16(pelvis_quat[2]),
                _i16(pelvis_quat[3]),
            )
            plen = SAMPLE_PELVIS_SIZE
        return self._finish(MSG_SAMPLE, seq, t_us, plen)

    def sample_slot(self, ring, i):
        """The SAMPLE frame of ring slot i (dgsclip.ring.SampleRing), byte for byte what
        sample() makes of the same values: where the port has a native emitter one viper
        call builds it (dgsclip.fxio.sample_frame, checked against its twin at boot, and
        the twin against sample() by the tests); elsewhere through sample()."""
        global _slot_native
        if _slot_native is None:
            from dgsclip import fxcore

            global _CRC_TAB
            _CRC_TAB = _crc_table()
            _slot_native = fxcore.load()[4] or False
        if _slot_native:
            seq = self.seq  # _next_seq(None) inlined (once per sample)
            self.seq = 0 if seq >= 0xFFFFFFFF else seq + 1
            sa = self.seqa
            sa[0] = seq & 0xFFFF
            sa[1] = seq >> 16
            n = _slot_native(self._out, self._raw, ring.v, ring.r, i, sa, self._ver, _CRC_TAB, 0)
            v = self._views.get(n)
            if v is None:
                v = self._mv[:n]
                self._views[n] = v
            return v
        # The packed slot (dgsclip.ring: little-endian bytes) unpacked into sample()'s
        # arguments.
        v = ring.v[i >> ring.shift]
        b = (i & ring.mask) * ring.slot
        flags = v[b + 18]
        q = self._q14
        for k in range(4):
            q[k] = _le16(v, b + 10 + 2 * k)
        pq = None
        if ring.slot > 20 and flags & FLAG_PELVIS_PRESENT:
            pq = self._pq14
            for k in range(4):
                pq[k] = _le16(v, b + 20 + 2 * k)
        r = ring.r
        t = v[b] | (v[b + 1] << 8) | (v[b + 2] << 16) | (v[b + 3] << 24)
        return self.sample(
            None, t, _le16(v, b + 4), _le16(v, b + 6), _le16(v, b + 8), q, flags, r[16], r[17],
            pq,
        )  # fmt: skip

    def hello(
        self,
        seq,
        t_us,
        fw_version,
        device_id,
        imu_models,
        rate_hz,
        cal_state,
        imu_count=1,
        state=STATE_IDLE,
        boot_id=0,
        reset_cause=RESET_UNKNOWN,
    ):
        """fw_version, device_id: str; imu_models: str like "mpu6050" or "lsm6dsox,mpu6500"."""
        seq = self._next_seq(seq)
        plen = self._hello_payload(
            HEADER_SIZE,
            fw_version,
            device_id,
            imu_models,
            rate_hz,
            cal_state,
            imu_count,
            state,
            boot_id,
            reset_cause,
        )
        return self._finish(MSG_HELLO, seq, t_us, plen)

    def _hello_payload(
        self,
        off,
        fw_version,
        device_id,
        imu_models,
        rate_hz,
        cal_state,
        imu_count,
        state,
        boot_id=0,
        reset_cause=RESET_UNKNOWN,
    ):
        raw = self._raw
        struct.pack_into(
            HELLO_FIXED_FMT,
            raw,
            off,
            PROTO_MAJOR,
            self.minor,
            rate_hz & 0xFFFF,
            cal_state,
            imu_count,
            state,
        )
        p = off + HELLO_FIXED_SIZE
        for s in (fw_version, device_id, imu_models):
            b = s.encode() if isinstance(s, str) else bytes(s)
            b = b[:63]
            raw[p] = len(b)
            raw[p + 1 : p + 1 + len(b)] = b
            p += 1 + len(b)
        if self.minor >= 1:
            struct.pack_into(HELLO_EXT_FMT, raw, p, boot_id & 0xFFFF, reset_cause)
            p += HELLO_EXT_SIZE
        return p - off

    def log(self, seq, t_us, text, level=20):
        """Text as a LOG frame so it can never break the binary stream. level: 10 debug,
        20 info, 30 warning, 40 error. Truncated to MAX_PAYLOAD - 1 bytes."""
        seq = self._next_seq(seq)
        b = text.encode() if isinstance(text, str) else text
        n = len(b)
        if n > MAX_PAYLOAD - 1:
            n = MAX_PAYLOAD - 1
        raw = self._raw
        raw[HEADER_SIZE] = level & 0xFF
        raw[HEADER_SIZE + 1 : HEADER_SIZE + 1 + n] = b[:n]
        return self._finish(MSG_LOG, seq, t_us, n + 1)

    def status(self, seq, t_us, *fields):
        """STATUS frame; fields as named in STATUS_FIELDS (+ STATUS_EXT_FIELDS), in order."""
        seq = self._next_seq(seq)
        n = self._status_payload(HEADER_SIZE, fields)
        return self._finish(MSG_STATUS, seq, t_us, n)

    def _status_payload(self, off, fields):
        """Pack the 1.0 fields, then (speaking 1.1) the extension, zeros where not given."""
        self._status_base(off, *fields[:9])
        if self.minor < 1:
            return STATUS_SIZE
        ext = fields[9:]
        vals = [0] * len(STATUS_EXT_FIELDS)  # get_status only: not in the sample path
        for i in range(len(ext)):
            vals[i] = ext[i]
        struct.pack_into(
            STATUS_EXT_FMT,
            self._raw,
            off + STATUS_SIZE,
            vals[0] & 0xFFFFFFFF,
            vals[1] & 0xFFFF,
            vals[2] & 0xFFFF,
            vals[3] & 0xFFFF,
            vals[4] & 0xFFFF,
            vals[5] & 0xFFFF,
            vals[6] & 0xFFFF,
            vals[7] & 0xFF,
            vals[8] & 0xFFFF,
        )
        return STATUS_SIZE + STATUS_EXT_SIZE

    def _status_base(
        self,
        off,
        state,
        cal_state,
        rate_hz,
        samples,
        i2c_errors,
        overruns,
        cmd_errors,
        free_mem,
        uptime_s,
    ):
        struct.pack_into(
            STATUS_FMT,
            self._raw,
            off,
            state,
            cal_state,
            rate_hz & 0xFFFF,
            samples & 0xFFFFFFFF,
            i2c_errors & 0xFFFF,
            overruns & 0xFFFF,
            cmd_errors & 0xFFFF,
            free_mem & 0xFFFFFFFF,
            uptime_s & 0xFFFFFFFF,
        )

    def ack(self, seq, t_us, cmd_id, cmd, code=ERR_OK, payload=None):
        """ACK (code 0) or NAK (code != 0) for command `cmd_id`. payload: optional bytes
        (<= MAX_PAYLOAD - 6), e.g. the HELLO layout for CMD_INFO or utf-8 JSON."""
        seq = self._next_seq(seq)
        raw = self._raw
        struct.pack_into(ACK_FIXED_FMT, raw, HEADER_SIZE, cmd_id & 0xFFFFFFFF, cmd, code)
        n = 0
        if payload is not None:
            n = len(payload)
            if n > MAX_PAYLOAD - ACK_FIXED_SIZE:
                raise ValueError("ack payload too long")
            p = HEADER_SIZE + ACK_FIXED_SIZE
            raw[p : p + n] = payload
        typ = MSG_ACK if code == ERR_OK else MSG_NAK
        return self._finish(typ, seq, t_us, ACK_FIXED_SIZE + n)

    def ack_info(
        self,
        seq,
        t_us,
        cmd_id,
        fw_version,
        device_id,
        imu_models,
        rate_hz,
        cal_state,
        imu_count=1,
        state=STATE_IDLE,
        boot_id=0,
        reset_cause=RESET_UNKNOWN,
    ):
        """ACK to CMD_INFO carrying the HELLO payload layout (no intermediate bytes object)."""
        seq = self._next_seq(seq)
        struct.pack_into(
            ACK_FIXED_FMT, self._raw, HEADER_SIZE, cmd_id & 0xFFFFFFFF, CMD_INFO, ERR_OK
        )
        n = self._hello_payload(
            HEADER_SIZE + ACK_FIXED_SIZE,
            fw_version,
            device_id,
            imu_models,
            rate_hz,
            cal_state,
            imu_count,
            state,
            boot_id,
            reset_cause,
        )
        return self._finish(MSG_ACK, seq, t_us, ACK_FIXED_SIZE + n)

    def ack_status(self, seq, t_us, cmd_id, *fields):
        """ACK to CMD_GET_STATUS carrying the STATUS payload layout (fields as for status)."""
        seq = self._next_seq(seq)
        struct.pack_into(
            ACK_FIXED_FMT, self._raw, HEADER_SIZE, cmd_id & 0xFFFFFFFF, CMD_GET_STATUS, ERR_OK
        )
        n = self._status_payload(HEADER_SIZE + ACK_FIXED_SIZE, fields)
        return self._finish(MSG_ACK, seq, t_us, ACK_FIXED_SIZE + n)


def _le16(v, o):
    """The int16 at v[o] (little-endian bytes)."""
    x = v[o] | (v[o + 1] << 8)
    return x - 65536 if x > 32767 else x


def _i16(v):
    v = int(v)
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return v


def encode_command(cmd_id, cmd, args=b"", minor=PROTO_MINOR):
    """Host -> clip COMMAND frame as bytes (t_us is 0: the host has no device clock)."""
    n = len(args)
    if n > MAX_PAYLOAD - 1:
        raise ValueError("command args too long")
    raw = bytearray(HEADER_SIZE + 1 + n + CRC_SIZE)
    ver = (PROTO_MAJOR << 4) | minor
    struct.pack_into(HEADER_FMT, raw, 0, ver, MSG_COMMAND, cmd_id & 0xFFFFFFFF, 0, n + 1)
    raw[HEADER_SIZE] = cmd
    raw[HEADER_SIZE + 1 : HEADER_SIZE + 1 + n] = args
    m = HEADER_SIZE + 1 + n
    c = crc16(raw, m)
    raw[m] = c & 0xFF
    raw[m + 1] = c >> 8
    out = bytearray(MAX_ENCODED)
    k = cobs_encode_into(raw, m + 2, out)
    out[k] = 0
    return bytes(out[: k + 1])


class CommandReader:
    """Clip-side parser of host -> clip bytes (read from stdin / USB CDC).

    feed(data) returns a list of (cmd_id, cmd, args, repeat) tuples; args is bytes; repeat is
    True when cmd_id equals the previous command's id (a host retry: re-send the previous
    reply instead of executing twice). The raw REPL escape yields (0, CMD_EXIT_REPL, b"", False).
    Bad frames are counted in `errors` and dropped; frames of other types are ignored."""

    def __init__(self):
        self._chunk = bytearray(MAX_ENCODED)
        self._n = 0
        self._overflow = False
        self._skip = False
        self._dec = bytearray(MAX_FRAME)
        self.errors = 0
        self.last_id = -1

    def feed(self, data):
        out = []
        chunk = self._chunk
        for b in data:
            if b == 0:
                if self._overflow:
                    self.errors += 1
                elif self._n and not self._skip:
                    self._chunk_done(out)
                self._n = 0
                self._overflow = False
                self._skip = False
                continue
            if self._overflow or self._skip:
                continue
            n = self._n
            if n >= MAX_ENCODED - 1:
                self._overflow = True
                continue
            chunk[n] = b
            self._n = n + 1
            # Raw REPL escape as soon as the 2nd byte arrives: mpremote never sends a 0x00.
            if n == 1 and chunk[1] == 0x03 and (chunk[0] == 0x0D or chunk[0] == 0x03):
                out.append((0, CMD_EXIT_REPL, b"", False))
                self._skip = True  # swallow the rest of this chunk
        return out

    def _chunk_done(self, out):
        n = self._n
        if n == len(REPL_ESCAPE_TEXT) and bytes(self._chunk[:n]) == REPL_ESCAPE_TEXT:
            out.append((0, CMD_EXIT_REPL, b"", False))
            return
        try:
            _maj, _min, typ, seq, _t, p, plen = unframe(self._chunk, n, self._dec)
        except ProtocolError:
            self.errors += 1
            return
        if typ != MSG_COMMAND or plen < 1:
            self.errors += 1
            return
        repeat = seq == self.last_id
        self.last_id = seq
        out.append((seq, self._dec[p], bytes(self._dec[p + 1 : p + plen]), repeat))
