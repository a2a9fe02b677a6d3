"""Fake I2C bus with MPU-6050 and LSM6DS register maps, for the real drivers.

Runs on CPython *and* MicroPython (the WebAssembly-port tests copy this file next to the
firmware), so it uses no typing imports, dataclasses or f-strings. A device holds a 128-byte
register file; writes to the configuration registers change the full-scale the fake uses to
encode samples, exactly as the chip would, so a driver that mis-configures the range reads
wrong values. `source()` is called on each data-register read and returns
((gx, gy, gz) deg/s, (ax, ay, az) g) in the sensor frame.
FIFO: with `clock` (an object with elapsed_us()) a device also models its hardware FIFO:
samples are generated at the configured output data rate as virtual time passes (source_at
(t_us) when the source has it, else source()), the read pointer pops them, and a full FIFO
overwrites the oldest bytes and sets the chip's overflow flag, as the parts do (the MPU's
1024-byte FIFO is not a multiple of its 12-byte packet, so an overflow misaligns it).
Faults: `fail_reads` / `fail_writes` make the next N transfers raise OSError(EIO), and
`absent=True` makes the device not acknowledge at all (ENODEV), like an unplugged IMU.
"""

import struct

EIO = 5
ENODEV = 19


def _clip16(v):
    v = int(round(v))  # noqa: RUF046  (MicroPython builds without float round-to-int)
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return v


class FakeDevice:
    WHO_AM_I_REG = 0
    DATA_REG = 0

    FIFO_CAPACITY = 1024  # bytes (or words for the LSM)

    def __init__(self, address, who_am_i, source=None, clock=None):
        self.address = address
        self.regs = bytearray(128)
        self.regs[self.WHO_AM_I_REG] = who_am_i
        self.source = source or (lambda: ((0.0, 0.0, 0.0), (0.0, 1.0, 0.0)))
        self.clock = clock
        self.reads = 0
        self.writes = []
        self.fifo = bytearray()  # MPU: bytes; LSM: 7-byte words concatenated
        self.fifo_generated = 0  # samples pushed since the FIFO was enabled
        self.fifo_lost = 0  # samples overwritten by an overflow
        self._fifo_t0 = None
        self.overflow = False

    def encode_sample(self):
        raise NotImplementedError

    def fifo_enabled(self):
        return False

    def push_packet(self, sample):
        raise NotImplementedError

    def odr_hz(self):
        return 100.0

    def _sample_at(self, t_us):
        at = getattr(self.source, "at_us", None)
        return at(t_us) if at is not None else self.source()

    def _fifo_reset(self):
        self.fifo = bytearray()
        self._fifo_t0 = self.clock.elapsed_us() if self.clock is not None else None
        self.fifo_generated = 0

    def catch_up(self):
        """Generate the samples the chip produced since the last look (virtual time)."""
        if self.clock is None or not self.fifo_enabled() or self._fifo_t0 is None:
            return
        now = self.clock.elapsed_us()
        period = 1e6 / self.odr_hz()
        while True:
            t = self._fifo_t0 + int((self.fifo_generated + 1) * period)
            if t > now:
                break
            self.fifo_generated += 1
            self.push_packet(self._sample_at(t))

    def read(self, reg, n):
        self.catch_up()
        if reg <= self.DATA_REG < reg + n:
            self.encode_sample()
        self.reads += 1
        return self.regs[reg : reg + n]

    def write(self, reg, data):
        self.writes.append((reg, bytes(data)))
        self.regs[reg : reg + len(data)] = data
        self.after_write(reg)

    def after_write(self, reg):
        pass


class FakeMPU6050(FakeDevice):
    WHO_AM_I_REG = 0x75
    DATA_REG = 0x3B
    FIFO_R_W = 0x74

    def __init__(self, address=0x68, who_am_i=0x68, source=None, clock=None):
        super().__init__(address, who_am_i, source, clock)

    def fifo_enabled(self):
        return bool(self.regs[0x6A] & 0x40) and self.regs[0x23] == 0x78

    def odr_hz(self):
        return 1000.0 / (self.regs[0x19] + 1)

    def after_write(self, reg):
        if reg == 0x6A:
            if self.regs[0x6A] & 0x04:  # FIFO_RESET, self-clearing
                self.regs[0x6A] &= ~0x04 & 0xFF
                self.fifo = bytearray()
            if self.regs[0x6A] & 0x40 and self._fifo_t0 is None:
                self._fifo_reset()
            elif not self.regs[0x6A] & 0x40:
                self._fifo_t0 = None

    def _scales(self):
        gfs = (250, 500, 1000, 2000)[(self.regs[0x1B] >> 3) & 3]
        afs = (2, 4, 8, 16)[(self.regs[0x1C] >> 3) & 3]
        return 32768.0 / gfs, 32768.0 / afs

    def push_packet(self, sample):
        g, a = sample
        gs, as_ = self._scales()
        pkt = struct.pack(
            ">hhhhhh",
            _clip16(a[0] * as_),
            _clip16(a[1] * as_),
            _clip16(a[2] * as_),
            _clip16(g[0] * gs),
            _clip16(g[1] * gs),
            _clip16(g[2] * gs),
        )
        self.fifo.extend(pkt)
        extra = len(self.fifo) - self.FIFO_CAPACITY
        if extra > 0:
            # The chip overwrites the oldest bytes: the packet boundary is lost.
            self.fifo = self.fifo[extra:]
            self.fifo_lost += 1
            self.regs[0x3A] |= 0x10

    def read(self, reg, n):
        self.catch_up()
        self.reads += 1
        if reg == self.FIFO_R_W:
            out = bytearray(n)
            k = min(n, len(self.fifo))
            out[:k] = self.fifo[:k]
            self.fifo = self.fifo[k:]
            return out
        if reg == 0x72:  # FIFO_COUNTH/L, big-endian
            c = len(self.fifo)
            return bytearray(((c >> 8) & 0xFF, c & 0xFF))[:n]
        if reg == 0x3A:  # INT_STATUS: cleared by the read
            v = self.regs[0x3A]
            self.regs[0x3A] = 0
            out = bytearray(n)
            out[0] = v
            return out
        if reg <= self.DATA_REG < reg + n:
            self.encode_sample()
        return self.regs[reg : reg + n]

    def encode_sample(self):
        g, a = self.source()
        gfs = (250, 500, 1000, 2000)[(self.regs[0x1B] >> 3) & 3]
        afs = (2, 4, 8, 16)[(self.regs[0x1C] >> 3) & 3]
        gs = 32768.0 / gfs
        as_ = 32768.0 / afs
        struct.pack_into(
            ">hhhhhhh",
            self.regs,
            0x3B,
            _clip16(a[0] * as_),
            _clip16(a[1] * as_),
            _clip16(a[2] * as_),
            0,
            _clip16(g[0] * gs),
            _clip16(g[1] * gs),
            _clip16(g[2] * gs),
        )


class FakeLSM6DS(FakeDevice):
    WHO_AM_I_REG = 0x0F
    DATA_REG = 0x22
    FIFO_CAPACITY = 512  # 7-byte words (model; gyro + accel = 2 words per sample)
    _ODR = (0.0, 12.5, 26.0, 52.0, 104.0, 208.0, 416.0, 833.0)

    def __init__(self, address=0x6A, who_am_i=0x6C, source=None, clock=None):
        super().__init__(address, who_am_i, source, clock)
        self._popped = 0  # words read or overwritten since the FIFO started (pattern)

    def tagged(self):
        return self.regs[self.WHO_AM_I_REG] == 0x6C  # DSO/DSOX; DS3/DS3TR-C/DSL: pattern

    def fifo_enabled(self):
        if not self.tagged():
            return (self.regs[0x0A] & 7) == 6 and self.regs[0x08] == 0x09
        return (self.regs[0x0A] & 7) == 6 and self.regs[0x09] != 0

    def odr_hz(self):
        return self._ODR[(self.regs[0x10] >> 4) & 7]

    def after_write(self, reg):
        if reg == 0x0A:
            if (self.regs[0x0A] & 7) == 0:
                self.fifo = bytearray()
                self._fifo_t0 = None
                self._popped = 0
                self.regs[0x3B] &= ~0x40 & 0xFF
            elif self._fifo_t0 is None:
                self._fifo_reset()
                self._popped = 0

    def push_packet(self, sample):
        g, a = sample
        gfs = {0: 250, 1: 500, 2: 1000, 3: 2000}[(self.regs[0x11] >> 2) & 3]
        afs = {0: 2, 1: 16, 2: 4, 3: 8}[(self.regs[0x10] >> 2) & 3]
        gs = 32768.0 / gfs
        as_ = 32768.0 / afs
        if not self.tagged():
            # Pattern FIFO: 16-bit words gx gy gz ax ay az; 4096 words, oldest overwritten
            # (then reading resumes mid-pattern: FIFO_PATTERN says where).
            self.fifo.extend(
                struct.pack(
                    "<hhhhhh",
                    _clip16(g[0] * gs),
                    _clip16(g[1] * gs),
                    _clip16(g[2] * gs),
                    _clip16(a[0] * as_),
                    _clip16(a[1] * as_),
                    _clip16(a[2] * as_),
                )
            )
            extra = len(self.fifo) // 2 - 4096
            if extra > 0:
                self.fifo = self.fifo[2 * extra :]
                self._popped += extra
                self.fifo_lost += 1
                self.regs[0x3B] |= 0x40
            return
        self.fifo.extend(
            struct.pack(
                "<Bhhh", 0x01 << 3, _clip16(g[0] * gs), _clip16(g[1] * gs), _clip16(g[2] * gs)
            )
        )
        self.fifo.extend(
            struct.pack(
                "<Bhhh", 0x02 << 3, _clip16(a[0] * as_), _clip16(a[1] * as_), _clip16(a[2] * as_)
            )
        )
        words = len(self.fifo) // 7
        if words > self.FIFO_CAPACITY:
            # Continuous mode overwrites the oldest words (whole words: tags stay valid).
            self.fifo = self.fifo[7 * (words - self.FIFO_CAPACITY) :]
            self.fifo_lost += 1
            self.regs[0x3B] |= 0x40

    def read(self, reg, n):
        self.catch_up()
        self.reads += 1
        if not self.tagged():
            if reg == 0x3E:  # FIFO_DATA_OUT_L/H: one 16-bit word
                out = bytearray(n)
                k = min(n, 2, len(self.fifo))
                out[:k] = self.fifo[:k]
                self.fifo = self.fifo[k:]
                self._popped += k // 2
                return out
            if reg == 0x3A:  # FIFO_STATUS1..4
                w = len(self.fifo) // 2
                st2 = (self.regs[0x3B] & 0x40) | ((w >> 8) & 0x0F)
                self.regs[0x3B] &= ~0x40 & 0xFF
                pat = self._popped % 6
                return bytearray((w & 0xFF, st2, pat & 0xFF, (pat >> 8) & 3))[:n]
        if reg == 0x78:
            out = bytearray(n)
            k = min(n, 7, len(self.fifo))
            out[:k] = self.fifo[:k]
            self.fifo = self.fifo[k:]
            return out
        if reg == 0x3A:
            w = len(self.fifo) // 7
            st2 = (self.regs[0x3B] & 0x40) | ((w >> 8) & 3)
            self.regs[0x3B] &= ~0x40 & 0xFF  # the flag clears once read
            return bytearray((w & 0xFF, st2))[:n]
        if reg <= self.DATA_REG < reg + n:
            self.encode_sample()
        return self.regs[reg : reg + n]

    def encode_sample(self):
        g, a = self.source()
        gfs = {0: 250, 1: 500, 2: 1000, 3: 2000}[(self.regs[0x11] >> 2) & 3]
        afs = {0: 2, 1: 16, 2: 4, 3: 8}[(self.regs[0x10] >> 2) & 3]
        gs = 32768.0 / gfs
        as_ = 32768.0 / afs
        struct.pack_into(
            "<hhhhhh",
            self.regs,
            0x22,
            _clip16(g[0] * gs),
            _clip16(g[1] * gs),
            _clip16(g[2] * gs),
            _clip16(a[0] * as_),
            _clip16(a[1] * as_),
            _clip16(a[2] * as_),
        )


class FakeI2C:
    """The subset of machine.I2C the drivers use: scan, readfrom_mem(_into), writeto_mem."""

    def __init__(self, devices=()):
        self.devices = {}
        for d in devices:
            self.devices[d.address] = d
        self.fail_reads = 0
        self.fail_writes = 0
        self.absent = False
        self.transfers = 0

    def _dev(self, addr):
        if self.absent or addr not in self.devices:
            raise OSError(ENODEV)
        return self.devices[addr]

    def scan(self):
        return [] if self.absent else sorted(self.devices)

    def readfrom_mem_into(self, addr, reg, buf):
        self.transfers += 1
        dev = self._dev(addr)
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise OSError(EIO)
        buf[:] = dev.read(reg, len(buf))

    def readfrom_mem(self, addr, reg, n):
        buf = bytearray(n)
        self.readfrom_mem_into(addr, reg, buf)
        return bytes(buf)

    def writeto_mem(self, addr, reg, buf):
        self.transfers += 1
        dev = self._dev(addr)
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise OSError(EIO)
        dev.write(reg, buf)
