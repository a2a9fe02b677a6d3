"""Clip entry point: build the real hardware and hand it to dgsclip.app.App.

Hardware: machine.I2C (pins/frequency from dgsclip.json), IMU(s) auto-detected by WHO_AM_I,
machine.WDT, USB CDC stdio as the transport, `time` as the clock. Binary on the USB REPL is
made safe with micropython.kbd_intr(-1) while the app runs; `exit_repl` (or the raw escape
mpremote sends, see docs/protocol.md) returns here and the REPL comes back. The watchdog
cannot be stopped once started, so in the REPL a soft timer keeps feeding it.

Stay-in-REPL escape hatch: if the file `norun` exists on the filesystem, main.py does
nothing (`mpremote fs touch :norun` and reset to recover a clip whose firmware misbehaves).
"""

import sys
import time

import machine
import micropython
from dgsclip import config
from dgsclip import protocol as P
from dgsclip.app import App
from dgsclip.drivers import ImuError, detect
from dgsclip.storage import DirFS


class UsbIO:
    """Non-blocking USB CDC stdio: poll() for readiness, read byte-wise into a buffer."""

    def __init__(self):
        import select

        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._buf = bytearray(64)
        self._mv = memoryview(self._buf)

    def read(self):
        n = 0
        while n < 64 and self._poll.poll(0):
            self._in.readinto(self._mv[n : n + 1])
            n += 1
        return self._mv[:n] if n else None

    def write(self, buf):
        self._out.write(buf)


def build_imus(cfg, bus_factory):
    bus = bus_factory()
    kw = {
        "accel_range_g": cfg["accel_range_g"],
        "gyro_range_dps": cfg["gyro_range_dps"],
        "odr_hz": cfg["rate_hz"],
        "reinit": bus_factory,
    }
    imu = detect(bus, only=cfg["imu"], **kw)
    pelvis = None
    if cfg["pelvis_imu"]:
        pelvis = detect(bus, skip=(imu.address,), **kw)
    return imu, pelvis


def main(io=None, clock=time, fs=None):
    fs = fs or DirFS("")
    if fs.read("norun") is not None:
        return None
    cfg, problem = config.load(fs)
    io = io or UsbIO()

    def bus_factory():
        return machine.I2C(
            cfg["i2c_id"],
            scl=machine.Pin(cfg["i2c_scl_pin"]),
            sda=machine.Pin(cfg["i2c_sda_pin"]),
            freq=cfg["i2c_freq_hz"],
        )

    try:
        imu, pelvis = build_imus(cfg, bus_factory)
    except ImuError as exc:
        # No watchdog yet: stay in the REPL so the wiring or config can be fixed.
        io.write(b"\x00")
        io.write(P.Encoder().log(None, clock.ticks_us(), str(exc), 40))
        return None
    wdt = machine.WDT(timeout=cfg["wdt_timeout_ms"])
    try:
        import gc

        mem_free = gc.mem_free
    except (ImportError, AttributeError):
        mem_free = None
    dev_id = "".join("%02x" % b for b in machine.unique_id())
    app = App(
        imu,
        io,
        clock,
        fs,
        wdt=wdt,
        pelvis_imu=pelvis,
        cfg=cfg,
        device_id=dev_id,
        reset=machine.reset,
        mem_free=mem_free,
    )
    if problem:
        app.log(problem, 30)
    micropython.kbd_intr(-1)
    try:
        app.run()
    finally:
        micropython.kbd_intr(3)
    try:
        keeper = machine.Timer(-1)
        keeper.init(period=cfg["wdt_timeout_ms"] // 2, callback=lambda t: wdt.feed())
    except (AttributeError, ValueError, TypeError):
        pass  # port without soft timers: the WDT resets the board out of the REPL
    return app


if __name__ == "__main__":
    main()
