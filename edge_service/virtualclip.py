"""Virtual clip: the firmware's `dgsclip` app on CPython with a simulated IMU.

The real drivers talk to a fake I2C register map (edge_service.sim.fake_i2c) fed by the
simulated IMU (edge_service.sim.imu); the real protocol goes out over a new pty that the
host opens with pyserial like a USB CDC port. Before the pty opens, the clip runs the
clinician's calibration manoeuvre in virtual time (neutral + functional swings, through
its own `calibrate_*` commands), so the stream is calibrated from the first sample; then the
scripted motion plays in real time, looping.

`virtual_samples()` runs the same app offline (virtual time, no pty) and decodes its frames
with the host decoder: what `dgs-edge simulate` writes as imu.jsonl.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dgsclip import protocol as P
from dgsclip.app import App
from dgsclip.compat import TICKS_PERIOD, ticks_add, ticks_diff
from dgsclip.config import validate
from dgsclip.drivers import detect
from dgsclip.storage import DirFS

from edge_service.clip.decoder import FrameDecoder
from edge_service.clip.messages import Ack, Sample
from edge_service.clip.timeline import TimedSample, sample_row
from edge_service.errors import DeviceError
from edge_service.sim.fake_i2c import FakeI2C, FakeLSM6DS, FakeMPU6050
from edge_service.sim.imu import (
    CAL_FUNCTIONAL_S,
    CAL_NEUTRAL_S,
    ImuSamples,
    simulate_imu,
    with_calibration,
)
from edge_service.sim.motion import HipMotion, manoeuvre

log = logging.getLogger(__name__)

# Start the device clock 5 s before the 30-bit wrap so every session crosses it.
TICKS_START_US = TICKS_PERIOD - 5_000_000


class SimClock:
    """Device ticks (µs, 30-bit wrap). Virtual time until `go_realtime()`, then wall time."""

    def __init__(self, start_us: int = TICKS_START_US) -> None:
        self._virtual_us = 0  # unwrapped µs since start
        self._anchor: float | None = None
        self._start = start_us
        self.ticks_diff = ticks_diff
        self.ticks_add = ticks_add
        self._timers: list[SimTimer] = []

    def add_timer(self, t: SimTimer) -> None:
        self._timers.append(t)

    def elapsed_us(self) -> int:
        if self._anchor is None:
            return self._virtual_us
        return self._virtual_us + int((time.monotonic() - self._anchor) * 1e6)

    def ticks_us(self) -> int:
        return (self._start + self.elapsed_us()) % TICKS_PERIOD

    def sleep_us(self, n: int) -> None:
        if self._anchor is None:
            target = self._virtual_us + max(int(n), 1)
            # Periodic timers fire at their due times inside the sleep, like machine.Timer
            # callbacks scheduled while the clip waits (also inside a waiting USB write).
            while self._timers:
                t = min(self._timers, key=lambda x: x.next_us)
                if t.next_us > target:
                    break
                self._virtual_us = max(self._virtual_us, t.next_us)
                t.next_us += t.period_us
                t.callback(t)
            self._virtual_us = target
        else:
            time.sleep(max(n, 0) / 1e6)

    def go_realtime(self) -> None:
        self._anchor = time.monotonic()


class SimTimer:
    """machine.Timer in virtual time: init(period=ms, callback=fn) on a SimClock."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.period_us = 0
        self.next_us = 0
        self.callback: Any = None

    def init(self, period: int, callback: Any, mode: int = 1) -> None:
        self.period_us = period * 1000
        self.next_us = self.clock.elapsed_us() + self.period_us
        self.callback = callback
        self.clock.add_timer(self)

    def deinit(self) -> None:
        if self in self.clock._timers:
            self.clock._timers.remove(self)


class SimSource:
    """Sample `k = elapsed * rate` of the simulation; the motion part loops after `loop_from`."""

    def __init__(
        self, s: ImuSamples, rate_hz: float, clock: SimClock, loop_from: int, pelvis: bool = False
    ) -> None:
        self.s = s
        self.rate = rate_hz
        self.clock = clock
        self.loop_from = loop_from
        self.pelvis = pelvis

    def index(self) -> int:
        k = int(self.clock.elapsed_us() * self.rate / 1e6)
        n = len(self.s.t_s)
        if k >= n:
            k = self.loop_from + (k - self.loop_from) % (n - self.loop_from)
        return k

    def index_at(self, t_us: float) -> int:
        k = int(t_us * self.rate / 1e6)
        n = len(self.s.t_s)
        if k >= n:
            k = self.loop_from + (k - self.loop_from) % (n - self.loop_from)
        return k

    def thigh_at(self, t_us: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The sample the IMU's FIFO takes at device time t_us (fake_i2c `source_at`)."""
        k = self.index_at(t_us)
        return tuple(self.s.gyro_dps[k]), tuple(self.s.accel_g[k])

    def pelvis_at(self, t_us: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        k = self.index_at(t_us)
        assert self.s.pelvis_gyro_dps is not None and self.s.pelvis_accel_g is not None
        return tuple(self.s.pelvis_gyro_dps[k]), tuple(self.s.pelvis_accel_g[k])

    def thigh(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        k = self.index()
        return tuple(self.s.gyro_dps[k]), tuple(self.s.accel_g[k])

    def pelvis_sample(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        k = self.index()
        assert self.s.pelvis_gyro_dps is not None and self.s.pelvis_accel_g is not None
        return tuple(self.s.pelvis_gyro_dps[k]), tuple(self.s.pelvis_accel_g[k])


class _AtSource:
    """source() for register reads, at_us(t) for the FIFO's timed samples."""

    def __init__(self, now: Any, at: Any) -> None:
        self._now = now
        self.at_us = at

    def __call__(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self._now()  # type: ignore[no-any-return]


class ScriptedIO:
    """In-memory transport: commands delivered at scheduled device times, output collected."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.script: list[tuple[int, bytes]] = []  # (elapsed_us, bytes), sorted
        self.out = bytearray()

    def at(self, t_s: float, data: bytes) -> None:
        self.script.append((int(t_s * 1e6), data))
        self.script.sort(key=lambda x: x[0])

    def read(self) -> bytes | None:
        if self.script and self.script[0][0] <= self.clock.elapsed_us():
            return self.script.pop(0)[1]
        return None

    def write(self, buf: Any) -> None:
        self.out += buf


class PtyIO:
    """The clip end of a pty (non-blocking master fd); the host opens the slave path."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        import tty

        tty.setraw(self.slave)  # no echo, no CR/LF translation: binary-safe like USB CDC
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        self.closed = False

    def read(self) -> bytes | None:
        try:
            return os.read(self.master, 512)
        except (BlockingIOError, OSError):
            return None

    def write_nb(self, buf: Any) -> int:
        """Bytes the pty took now (the app keeps the rest): never waits on the host."""
        if self.closed:
            return len(buf)
        try:
            return os.write(self.master, bytes(buf))
        except BlockingIOError:
            return 0
        except OSError:
            return len(buf)  # host gone: the bytes are lost like on an unplugged cable

    def write(self, buf: Any) -> None:
        data = bytes(buf)
        while data and not self.closed:
            try:
                n = os.write(self.master, data)
                data = data[n:]
            except BlockingIOError:
                # Host not reading: drop like a full USB CDC buffer would, never block the loop.
                return
            except OSError:
                return

    def close(self) -> None:
        self.closed = True
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _build(
    motion: HipMotion, side: str, rate_hz: int, seed: int, pelvis: bool, fs_dir: str, imu: str
) -> tuple[App, SimClock, ScriptedIO, float]:
    full, offset = with_calibration(motion)
    s = simulate_imu(full, side=side, rate_hz=rate_hz, seed=seed, pelvis=pelvis)
    clock = SimClock()
    src = SimSource(s, rate_hz, clock, loop_from=int(offset * rate_hz), pelvis=pelvis)
    thigh_src = _AtSource(src.thigh, src.thigh_at)
    thigh_dev = (
        FakeLSM6DS(0x6A, source=thigh_src, clock=clock)
        if imu == "lsm6ds"
        else FakeMPU6050(0x68, source=thigh_src, clock=clock)
    )
    devices: list[Any] = [thigh_dev]
    if pelvis:
        devices.append(
            FakeMPU6050(
                0x69,
                who_am_i=0x70,
                source=_AtSource(src.pelvis_sample, src.pelvis_at),
                clock=clock,
            )
        )
    bus = FakeI2C(devices)
    cfg = validate({"side": side, "rate_hz": rate_hz})
    drv = detect(bus, only=imu, odr_hz=rate_hz)
    pdrv = detect(bus, skip=(drv.address,), odr_hz=rate_hz) if pelvis else None
    io = ScriptedIO(clock)
    # The clinician's calibration, through the clip's own commands.
    io.at(
        CAL_NEUTRAL_S[0],
        P.encode_command(
            1,
            P.CMD_CALIBRATE_NEUTRAL,
            struct.pack("<H", int((CAL_NEUTRAL_S[1] - CAL_NEUTRAL_S[0]) * 1000)),
        ),
    )
    io.at(
        CAL_FUNCTIONAL_S[0],
        P.encode_command(
            2,
            P.CMD_CALIBRATE_FUNCTIONAL,
            struct.pack("<H", int((CAL_FUNCTIONAL_S[1] - CAL_FUNCTIONAL_S[0]) * 1000)),
        ),
    )
    app = App(drv, io, clock, DirFS(fs_dir), pelvis_imu=pdrv, cfg=cfg, device_id=f"virtual-{seed}")
    return app, clock, io, offset


def _check_calibration(io: ScriptedIO) -> None:
    for msg in FrameDecoder(track_sequence=False).feed(bytes(io.out)):
        if (
            isinstance(msg, Ack)
            and msg.cmd in (P.CMD_CALIBRATE_NEUTRAL, P.CMD_CALIBRATE_FUNCTIONAL)
            and not msg.ok
        ):
            raise DeviceError(f"virtual clip calibration failed: {msg.text}")


def virtual_samples(
    motion: HipMotion | None = None,
    side: str = "left",
    t0: float | None = None,
    rate_hz: int = 100,
    seed: int = 0,
    pelvis: bool = False,
) -> list[dict[str, Any]]:
    """imu.jsonl-style dicts of `motion` as the clip would stream it (after calibrating).

    `t` = t0 + seconds since the motion started (device ticks, unwrapped); t_dev = raw
    30-bit device ticks. Deterministic for a seed.
    """
    motion = motion or manoeuvre("fair")
    t0 = time.time() if t0 is None else t0
    with tempfile.TemporaryDirectory(prefix="dgsclip-fs-") as fs_dir:
        app, clock, io, offset = _build(motion, side, rate_hz, seed, pelvis, fs_dir, "mpu6050")
        io.at(offset - 0.5 / rate_hz, P.encode_command(3, P.CMD_START))
        end_us = int((offset + motion.duration_s) * 1e6)
        while clock.elapsed_us() <= end_us:
            app.step()
    _check_calibration(io)
    out: list[dict[str, Any]] = []
    first: int | None = None
    dec = FrameDecoder()
    for msg in dec.feed(bytes(io.out)):
        if not isinstance(msg, Sample):
            continue
        if first is None:
            first = msg.t_us
        rel = ((msg.t_us - first) % TICKS_PERIOD) / 1e6
        # the same imu.jsonl row as the live link writes (contract 2)
        out.append(sample_row(TimedSample(t0 + rel, msg.t_us, msg)))
    return out


@dataclass
class VirtualClip:
    port: str
    app: App
    _io: PtyIO
    _thread: threading.Thread
    _stop: threading.Event = field(default_factory=threading.Event)
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    error: BaseException | None = None
    _reboot: threading.Event = field(default_factory=threading.Event)
    _reboot_cause: int = P.RESET_UNKNOWN

    def reboot(self, reset_cause: int = P.RESET_HARD) -> None:
        """Brown-out: the firmware restarts from scratch (RAM lost) on the same flash, IMU,
        clock and port; like a real clip it comes back idle and announces itself."""
        self._reboot_cause = reset_cause
        self._reboot.set()
        deadline = time.monotonic() + 5.0
        while self._reboot.is_set():
            if time.monotonic() > deadline:
                raise DeviceError("virtual clip did not reboot within 5 s")
            time.sleep(0.01)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self._io.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> VirtualClip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_virtual_clip(
    motion: HipMotion | None = None,
    side: str = "left",
    rate_hz: int = 100,
    seed: int = 0,
    realtime: bool = True,
    pelvis: bool = False,
    imu: str = "mpu6050",
    autostart: bool = False,
) -> VirtualClip:
    """A calibrated virtual clip on a new pty (`.port`); `.stop()` ends it.

    realtime=False runs device time as fast as the CPU allows (for tests that only need
    the stream, not its pacing). The host sends `start` (or autostart=True) for samples.
    """
    motion = motion or manoeuvre("fair")
    tmp = tempfile.TemporaryDirectory(prefix="dgsclip-fs-")
    app, clock, sio, offset = _build(motion, side, rate_hz, seed, pelvis, tmp.name, imu)
    cal_end_us = int(offset * 1e6)
    while clock.elapsed_us() < cal_end_us:
        app.step()
    _check_calibration(sio)
    pio = PtyIO()
    app.io = pio
    if realtime:
        clock.go_realtime()
    app.streaming = autostart
    pio.write(b"\x00")
    app.hello()
    stop = threading.Event()
    clip: VirtualClip

    def loop() -> None:
        app = clip.app
        try:
            while not stop.is_set():
                if clip._reboot.is_set():
                    app = App(
                        app.imu,
                        pio,
                        clock,
                        app.fs,
                        pelvis_imu=app.pelvis_imu,
                        cfg=app.cfg,
                        device_id=app.device_id,
                        reset_cause=clip._reboot_cause,
                    )
                    clip.app = app
                    clip._reboot.clear()
                app.step()
                if not app.running:
                    # exit_repl / reboot: a real clip would sit in the REPL or restart;
                    # the virtual one restarts its loop and announces itself again.
                    app.running = True
                    pio.write(b"\x00")
                    app.hello()
                if not realtime:
                    time.sleep(0)  # let the host thread run
        except BaseException as exc:  # surfaced via .error; the thread must not die silently
            log.exception("virtual clip loop failed")
            clip.error = exc

    th = threading.Thread(target=loop, name="virtual-clip", daemon=True)
    clip = VirtualClip(pio.port, app, pio, th, stop, tmp)
    th.start()
    return clip
