# dgs-clip serial protocol v1.1, framing layer (spec: docs/protocol.md): CRC-16/CCITT-FALSE,
# COBS, the 11-byte header and the frame checks. Shared by the clip (MicroPython) and CPython;
# message payloads and commands are in protocol.py, which re-exports everything here.
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:  # CPython (and a few ports) have it in C: crc_hqx(data, 0xFFFF) is CCITT-FALSE.
    from binascii import crc_hqx as _crc_hqx
except ImportError:
    _crc_hqx = None

PROTO_MAJOR = const(1)
PROTO_MINOR = const(1)
VERSION_BYTE = const(0x11)  # (PROTO_MAJOR << 4) | PROTO_MINOR

HEADER_SIZE = const(11)
CRC_SIZE = const(2)
MAX_PAYLOAD = const(240)
MAX_FRAME = const(253)  # header + MAX_PAYLOAD + crc, before COBS
MAX_ENCODED = const(255)  # COBS adds 1 byte for <= 254 bytes, plus the 0x00 delimiter
HEADER_FMT = "<BBIIB"

_TABLE = None
_crc_native = None  # viper versions (dgsclip.fastpath) once they passed the self-check
_cobs_native = None


def _crc_table():
    global _TABLE
    if _TABLE is None:
        try:
            from array import array

            t = array("H", [0] * 256)
        except ImportError:
            t = [0] * 256
        for i in range(256):
            c = i << 8
            for _ in range(8):
                c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
            t[i] = c & 0xFFFF
        _TABLE = t
    return _TABLE


def crc16(buf, n=-1, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0) of buf[:n]."""
    if n < 0:
        n = len(buf)
    if _crc_hqx is not None:
        return _crc_hqx(memoryview(buf)[:n], crc)
    t = _crc_table()
    if _crc_native is not None:
        return _crc_native(buf, n, crc, t)
    for i in range(n):
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ buf[i]) & 0xFF]
    return crc


def cobs_encode_into(src, n, dst):
    """COBS-encode src[:n] into dst (no delimiter). Returns the encoded length."""
    if _cobs_native is not None:
        return _cobs_native(src, n, dst)
    return _cobs_encode_py(src, n, dst)


def _cobs_encode_py(src, n, dst):
    code_pos = 0
    code = 1
    o = 1
    for i in range(n):
        b = src[i]
        if b == 0:
            dst[code_pos] = code
            code_pos = o
            o += 1
            code = 1
        else:
            dst[o] = b
            o += 1
            code += 1
            if code == 0xFF:
                dst[code_pos] = code
                code_pos = o
                o += 1
                code = 1
    dst[code_pos] = code
    return o


def cobs_decode_into(src, n, dst):
    """COBS-decode src[:n] (no delimiter) into dst. Returns the length, or -1 if malformed."""
    i = 0
    o = 0
    cap = len(dst)
    while i < n:
        code = src[i]
        if code == 0:
            return -1
        i += 1
        end = i + code - 1
        if end > n or o + code - 1 > cap:
            return -1
        while i < end:
            b = src[i]
            if b == 0:
                return -1
            dst[o] = b
            o += 1
            i += 1
        if code != 0xFF and i < n:
            if o >= cap:
                return -1
            dst[o] = 0
            o += 1
    return o


def _use_native():
    """Switch to the viper CRC/COBS where the port compiles them and they give exactly the
    pure-Python answers (check value 0x29B1, a frame with zeros and a 254-byte run)."""
    global _crc_native, _cobs_native
    if _crc_hqx is not None:
        return False  # C already (CPython, ports with binascii.crc_hqx): nothing to gain
    try:
        from dgsclip import fastpath
    except (ImportError, SyntaxError, NotImplementedError, ValueError):
        return False  # no native emitter (WebAssembly, CPython): pure Python
    t = _crc_table()
    probe = bytearray(b"123456789")
    try:
        ok = fastpath.crc16(probe, 9, 0xFFFF, t) == 0x29B1
        src = bytearray(300)
        for i in range(300):
            src[i] = (i * 7) & 0xFF if i < 40 or i > 300 - 4 else 1 + (i % 200)
        a = bytearray(310)
        b = bytearray(310)
        na = fastpath.cobs_encode_into(src, 300, a)
        nb = _cobs_encode_py(src, 300, b)
        ok = ok and na == nb and a == b
    except Exception:  # a broken native build must never take the link down
        ok = False
    if ok:
        _crc_native = fastpath.crc16
        _cobs_native = fastpath.cobs_encode_into
    return ok


class ProtocolError(Exception):
    """A frame that must be dropped. args[0] is one of: cobs, truncated, oversize, crc,
    version, length."""


def unframe(src, n, dst):
    """Decode one delimited chunk src[:n] (without its 0x00) into dst (>= MAX_FRAME bytes).

    Returns (major, minor, type, seq, t_us, payload_start, payload_len); the payload is
    dst[payload_start:payload_start + payload_len]. Raises ProtocolError(kind)."""
    if n > MAX_ENCODED - 1:
        raise ProtocolError("oversize")
    m = cobs_decode_into(src, n, dst)
    if m < 0:
        raise ProtocolError("cobs")
    if m < HEADER_SIZE + CRC_SIZE:
        raise ProtocolError("truncated")
    if m > MAX_FRAME:
        raise ProtocolError("oversize")
    got = dst[m - 2] | (dst[m - 1] << 8)
    if crc16(dst, m - 2) != got:
        raise ProtocolError("crc")
    ver, typ, seq, t_us, plen = struct.unpack_from(HEADER_FMT, dst, 0)
    if (ver >> 4) != PROTO_MAJOR:
        raise ProtocolError("version")
    if HEADER_SIZE + plen + CRC_SIZE != m:
        raise ProtocolError("length")
    return ver >> 4, ver & 0x0F, typ, seq, t_us, HEADER_SIZE, plen


NATIVE = _use_native()
