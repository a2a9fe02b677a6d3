"""InvenSense MPU-6050 / MPU-6500 / MPU-9250 family (accel + gyro part)."""

import struct

from dgsclip.compat import const
from dgsclip.drivers.base import ImuBase, ImuError

_SMPLRT_DIV = const(0x19)
_CONFIG = const(0x1A)
_GYRO_CONFIG = const(0x1B)
_ACCEL_CONFIG = const(0x1C)
_ACCEL_XOUT_H = const(0x3B)  # ax ay az temp gx gy gz, big-endian int16
_FIFO_EN = const(0x23)
_INT_STATUS = const(0x3A)
_USER_CTRL = const(0x6A)
_FIFO_COUNTH = const(0x72)
_FIFO_R_W = const(0x74)
_FIFO_ACCEL_GYRO = const(0x78)  # XG, YG, ZG, ACCEL: 12 bytes per sample, accel first
_FIFO_OFLOW = const(0x10)
_FIFO_BYTES = const(12)
FIFO_BATCH = const(8)  # packets per transfer in a batched drain
_PWR_MGMT_1 = const(0x6B)
_WHO_AM_I = const(0x75)

_GYRO_RANGES = (250, 500, 1000, 2000)  # FS_SEL 0..3
_ACCEL_RANGES = (2, 4, 8, 16)  # AFS_SEL 0..3


class MPU6050(ImuBase):
    NAME = "MPU6050"
    ADDRESSES = (0x68, 0x69)
    WHO_AM_I_REG = _WHO_AM_I
    WHO_AM_I = {0x68: "mpu6050", 0x70: "mpu6500", 0x71: "mpu9250", 0x73: "mpu9255"}

    def __init__(
        self, i2c, address=None, accel_range_g=4, gyro_range_dps=500, odr_hz=100, reinit=None
    ):
        if gyro_range_dps not in _GYRO_RANGES:
            raise ImuError("MPU6050: gyro_range_dps must be one of %s" % (_GYRO_RANGES,))
        if accel_range_g not in _ACCEL_RANGES:
            raise ImuError("MPU6050: accel_range_g must be one of %s" % (_ACCEL_RANGES,))
        self.gyro_range_dps = gyro_range_dps
        self.accel_range_g = accel_range_g
        self.odr_hz = odr_hz
        self._buf = bytearray(14)
        self._fbuf = bytearray(_FIFO_BYTES)
        # Several FIFO packets in one transfer (the sampler's locked drain): the register
        # streams the FIFO, so k packets are one read of 12k bytes. Views made once (the
        # drain runs with the heap locked).
        self.fbatch = bytearray(_FIFO_BYTES * FIFO_BATCH)
        mv = memoryview(self.fbatch)
        self._fviews = tuple(mv[: _FIFO_BYTES * k] for k in range(FIFO_BATCH + 1))
        self._b2 = bytearray(2)
        self._g_scale = gyro_range_dps / 32768.0
        self._a_scale = accel_range_g / 32768.0
        super().__init__(i2c, address, reinit)
        self.has_fifo = True  # 1024-byte FIFO on every part of the family
        self.configure()

    def configure(self):
        self._write_reg(_PWR_MGMT_1, 0x01)  # wake, PLL on gyro X (better than internal RC)
        self._write_reg(_CONFIG, 0x02)  # DLPF ~94 Hz: gyro output rate 1 kHz
        div = int(1000 // self.odr_hz) - 1
        self._write_reg(_SMPLRT_DIV, max(0, min(255, div)))
        self._write_reg(_GYRO_CONFIG, _GYRO_RANGES.index(self.gyro_range_dps) << 3)
        self._write_reg(_ACCEL_CONFIG, _ACCEL_RANGES.index(self.accel_range_g) << 3)
        self.odr_hz = 1000 // (max(0, min(255, div)) + 1)
        if self.fifo_on:
            self._fifo_setup()  # a recovery after a brown-out re-arms the FIFO too

    def _fifo_setup(self):
        self._write_reg(_USER_CTRL, 0x04)  # FIFO_RESET (self-clearing), FIFO disabled
        self._write_reg(_FIFO_EN, _FIFO_ACCEL_GYRO)
        self._write_reg(_USER_CTRL, 0x40)  # FIFO_EN

    def _fifo_level(self):
        b1 = self._b1
        self.i2c.readfrom_mem_into(self.address, _INT_STATUS, b1)  # read clears the flag
        if b1[0] & _FIFO_OFLOW:
            # 1024 is not a multiple of 12: after an overflow the packet boundary is lost.
            return self._fifo_overflowed()
        b2 = self._b2
        self.i2c.readfrom_mem_into(self.address, _FIFO_COUNTH, b2)
        return ((b2[0] << 8) | b2[1]) // _FIFO_BYTES

    fifo_batch = FIFO_BATCH

    def fifo_read_batch(self, k):
        """Pop k (1..fifo_batch) packets in one transfer into `fbatch` (packet j at 12 j,
        decode with the fxio.be6_into kernel); False on a bus error."""
        return self._read_block(_FIFO_R_W, self._fviews[k])

    def fifo_read(self, gyro, accel):
        """Pop one sample (call at most fifo_level() times); False on a bus error."""
        buf = self._fbuf
        if not self._read_block(_FIFO_R_W, buf):
            return False
        if self._be6 is not None:  # raw_units: one call, no per-value bytecode
            self._be6(buf, gyro, accel, self._g_scale, self._a_scale, 0)
            return True
        a = self._a_scale
        g = self._g_scale
        accel[0] = _be16(buf, 0) * a
        accel[1] = _be16(buf, 2) * a
        accel[2] = _be16(buf, 4) * a
        gyro[0] = _be16(buf, 6) * g
        gyro[1] = _be16(buf, 8) * g
        gyro[2] = _be16(buf, 10) * g
        return True

    def read_into(self, gyro, accel):
        buf = self._buf
        if not self._read_block(_ACCEL_XOUT_H, buf):
            return False
        a = self._a_scale
        g = self._g_scale
        accel[0] = struct.unpack_from(">h", buf, 0)[0] * a
        accel[1] = struct.unpack_from(">h", buf, 2)[0] * a
        accel[2] = struct.unpack_from(">h", buf, 4)[0] * a
        gyro[0] = struct.unpack_from(">h", buf, 8)[0] * g
        gyro[1] = struct.unpack_from(">h", buf, 10)[0] * g
        gyro[2] = struct.unpack_from(">h", buf, 12)[0] * g
        return True


def _be16(b, i):
    # int16 big-endian without struct.unpack_from's result tuple (no heap allocation)
    v = (b[i] << 8) | b[i + 1]
    return v - 65536 if v & 0x8000 else v
