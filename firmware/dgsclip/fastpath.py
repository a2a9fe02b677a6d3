"""CRC-16/CCITT-FALSE and COBS encoding as @micropython.viper machine code.

Only for ports with a native emitter (RP2040, ESP32: `framing` imports this module in a
try/except and checks both functions against known answers before using them); everywhere
else, CPython included, the pure-Python versions in `framing` run. Byte-identical results
are required: framing's self-check compares them with the catalogue CRC check value and a
golden COBS frame, and the golden-vector tests run the frames through whichever is active.
Shipped as source by `dgs-clip flash` so the board's own compiler emits its native code.
"""

import micropython


@micropython.viper
def crc16(buf, n: int, crc: int, table) -> int:
    b = ptr8(buf)  # noqa: F821  (viper built-in)
    t = ptr16(table)  # noqa: F821
    c = crc
    i = 0
    while i < n:
        c = ((c << 8) & 0xFFFF) ^ t[((c >> 8) ^ b[i]) & 0xFF]
        i += 1
    return c


@micropython.viper
def cobs_encode_into(src, n: int, dst) -> int:
    s = ptr8(src)  # noqa: F821
    d = ptr8(dst)  # noqa: F821
    code_pos = 0
    code = 1
    o = 1
    i = 0
    while i < n:
        v = s[i]
        if v == 0:
            d[code_pos] = code
            code_pos = o
            o += 1
            code = 1
        else:
            d[o] = v
            o += 1
            code += 1
            if code == 0xFF:
                d[code_pos] = code
                code_pos = o
                o += 1
                code = 1
        i += 1
    d[code_pos] = code
    return o
