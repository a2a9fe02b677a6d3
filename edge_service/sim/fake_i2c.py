"""Fake I2C bus with MPU-6050 and LSM6DS register maps, for the real drivers.

Runs on CPython *and* MicroPython (the WebAssembly-port tests copy this file next to the
firmware), so it uses no typing imports, dataclasses or f-strings. A device holds a 128-byte
register file; writes to the configuration registers change the full-scale the fake uses to
encode samples, exactly as the chip would, so a driver that mis-configures the range reads
wrong values. `source()` is called on each data-register read and returns
((gx, gy, gz) deg/s, (ax, ay, az) g) in the sensor frame.
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

    def __init__(self, address, who_am_i, source=None):
        self.address = address
        self.regs = bytearray(128)
        self.regs[self.WHO_AM_I_REG] = who_am_i
        self.source = source or (lambda: ((0.0, 0.0, 0.0), (0.0, 1.0, 0.0)))
        self.reads = 0
        self.writes = []

    def encode_sample(self):
        raise NotImplementedError

    def read(self, reg, n):
        if reg <= self.DATA_REG < reg + n:
            self.encode_sample()
        self.reads += 1
        return self.regs[reg : reg + n]

    def write(self, reg, data):
        self.writes.append((reg, bytes(data)))
        self.regs[reg : reg + len(data)] = data


class FakeMPU6050(FakeDevice):
    WHO_AM_I_REG = 0x75
    DATA_REG = 0x3B

    def __init__(self, address=0x68, who_am_i=0x68, source=None):
        super().__init__(address, who_am_i, source)

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

    def __init__(self, address=0x6A, who_am_i=0x6C, source=None):
        super().__init__(address, who_am_i, source)

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
