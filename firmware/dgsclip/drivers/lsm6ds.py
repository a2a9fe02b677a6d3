"""ST LSM6DSOX / LSM6DSO / LSM6DS3 / LSM6DS3TR-C / LSM6DSL family (accel + gyro).

Register layout as in micropython-lib drivers/imu/lsm6dsox; the DS3/DSL parts share the
CTRL1_XL/CTRL2_G/OUTX_L_G map used here. The FIFOs differ: LSM6DSO/DSOX have the tagged FIFO
(a tag byte + 6 data bytes per word at 0x78), LSM6DS3/DS3TR-C/DSL the pattern FIFO (16-bit
words at FIFO_DATA_OUT 0x3E, gyro x y z then accel x y z per sample, FIFO_PATTERN says which
word comes next).
"""

import struct

from dgsclip.compat import const
from dgsclip.drivers.base import ImuBase, ImuError

_FIFO_CTRL3 = const(0x09)  # BDR_GY[7:4] | BDR_XL[3:0], same codes as the ODR
_FIFO_CTRL4 = const(0x0A)  # FIFO_MODE[2:0]: 0 bypass (clears), 6 continuous
_FIFO_STATUS1 = const(0x3A)  # DIFF_FIFO[7:0], then STATUS2: DIFF_FIFO[9:8], FIFO_OVR_IA 0x40
_FIFO_DATA_OUT_TAG = const(0x78)  # tag byte (sensor in bits 7:3) + 6 data bytes
_TAG_GYRO = const(0x01)
_TAG_ACCEL = const(0x02)
_FIFO_OVR = const(0x40)
# LSM6DS3 / DS3TR-C / DSL pattern FIFO
_P_FIFO_CTRL3 = const(0x08)  # DEC_FIFO_GYRO[5:3] | DEC_FIFO_XL[2:0]: 001 = no decimation
_P_FIFO_CTRL5 = const(0x0A)  # ODR_FIFO[6:3] | FIFO_MODE[2:0]: 0 bypass, 6 continuous
_P_FIFO_STATUS1 = const(0x3A)  # DIFF_FIFO[7:0]; STATUS2: DIFF_FIFO[11:8], OVER_RUN 0x40;
#                                STATUS3/4: FIFO_PATTERN (index of the next word, 0..5)
_P_FIFO_DATA_OUT_L = const(0x3E)
_WHO_AM_I = const(0x0F)
_CTRL1_XL = const(0x10)
_CTRL2_G = const(0x11)
_CTRL3_C = const(0x12)
_OUTX_L_G = const(0x22)  # gx gy gz ax ay az, little-endian int16

_ODR = (12.5, 26, 52, 104, 208, 416, 833)  # codes 1..7
_ACCEL_FS = {2: 0, 16: 1, 4: 2, 8: 3}
_GYRO_FS = {250: 0, 500: 1, 1000: 2, 2000: 3}


class LSM6DS(ImuBase):
    NAME = "LSM6DS"
    ADDRESSES = (0x6A, 0x6B)
    WHO_AM_I_REG = _WHO_AM_I
    WHO_AM_I = {
        0x6C: "lsm6dsox",
        0x69: "lsm6ds3",
        0x6A: "lsm6ds3trc",
    }  # DSO=DSOX id, DSL=DS3TR-C id

    def __init__(
        self, i2c, address=None, accel_range_g=4, gyro_range_dps=500, odr_hz=104, reinit=None
    ):
        if gyro_range_dps not in _GYRO_FS:
            raise ImuError("LSM6DS: gyro_range_dps must be one of %s" % (sorted(_GYRO_FS),))
        if accel_range_g not in _ACCEL_FS:
            raise ImuError("LSM6DS: accel_range_g must be one of %s" % (sorted(_ACCEL_FS),))
        self.gyro_range_dps = gyro_range_dps
        self.accel_range_g = accel_range_g
        self._set_odr(odr_hz)
        self._buf = bytearray(12)
        self._word = bytearray(7)
        self._b2 = bytearray(2)
        self._b4 = bytearray(4)
        self._skip = 0
        self._g_scale = gyro_range_dps / 32768.0
        self._a_scale = accel_range_g / 32768.0
        super().__init__(i2c, address, reinit)
        self._tagged = self.name == "lsm6dsox"  # else the DS3/DS3TR-C/DSL pattern FIFO
        self.has_fifo = True
        self.configure()

    def _set_odr(self, hz):
        # Smallest ODR at or above the request so the app loop never waits on stale data.
        code = len(_ODR)
        for i in range(len(_ODR)):
            if _ODR[i] >= hz:
                code = i + 1
                break
        self._odr_code = code
        self.odr_hz = _ODR[code - 1]

    def configure(self):
        self._write_reg(_CTRL3_C, 0x44)  # BDU + register auto-increment
        self._write_reg(_CTRL1_XL, (self._odr_code << 4) | (_ACCEL_FS[self.accel_range_g] << 2))
        self._write_reg(_CTRL2_G, (self._odr_code << 4) | (_GYRO_FS[self.gyro_range_dps] << 2))
        if self.fifo_on:
            self._fifo_setup()

    def _fifo_setup(self):
        if not self._tagged:
            self._write_reg(_P_FIFO_CTRL5, 0)  # bypass: empties the FIFO
            self._write_reg(_P_FIFO_CTRL3, 0x09)  # gyro and accel in, no decimation
            self._write_reg(_P_FIFO_CTRL5, (self._odr_code << 3) | 6)  # ODR, continuous
            return
        self._write_reg(_FIFO_CTRL4, 0)  # bypass: empties the FIFO
        self._write_reg(_FIFO_CTRL3, (self._odr_code << 4) | self._odr_code)
        self._write_reg(_FIFO_CTRL4, 6)  # continuous

    def _fifo_level(self):
        if not self._tagged:
            b4 = self._b4
            self.i2c.readfrom_mem_into(self.address, _P_FIFO_STATUS1, b4)
            if b4[1] & _FIFO_OVR:
                return self._fifo_overflowed()
            words = b4[0] | ((b4[1] & 0x0F) << 8)
            pattern = b4[2] | ((b4[3] & 3) << 8)
            # Whole samples from the next sample boundary on (pattern 0 = gyro x).
            skip = (6 - pattern) % 6
            self._skip = skip
            return (words - skip) // 6 if words > skip else 0
        b2 = self._b2
        self.i2c.readfrom_mem_into(self.address, _FIFO_STATUS1, b2)
        if b2[1] & _FIFO_OVR:
            return self._fifo_overflowed()
        return (b2[0] | ((b2[1] & 3) << 8)) >> 1  # one gyro + one accel word per sample

    def _pattern_read(self, gyro, accel):
        b2 = self._b2
        while self._skip:  # a partly read sample (after an error): realign on gyro x
            if not self._read_block(_P_FIFO_DATA_OUT_L, b2):
                return False
            self._skip -= 1
        g = self._g_scale
        a = self._a_scale
        for i in range(6):
            if not self._read_block(_P_FIFO_DATA_OUT_L, b2):
                # Whether the failed transfer popped a word is unknown: the next
                # fifo_level() realigns from FIFO_PATTERN, dropping this sample whole.
                return False
            v = _le16(b2, 0)
            if i < 3:
                gyro[i] = v * g
            else:
                accel[i - 3] = v * a
        return True

    def fifo_read(self, gyro, accel):
        if not self._tagged:
            return self._pattern_read(gyro, accel)
        """Pop words until one gyro and one accel word were read (a sample); False on a bus
        error or when the pair is broken (then the FIFO is reset and counted)."""
        w = self._word
        have = 0
        for _ in range(4):
            if not self._read_block(_FIFO_DATA_OUT_TAG, w):
                return False
            tag = w[0] >> 3
            if tag == _TAG_GYRO:
                dst = gyro
                s = self._g_scale
                have |= 1
            elif tag == _TAG_ACCEL:
                dst = accel
                s = self._a_scale
                have |= 2
            else:
                continue  # other sensors / timestamp words: not ours
            dst[0] = _le16(w, 1) * s
            dst[1] = _le16(w, 3) * s
            dst[2] = _le16(w, 5) * s
            if have == 3:
                return True
        self._fifo_overflowed()
        return False

    def read_into(self, gyro, accel):
        buf = self._buf
        if not self._read_block(_OUTX_L_G, buf):
            return False
        a = self._a_scale
        g = self._g_scale
        gyro[0] = struct.unpack_from("<h", buf, 0)[0] * g
        gyro[1] = struct.unpack_from("<h", buf, 2)[0] * g
        gyro[2] = struct.unpack_from("<h", buf, 4)[0] * g
        accel[0] = struct.unpack_from("<h", buf, 6)[0] * a
        accel[1] = struct.unpack_from("<h", buf, 8)[0] * a
        accel[2] = struct.unpack_from("<h", buf, 10)[0] * a
        return True


def _le16(b, i):
    # int16 little-endian without struct.unpack_from's result tuple (no heap allocation)
    v = b[i] | (b[i + 1] << 8)
    return v - 65536 if v & 0x8000 else v
