"""Drivers against the fake register maps: detection, ranges, WHO_AM_I errors, I2C faults."""

from __future__ import annotations

from array import array

import pytest
from dgsclip.drivers import LSM6DS, MPU6050, ImuError, detect

from edge_service.sim.fake_i2c import FakeI2C, FakeLSM6DS, FakeMPU6050

G = (12.5, -250.0, 33.0)
A = (0.25, -0.5, 0.9)


def src():
    return G, A


def bufs():
    return array("f", [0.0] * 3), array("f", [0.0] * 3)


@pytest.mark.parametrize(
    "dev,cls,name",
    [
        (FakeMPU6050(0x68, 0x68, src), MPU6050, "mpu6050"),
        (FakeMPU6050(0x69, 0x70, src), MPU6050, "mpu6500"),
        (FakeLSM6DS(0x6A, 0x6C, src), LSM6DS, "lsm6dsox"),
        (FakeLSM6DS(0x6B, 0x69, src), LSM6DS, "lsm6ds3"),
    ],
)
def test_detect_finds_each_family_at_each_address(dev, cls, name):
    imu = detect(FakeI2C([dev]))
    assert isinstance(imu, cls) and imu.name == name and imu.address == dev.address
    g, a = bufs()
    assert imu.read_into(g, a)
    # Quantisation of a 500 dps / 4 g full scale: one LSB.
    assert list(g) == pytest.approx(G, abs=500 / 32768 + 1e-6)
    assert list(a) == pytest.approx(A, abs=4 / 32768 + 1e-6)


@pytest.mark.parametrize("gyro_range,accel_range", [(250, 2), (2000, 16), (1000, 8)])
def test_range_setup_is_written_to_the_chip(gyro_range, accel_range):
    # The fake encodes with whatever range the registers say: a wrong set-up reads wrong.
    for dev in (
        FakeMPU6050(source=lambda: ((200.0, 0.0, -200.0), (1.5, 0.0, -1.5))),
        FakeLSM6DS(source=lambda: ((200.0, 0.0, -200.0), (1.5, 0.0, -1.5))),
    ):
        imu = detect(FakeI2C([dev]), gyro_range_dps=gyro_range, accel_range_g=accel_range)
        g, a = bufs()
        imu.read_into(g, a)
        exp_g = min(200.0, gyro_range * 32767 / 32768)
        exp_a = min(1.5, accel_range * 32767 / 32768)
        assert g[0] == pytest.approx(exp_g, rel=1e-3) and g[2] == pytest.approx(-exp_g, rel=1e-3)
        assert a[0] == pytest.approx(exp_a, rel=1e-3)


def test_odr_setup():
    dev = FakeMPU6050()
    detect(FakeI2C([dev]), odr_hz=200)
    assert dev.regs[0x19] == 4  # 1 kHz / (1 + 4) = 200 Hz
    dev2 = FakeLSM6DS()
    imu = detect(FakeI2C([dev2]), odr_hz=100)
    assert imu.odr_hz == 104 and dev2.regs[0x10] >> 4 == 4 and dev2.regs[0x11] >> 4 == 4


def test_wrong_who_am_i_says_what_to_fix():
    with pytest.raises(ImuError, match=r"WHO_AM_I=0x12.*expected one of 0x68.*set imu to 'auto'"):
        MPU6050(FakeI2C([FakeMPU6050(0x68, who_am_i=0x12)]))


def test_nothing_on_the_bus_lists_what_was_tried():
    with pytest.raises(ImuError, match=r"MPU6050@0x68.*LSM6DS@0x6b.*check wiring"):
        detect(FakeI2C([]))


def test_detect_only_family_and_skip_for_pelvis():
    bus = FakeI2C([FakeMPU6050(0x68), FakeLSM6DS(0x6A)])
    assert isinstance(detect(bus, only="lsm6ds"), LSM6DS)
    thigh = detect(bus)
    pelvis = detect(bus, skip=(thigh.address,))
    assert (thigh.address, pelvis.address) == (0x68, 0x6A)


def test_transient_i2c_errors_are_retried_and_counted():
    bus = FakeI2C([FakeMPU6050(source=src)])
    imu = detect(bus)
    g, a = bufs()
    bus.fail_reads = 2
    assert imu.read_into(g, a) is True
    assert imu.i2c_errors == 2
    assert g[1] == pytest.approx(G[1], abs=0.02)


def test_bus_reinit_recovers_and_reapplies_configuration():
    dev = FakeMPU6050(source=src)
    bus = FakeI2C([dev])
    fresh = FakeI2C([dev])
    imu = detect(bus, reinit=lambda: fresh)
    g, a = bufs()
    bus.fail_reads = 100  # the old bus is wedged for good
    dev.regs[0x1B] = 0  # and the chip browned out to its 250 dps default
    assert imu.read_into(g, a) is True
    assert imu.i2c is fresh and imu.recoveries == 1 and imu.i2c_errors == 2
    assert dev.regs[0x1B] == 1 << 3  # 500 dps re-applied, so the value is right
    assert g[1] == pytest.approx(G[1], abs=0.02)


def test_persistent_i2c_error_returns_false_and_never_raises():
    bus = FakeI2C([FakeMPU6050(source=src)])
    imu = detect(bus, reinit=lambda: None)
    g, a = bufs()
    bus.fail_reads = 1000
    bus.fail_writes = 1000
    for _ in range(3):
        assert imu.read_into(g, a) is False
    assert imu.i2c_errors >= 9


def test_unplugged_during_streaming_counts_errors():
    bus = FakeI2C([FakeLSM6DS(source=src)])
    imu = detect(bus)
    g, a = bufs()
    bus.absent = True
    for _ in range(5):
        assert imu.read_into(g, a) is False
    assert imu.i2c_errors == 15
    bus.absent = False
    assert imu.read_into(g, a) is True


def test_write_failure_during_setup_is_a_clear_error():
    bus = FakeI2C([FakeMPU6050()])
    bus.fail_writes = 10
    with pytest.raises(ImuError, match="writing register"):
        MPU6050(bus)
