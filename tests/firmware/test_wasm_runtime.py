"""The firmware's runtime in the real MicroPython interpreter (WebAssembly port).

- main.main with the modelled blocking TinyUSB CDC (edge_service/sim/usbcdc.py) and a
  virtual machine.Timer: a 30 s host stall loses no sample, bit-identical to a run whose
  host never stalls; machine.I2C got its timeout.
- Atomic calibration on the port's real filesystem with a power cut after every operation.
- gc.mem_alloc: the framing and output path allocates nothing per sample after warm-up.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from dgsclip import protocol as P

from edge_service.clip.decoder import FrameDecoder
from edge_service.clip.messages import Ack, Sample
from edge_service.sim.imu import simulate_imu
from edge_service.sim.motion import manoeuvre
from tests.harness.paths import REPO

pytestmark = pytest.mark.sim

RATE = 100
END_S = 40.0
STALL = (5.0, 35.0)

STALL_SCRIPT = """
import os, struct, time
import machine, fake_i2c, usbcdc
from dgsclip.storage import DirFS
from dgsclip.usbio import UsbIO
from dgsclip import protocol as P
RATE = %(rate)d
data = open('/data/imu.bin', 'rb').read()
N = len(data) // 24

class Clock:
    def __init__(self):
        self.t = 0
        self.timers = []
    def ticks_us(self):
        return self.t & 0x3FFFFFFF
    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)
    def ticks_add(self, a, d):
        return time.ticks_add(a, d)
    def elapsed_us(self):
        return self.t
    def sleep_us(self, n):
        target = self.t + (n if n > 0 else 1)
        for tm in self.timers:  # machine.Timer callbacks, as scheduled while waiting
            while tm.next <= target:
                if tm.next > self.t:
                    self.t = tm.next
                tm.next += tm.period
                tm.cb(tm)
        self.t = target

class Timer:
    def __init__(self, clock):
        self.clock = clock
    def init(self, period, callback):
        self.period = period * 1000
        self.next = self.clock.t + self.period
        self.cb = callback
        self.clock.timers.append(self)
    def deinit(self):
        self.clock.timers.remove(self)

def run(tag, stall):
    clock = Clock()
    class Source:
        def at_us(self, t):
            k = t * RATE // 1000000
            if k >= N:
                k = N - 1
            v = struct.unpack_from('<6f', data, 24 * k)
            return (v[0], v[1], v[2]), (v[3], v[4], v[5])
        def __call__(self):
            return self.at_us(clock.t)
    bus = fake_i2c.FakeI2C([fake_i2c.FakeMPU6050(0x68, source=Source(), clock=clock)])
    machine.set_bus(bus)
    cdc = usbcdc.CdcModel(clock)
    if stall:
        cdc.stall_windows = [(%(s0)d, %(s1)d)]
    cdc.at(0.2, P.encode_command(1, P.CMD_START))
    cdc.at(%(end)f, P.encode_command(2, P.CMD_EXIT_REPL))
    io = UsbIO(cdc.stdin, cdc, cdc.poll_in, cdc.poll_out, cdc.ticks_ms, lambda a, b: a - b)
    os.mkdir('/flash' + tag)
    import main
    app = main.main(io=io, clock=clock, fs=DirFS('/flash' + tag), timer=Timer(clock))
    end = clock.t + 2000000
    while clock.t < end:  # the host reads what the ring still holds
        app.step()
    open('/out' + tag + '.bin', 'wb').write(cdc.received)
    print('RUN', tag, app.fused, app.samples, app.ring.peak, app.ring.dropped, io.stalls,
          cdc.waited_us)

run('ref', False)
run('stall', True)
print('I2C', machine.I2C_KWARGS[-1]['timeout'])
"""


def test_30_s_host_stall_in_micropython_loses_no_sample(mpwasm) -> None:  # type: ignore[no-untyped-def]
    motion = manoeuvre("fair", repetitions=3)
    s = simulate_imu(motion, side="left", seed=5)
    imu = np.column_stack([s.gyro_dps, s.accel_g]).astype("<f4").tobytes()
    assert motion.duration_s > END_S
    res = mpwasm.run(
        STALL_SCRIPT % {"rate": RATE, "s0": STALL[0] * 1e6, "s1": STALL[1] * 1e6, "end": END_S},
        files={
            "/data/imu.bin": imu,
            "/lib/usbcdc.py": (REPO / "edge_service/sim/usbcdc.py").read_bytes(),
        },
        export=("/outref.bin", "/outstall.bin"),
        timeout_s=600,
    ).check()
    runs = {}
    for line in res.stdout.splitlines():
        if line.startswith("RUN "):
            tag, *nums = line.split()[1:]
            runs[tag] = [int(x) for x in nums]
    fused, sent, peak, dropped, stalls, waited = runs["stall"]
    assert fused >= sent
    assert dropped == 0 and peak >= (STALL[1] - STALL[0]) * RATE - 50
    assert stalls == 1 and waited == 1_000_000  # TinyUSB's two 500 ms waits, once
    assert runs["ref"][1] == sent and runs["ref"][2] < 10
    assert "I2C 20000" in res.stdout  # machine.I2C(..., timeout=i2c_timeout_us)
    got = {}
    for tag in ("ref", "stall"):
        dec = FrameDecoder()
        msgs = dec.feed(res.files[f"/out{tag}.bin"])
        assert dec.stats.lost_frames == 0 and dec.stats.crc_errors == 0
        assert [m.ok for m in msgs if isinstance(m, Ack)] == [True, True]
        got[tag] = [m for m in msgs if isinstance(m, Sample)]
    a, b = got["ref"], got["stall"]
    assert len(b) == sent > (END_S - 1) * RATE
    assert [(m.t_us, m.flex_cdeg, m.add_cdeg, m.rot_cdeg, m.quat) for m in a] == [
        (m.t_us, m.flex_cdeg, m.add_cdeg, m.rot_cdeg, m.quat) for m in b
    ]
    dts = {(y.t_us - x.t_us) % P.TICKS_PERIOD for x, y in itertools.pairwise(b)}
    assert dts == {10_000}


POWERCUT_SCRIPT = """
import os, json
import powercut
from dgsclip.storage import DirFS
from dgsclip import persist
from dgsclip.calib import Calibration
NAME = 'dgsclip_cal.json'

def text(m):
    c = Calibration()
    for i in range(4):
        c.mount[i] = m[i]
    c.has_mount = True
    return json.dumps(c.to_dict())

OLD = text([1.0, 0.0, 0.0, 0.0])
NEW = text([0.9238795, 0.0, 0.3826834, 0.0])
full = powercut.CutOs(os, -1, open)
os.mkdir('/count')
DirFS('/count', full).write(NAME, NEW)
print('OPS', ','.join(full.ops))
out = []
for k in range(len(full.ops) + 1):
    d = '/cut' + str(k)
    os.mkdir(d)
    DirFS(d, powercut.CutOs(os, -1, open)).write(NAME, OLD)
    try:
        DirFS(d, powercut.CutOs(os, k, open)).write(NAME, NEW)
        cut = False
    except powercut.PowerCut:
        cut = True
    c = Calibration()
    problem = persist.load_calibration(DirFS(d), c, NAME)
    out.append([k, cut, c.has_mount, round(c.mount[0], 4), problem, sorted(os.listdir(d))])
print('RESULT', json.dumps(out))
"""


def test_atomic_calibration_on_the_wasm_filesystem_survives_every_cut(mpwasm) -> None:  # type: ignore[no-untyped-def]
    res = mpwasm.run(
        POWERCUT_SCRIPT,
        files={"/lib/powercut.py": (REPO / "edge_service/sim/powercut.py").read_bytes()},
    ).check()
    ops = next(x for x in res.stdout.splitlines() if x.startswith("OPS "))[4:].split(",")
    assert ops[-1] == "rename" and "remove" not in ops  # write, flush, close, rename
    rows = json.loads(next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert len(rows) == len(ops) + 1
    for k, cut, has_mount, w, _problem, _files in rows:
        assert has_mount, (k, ops)
        assert w in (1.0, 0.9239)
        assert cut == (k < len(ops))
    assert rows[-1][3] == 0.9239 and rows[0][3] == 1.0


ALLOC_SCRIPT = """
import gc, os, time
from array import array
import fake_i2c
from dgsclip.app import App
from dgsclip.config import validate
from dgsclip.drivers import detect
from dgsclip.storage import DirFS

class IO:
    n = 0
    def read(self):
        return None
    def write_nb(self, b):
        IO.n += len(b)
        return len(b)
    def write(self, b):
        pass

class Clock:
    t = 0
    def ticks_us(self):
        return self.t
    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)
    def ticks_add(self, a, d):
        return time.ticks_add(a, d)
    def sleep_us(self, n):
        self.t += n
    def elapsed_us(self):
        return self.t

os.mkdir('/flash')
clock = Clock()
app = App(detect(fake_i2c.FakeI2C([fake_i2c.FakeMPU6050()])), IO(), clock, DirFS('/flash'),
          cfg=validate({'ring_samples': 100}))
ang = array('i', (1250, -325, 700))  # centidegrees
def fill(n):
    for i in range(n):
        app.ring.push(i * 10000, ang, app.q14, 3, 0, 0, None)
s0 = app.samples
for _ in range(5):  # warm-up: frame views, dict slots
    fill(50)
    app._output(0)
gc.collect()
gc.disable()
fill(80)
a = gc.mem_alloc()
app._output(0)  # the output half: ring -> SAMPLE frame -> CRC -> COBS -> port
b = gc.mem_alloc()
print('ALLOC', app.samples - s0, b - a, IO.n)
"""


def test_framing_and_output_allocate_nothing_per_sample(mpwasm) -> None:  # type: ignore[no-untyped-def]
    res = mpwasm.run(ALLOC_SCRIPT).check()
    line = next(x for x in res.stdout.splitlines() if x.startswith("ALLOC "))
    samples, delta, nbytes = (int(x) for x in line.split()[1:])
    assert samples == 330 and nbytes > 330 * 30
    assert delta == 0  # 80 samples framed, CRC'd, COBS'd and written: 0 bytes allocated


STEP_ALLOC_SCRIPT = """
import gc, os, time, micropython
from array import array
import fake_i2c
from dgsclip.app import App
from dgsclip.config import validate
from dgsclip.drivers import detect
from dgsclip.storage import DirFS

class IO:
    n = 0
    def read(self):
        return None
    def write_nb(self, b):
        IO.n += len(b)
        return len(b)
    def write(self, b):
        pass

class Clock:
    t = 0
    def ticks_us(self):
        return self.t
    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)
    def ticks_add(self, a, d):
        return time.ticks_add(a, d)
    def sleep_us(self, n):
        self.t = (self.t + n) & 0x3FFFFFFF
    def elapsed_us(self):
        return self.t

class Timer:
    cb = None
    def init(self, period, callback):
        self.period = period
        self.cb = callback

class FifoBus:
    # After configuration: the MPU-6050's FIFO registers holding `avail` copies of one
    # 12-byte packet (the clip lying still, tilted; gyro = a small bias). No allocation.
    def __init__(self, pkt):
        self.pkt = pkt
        self.avail = 0
    def readfrom_mem_into(self, addr, reg, buf):
        if reg == 0x74:  # k packets per read of 12 k bytes (the batched drain)
            p = self.pkt
            for i in range(len(buf)):
                buf[i] = p[i % 12]
            self.avail -= len(buf) // 12
        elif reg == 0x72:
            n = self.avail * 12
            buf[0] = n >> 8
            buf[1] = n & 0xFF
        else:
            buf[0] = 0
    def writeto_mem(self, addr, reg, buf):
        pass

os.mkdir('/flash')
clock = Clock()
imu = detect(fake_i2c.FakeI2C([fake_i2c.FakeMPU6050()]), odr_hz=200)
timer = Timer()
app = App(imu, IO(), clock, DirFS('/flash'), timer=timer,
          cfg=validate({'ring_samples': 200, 'rate_hz': 200, 'autostart': True,
                        'status_period_ms': 60000}))
# accel (0.02, 0.99, 0.05) g at +-4 g, gyro (0.3, -0.2, 0.1) deg/s at +-500 deg/s: counts
pkt = bytes([0x00, 0xA4, 0x1F, 0xAE, 0x01, 0x9A, 0x00, 0x14, 0xFF, 0xF3, 0x00, 0x07])
fb = FifoBus(pkt)
imu.i2c = fb
PER = 4  # 20 ms timer period at 200 Hz
def cycle(n):
    for _ in range(n):
        clock.sleep_us(20000)
        fb.avail = PER
        timer.cb(None)
        app.step()
cycle(250)  # 5 s: start-up, the first bias learning (2 s of rest) and its accel bias
print('SETTLED', int(app.pipe.settled()), app.fused, app.samples, app.alloc_faults)
gc.collect()
gc.disable()
s0 = app.samples
a = gc.mem_alloc()
cycle(50)  # 1 s, 200 samples: FIFO drain, fusion, ring, framing, port, idle loop
b = gc.mem_alloc()
gc.enable()
print('ALLOC', app.samples - s0, b - a, app.alloc_faults, int(app.pipe.thigh.native))
m = app.pipe.thigh
print('STILL', m.S[2], m.bias_s, m.flags)
"""


def test_whole_sampling_path_allocates_nothing_per_sample(mpwasm) -> None:  # type: ignore[no-untyped-def]
    """The App's whole per-sample path on the real MicroPython (the WebAssembly port runs
    the pure-Python twins of the viper kernels): timer callback draining the IMU FIFO,
    fixed-point fusion + hip angles, ring, main loop framing + writing, idle sleep. After
    warm-up (incl. the once-only float work as the first bias learning ends) the heap
    stays exactly where it was, and it ran with the heap locked (no fault)."""
    res = mpwasm.run(STEP_ALLOC_SCRIPT).check()
    out = res.stdout.splitlines()
    settled = next(x for x in out if x.startswith("SETTLED ")).split()[1:]
    assert settled[0] == "1" and settled[3] == "0"
    samples, delta, faults, native = (
        int(x) for x in next(x for x in out if x.startswith("ALLOC ")).split()[1:]
    )
    assert samples == 200
    assert delta == 0
    assert faults == 0 and native == 0  # twins (no native emitter in this port)
    still = next(x for x in out if x.startswith("STILL ")).split()
    assert float(still[2]) >= 2.0  # the bias was learnt at rest during the warm-up
