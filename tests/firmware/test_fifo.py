"""The IMU drivers' hardware FIFO against the fake register maps in virtual time: every part
family, exact sample values in order, overflow counted and recovered, the app's timestamps."""

from __future__ import annotations

import itertools
from array import array
from typing import Any

import pytest
from dgsclip import protocol as P
from dgsclip.drivers import detect

from edge_service.clip.messages import Sample
from edge_service.sim.fake_i2c import FakeI2C, FakeLSM6DS, FakeMPU6050
from edge_service.virtualclip import SimClock

from .conftest import Rig

PARTS = [
    ("mpu6050", lambda src, clock: FakeMPU6050(0x68, source=src, clock=clock), 100.0),
    ("lsm6dsox", lambda src, clock: FakeLSM6DS(0x6A, 0x6C, source=src, clock=clock), 104.0),
    ("lsm6ds3", lambda src, clock: FakeLSM6DS(0x6A, 0x69, source=src, clock=clock), 104.0),
    ("lsm6ds3trc", lambda src, clock: FakeLSM6DS(0x6A, 0x6A, source=src, clock=clock), 104.0),
]


class Counter:
    """Sample k carries k in gyro x (deg/s, < 2000 in these tests) so order and loss show."""

    def __init__(self) -> None:
        self.k = 0

    def at_us(self, t_us: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        self.k += 1
        return (float(self.k), -2.0, 3.0), (0.0, 1.0, 0.0)

    def __call__(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)


@pytest.mark.parametrize("name,make,odr", PARTS, ids=[p[0] for p in PARTS])
def test_fifo_delivers_every_sample_in_order_and_counts_an_overflow(
    name: str, make: Any, odr: float
) -> None:
    clock = SimClock()
    src = Counter()
    imu = detect(FakeI2C([make(src, clock)]), odr_hz=100, gyro_range_dps=2000)
    assert imu.name == name and imu.odr_hz == odr and imu.fifo_start()
    g = array("f", (0.0, 0.0, 0.0))
    a = array("f", (0.0, 0.0, 0.0))
    got: list[float] = []
    for _ in range(30):  # 30 x 20 ms, drained like the app's timer
        clock._virtual_us += 20_000
        n = imu.fifo_level()
        for _ in range(n):
            assert imu.fifo_read(g, a)
            got.append(round(g[0]))
            assert round(g[1]) == -2 and round(g[2]) == 3 and round(a[1] * 100) == 100
    assert got == list(range(1, len(got) + 1)) and len(got) >= int(0.6 * odr) - 1
    # 12 s unread: the chip's FIFO overflows; counted, and the next samples are whole again.
    clock._virtual_us += 12_000_000
    assert imu.fifo_level() == 0 and imu.fifo_overflows == 1
    clock._virtual_us += 100_000
    n = imu.fifo_level()
    vals = []
    for _ in range(n):
        assert imu.fifo_read(g, a)
        vals.append(round(g[0]))
        assert round(g[1]) == -2 and round(g[2]) == 3
    assert n >= 9 and vals == list(range(vals[0], vals[0] + n))


def test_pattern_fifo_realigns_after_a_sample_read_was_cut(tmp_path: Any) -> None:
    clock = SimClock()
    src = Counter()
    bus = FakeI2C([FakeLSM6DS(0x6A, 0x69, source=src, clock=clock)])
    imu = detect(bus, odr_hz=100, gyro_range_dps=2000)
    imu.fifo_start()
    g = array("f", (0.0, 0.0, 0.0))
    a = array("f", (0.0, 0.0, 0.0))
    clock._virtual_us += 50_000
    assert imu.fifo_level() == 5
    assert imu.fifo_read(g, a) and round(g[0]) == 1
    w = bytearray(2)
    for _ in range(3):  # half of sample 2 read, then the read was cut (bus error, reset)
        bus.readfrom_mem_into(0x6A, 0x3E, w)
    bus.fail_reads = 3
    assert not imu.fifo_read(g, a)  # the failed read is reported, never a half sample
    assert imu.fifo_level() == 3  # FIFO_PATTERN: sample 2 is dropped whole
    assert imu.fifo_read(g, a) and round(g[0]) == 3 and round(g[1]) == -2


def test_app_on_an_lsm6ds3_stamps_samples_at_the_imu_rate(tmp_path: Any) -> None:
    r = Rig(tmp_path)
    r.dev = FakeLSM6DS(0x6A, 0x69, source=lambda: ((0.5, 0.0, 0.0), (0.0, 1.0, 0.0)), clock=r.clock)
    r.bus = FakeI2C([r.dev])
    from dgsclip.app import App
    from dgsclip.config import validate

    r.app = App(detect(r.bus), r.io, r.clock, r.fs, cfg=validate({}))
    assert r.app.fifo
    r.send(1, P.CMD_START)
    before = [m for m in r.run_for(0.5) if isinstance(m, Sample)]
    r.clock._virtual_us += 300_000  # a stalled loop: the FIFO keeps the samples
    s = before + [m for m in r.run_for(0.5) if isinstance(m, Sample)]
    dts = {(b.t_us - a_.t_us) % P.TICKS_PERIOD for a_, b in itertools.pairwise(s)}
    # 1e6/104 µs exactly on average (9615 and 9616 µs steps), never re-anchored.
    assert dts == {9615, 9616} and all(x.overruns == 0 for x in s)
    t = [x.t_us for x in s]
    assert (t[104] - t[0]) % P.TICKS_PERIOD == 1_000_000


def test_a_fifo_that_stays_empty_is_rearmed_then_polled(tmp_path: Any) -> None:
    """A fake without a clock has a FIFO that never fills (like a chip whose FIFO is dead):
    the app re-arms it 3 times, then samples by polling and says so once."""
    from dgsclip.app import App
    from dgsclip.config import validate

    from edge_service.clip.messages import Log

    r = Rig(tmp_path)
    r.dev = FakeMPU6050(0x68, source=lambda: ((0.0, 0.0, 0.0), (0.0, 1.0, 0.0)))  # no clock
    r.bus = FakeI2C([r.dev])
    r.app = App(detect(r.bus), r.io, r.clock, r.fs, cfg=validate({}))
    assert r.app.fifo
    r.send(1, P.CMD_START)
    msgs = r.run_for(1.0)
    assert not r.app.fifo and r.app.fifo_rearms == 3
    logs = [m for m in msgs if isinstance(m, Log)]
    assert len(logs) == 1 and "polling" in logs[0].text
    s = [m for m in msgs if isinstance(m, Sample)]
    assert len(s) > 70  # ~80 of 100: the first 200 ms went to the re-arm attempts
