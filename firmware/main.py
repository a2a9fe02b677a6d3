"""Clip entry point: build the real hardware and hand it to dgsclip.app.App.

Hardware: machine.I2C (pins/frequency/timeout from dgsclip.json, created after a 9-clock bus
clear), IMU(s) auto-detected by WHO_AM_I, machine.WDT, machine.Timer (sampling via
micropython.schedule), machine.reset_cause(), USB CDC stdio without waiting on the host
(dgsclip.usbio) as the transport, `time` as the clock. Binary on the USB REPL is
made safe with micropython.kbd_intr(-1) while the app runs; `exit_repl` (or the raw escape
mpremote sends, see docs/protocol.md) returns here and the REPL comes back. The watchdog
cannot be stopped once started, so in the REPL a soft timer keeps feeding it.

Stay-in-REPL escape hatch: if the file `norun` exists on the filesystem, main.py does
nothing (`mpremote fs touch :norun` and reset to recover a clip whose firmware misbehaves).
"""

import time

import machine
import micropython
from dgsclip import config
from dgsclip import protocol as P
from dgsclip.app import App
from dgsclip.busclear import bus_clear
from dgsclip.drivers import ImuError, detect
from dgsclip.storage import DirFS
from dgsclip.usbio import usb_stdio

# machine.reset_cause() constants -> protocol RESET_* codes (names differ per port).
_CAUSES = (
    ("PWRON_RESET", P.RESET_POWER_ON),
    ("HARD_RESET", P.RESET_HARD),
    ("WDT_RESET", P.RESET_WATCHDOG),
    ("SOFT_RESET", P.RESET_SOFT),
    ("DEEPSLEEP_RESET", P.RESET_DEEPSLEEP),
)


def reset_cause(mach=machine):
    try:
        c = mach.reset_cause()
    except (AttributeError, OSError):
        return P.RESET_UNKNOWN
    for name, code in _CAUSES:
        if getattr(mach, name, None) == c:
            return code
    return P.RESET_UNKNOWN


class SchedTimer:
    """machine.Timer whose callback runs via micropython.schedule: the sampler does I2C
    and allocates a little, which a hard IRQ may not. Scheduled callbacks also run while a
    USB CDC write waits (MICROPY_EVENT_POLL_HOOK), so sampling continues through it."""

    def __init__(self, mach=machine, mp=micropython):
        try:
            self._t = mach.Timer(-1)  # rp2 and most ports: a virtual (soft) timer
        except ValueError:
            self._t = mach.Timer(0)  # esp32: hardware timers only
        self._mp = mp
        self._cb = None
        self._ref = self._run  # bound once: no allocation per tick

    def _run(self, _arg):
        self._cb(None)

    def _irq(self, _t):
        try:
            self._mp.schedule(self._ref, 0)
        except RuntimeError:
            pass  # schedule queue full: the FIFO keeps the samples for the next tick

    def init(self, period, callback):
        self._cb = callback
        self._t.init(period=period, mode=machine.Timer.PERIODIC, callback=self._irq)

    def deinit(self):
        self._t.deinit()


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


def make_bus_factory(cfg, mach=machine, sleep_us=None):
    """machine.I2C with a per-transfer timeout, after a 9-clock bus clear (the first call
    at boot and every re-init after an I2C error). `clears` counts the clears that found
    SDA stuck."""

    sleep_us = sleep_us or time.sleep_us

    def bus_factory():
        try:
            n = bus_clear(mach.Pin, cfg["i2c_scl_pin"], cfg["i2c_sda_pin"], sleep_us)
        except (AttributeError, TypeError, ValueError, OSError):
            n = 0  # port without open-drain pins: skip the clear
        if n:
            bus_factory.clears += 1
        return mach.I2C(
            cfg["i2c_id"],
            scl=mach.Pin(cfg["i2c_scl_pin"]),
            sda=mach.Pin(cfg["i2c_sda_pin"]),
            freq=cfg["i2c_freq_hz"],
            timeout=cfg["i2c_timeout_us"],
        )

    bus_factory.clears = 0
    return bus_factory


def main(io=None, clock=time, fs=None, timer=None):
    fs = fs or DirFS("")
    if fs.read("norun") is not None:
        return None
    cfg, problem = config.load(fs)
    io = io or usb_stdio()
    bus_factory = make_bus_factory(cfg)

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
        reset_cause=reset_cause(),
        timer=timer if timer is not None else _sched_timer(),
    )
    if problem:
        app.log(problem, 30)
    micropython.kbd_intr(-1)
    try:
        app.run()
    finally:
        micropython.kbd_intr(3)
        if app.timer is not None and hasattr(app.timer, "deinit"):
            app.timer.deinit()
    try:
        keeper = machine.Timer(-1)
        keeper.init(period=cfg["wdt_timeout_ms"] // 2, callback=lambda t: wdt.feed())
    except (AttributeError, ValueError, TypeError):
        pass  # port without soft timers: the WDT resets the board out of the REPL
    return app


def _sched_timer():
    try:
        return SchedTimer()
    except (AttributeError, ValueError, TypeError):
        return None  # port without soft timers: the main loop polls the IMU itself


if __name__ == "__main__":
    main()
