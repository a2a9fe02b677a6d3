"""IMU drivers behind one small interface, and WHO_AM_I auto-detection.

Interface of every driver (see base.ImuBase):
  Driver(i2c, address=None, accel_range_g=4, gyro_range_dps=500, odr_hz=104, reinit=None)
  .read_into(gyro_dps, accel_g) -> bool   fill two preallocated 3-arrays; False on I2C error
  .name, .address, .i2c_errors, .recoveries
"""

from dgsclip.drivers.base import ImuError
from dgsclip.drivers.lsm6ds import LSM6DS
from dgsclip.drivers.mpu6050 import MPU6050

DRIVERS = (MPU6050, LSM6DS)


FAMILIES = {"mpu6050": MPU6050, "lsm6ds": LSM6DS}


def detect(i2c, skip=(), only="auto", **kwargs):
    """First IMU found on the bus (any family, usual addresses), configured.

    skip: addresses already in use (e.g. the thigh IMU when looking for a pelvis IMU).
    only: "auto" or a family name from FAMILIES (config key `imu`).
    Raises ImuError listing what was tried when nothing answers.
    """
    tried = []
    for cls in DRIVERS:
        if only != "auto" and FAMILIES.get(only) is not cls:
            continue
        for addr in cls.ADDRESSES:
            if addr in skip:
                continue
            tried.append("%s@0x%02x" % (cls.__name__, addr))
            if cls.probe(i2c, addr):
                return cls(i2c, address=addr, **kwargs)
    raise ImuError(
        "no supported IMU found (tried %s); check wiring, pull-ups and the I2C pins in config"
        % ", ".join(tried)
    )


__all__ = ["DRIVERS", "FAMILIES", "LSM6DS", "MPU6050", "ImuError", "detect"]
