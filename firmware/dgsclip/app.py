"""The clip's main loop: IMU sampling decoupled from output, fusion, protocol I/O, commands.

Everything is injected (main.py builds the real ones, the virtual clip and the tests build
simulated ones):
  imu, pelvis_imu   drivers (dgsclip.drivers): read_into(gyro, accel) -> bool, and where
                    the chip has one the FIFO (fifo_start/fifo_level/fifo_read)
  io                read() -> bytes or None (non-blocking), write(buf); optional
                    write_nb(buf) -> bytes taken, never waiting on the host (dgsclip.usbio)
  clock             ticks_us(), ticks_diff(a, b), ticks_add(a, d), sleep_us(n): `time` on
                    the clip; periods always via ticks_diff (30-bit wrap)
  fs                dgsclip.storage.DirFS (atomic writes, recovering reads)
  wdt               feed() (machine.WDT) or None: fed only while samples flow
  reset             callable that reboots the board (machine.reset) or None
  reset_cause       protocol RESET_* code of this boot (main.py maps machine.reset_cause())
  timer             object with init(period_ms, callback) (machine.Timer + schedule) or
                    None: then step() runs the sampler itself (polling)

Data path: the sampler (`service`, on the timer or from step) drains the IMU FIFO, fuses
every sample at its own timestamp and dt (the IMU's output data rate), and pushes the
result into a preallocated ring (dgsclip.ring). The output side frames the oldest entry
whenever the port takes it without waiting. A host that stops reading therefore costs no
fusion updates; the ring holds `ring_samples` (30 s at 100 Hz by default), beyond that
samples are dropped whole and counted (STATUS ring_dropped; the sequence numbers skip, so
the host counts them as lost frames).
The loop never raises on I2C errors: they are counted, flagged, the driver recovers (bus
clear + re-init), reads back off while the bus is down, and when no sample arrived for
half the watchdog period the firmware resets the board itself (counted, with the reason).
"""

from array import array

from dgsclip import VERSION, config, persist
from dgsclip import protocol as P
from dgsclip.compat import json
from dgsclip.drivers.base import ImuError
from dgsclip.pipeline import (
    MODE_FUNCTIONAL,
    MODE_NEUTRAL,
    MODE_RUN,
    Pipeline,
)
from dgsclip.ring import make_ring
from dgsclip.sampler import Sampler

SELF_TEST_SAMPLES = 20
TIMER_PERIOD_MS = 20  # FIFO drain period (the MPU FIFO holds 850 ms at 100 Hz)
IDLE_MAX_US = 20000  # longest idle sleep of the main loop: command latency bound
RING_SPARE = 8192  # heap left in one piece after the ring (dgsclip.ring.make_ring)


class App(Sampler):
    def __init__(
        self,
        imu,
        io,
        clock,
        fs,
        wdt=None,
        pelvis_imu=None,
        cfg=None,
        device_id="virtual",
        reset=None,
        mem_free=None,
        reset_cause=P.RESET_UNKNOWN,
        timer=None,
    ):
        self.imu = imu
        self.pelvis_imu = pelvis_imu
        self.io = io
        self.clock = clock
        self.fs = fs
        self.wdt = wdt
        self.reset = reset
        self.mem_free = mem_free
        self.device_id = device_id
        self.reset_cause = reset_cause
        problem = None
        if cfg is None:
            cfg, problem = config.load(fs)
        self.cfg = cfg
        self.boot = persist.boot_record(fs, reset_cause)
        self.boot_id = self.boot["boots"] & 0xFFFF
        self.enc = P.Encoder()
        self.reader = P.CommandReader()
        self.pipe = Pipeline(cfg["side"], pelvis_imu is not None, config.fusion_settings(cfg))
        cal_problem = persist.load_calibration(fs, self.pipe.cal, config.CALIBRATION_FILE)
        self.ring = make_ring(cfg["ring_samples"], pelvis_imu is not None, RING_SPARE)
        # Samples in the fixed-point units of dgsclip.fxcore (2**-15 deg/s, 2**-15 g): the
        # drivers decode into them and the whole sampling path stays in ints (no heap).
        for d in (imu, pelvis_imu):
            if d is not None:
                d.raw_units()
        self.gyro = array("i", (0, 0, 0))
        self.accel = array("i", (0, 32768, 0))
        self.pgyro = array("i", (0, 0, 0))
        self.paccel = array("i", (0, 32768, 0))
        self.q14 = array("h", (16384, 0, 0, 0))
        self.pq14 = array("h", (16384, 0, 0, 0))
        self.streaming = bool(cfg["autostart"])
        self.running = True
        self.samples = 0  # samples sent
        self.fused = 0  # samples fused (sent or not)
        self.overruns = 0
        self.tx_dropped = 0
        self.pending = None  # (cmd_id, cmd) of a calibration waiting for its samples
        self._last_reply = None  # bytes of the previous reply, re-sent on a host retry
        self._last_id = -1
        self._flags_extra = 0
        self._hold = False  # a command is using the IMU: the sampler skips
        self._locked = False  # the main loop holds the heap locked: the sampler skips
        self._lock_ok = True  # sampling/framing run with the heap locked (compat)
        self.alloc_faults = 0  # allocations met there (a bug): locking then switched off
        self._frame_faults = 0  # framing redone unlocked (first frame of each length)
        self._drain_lock = None  # FIFO drains with the heap locked: None = not probed yet
        self._init_hot()  # the one-call-per-sample kernels (sampler, output)
        self._init_batch()
        self._write_nb = getattr(io, "write_nb", None)
        self._txbuf = bytearray(P.MAX_ENCODED)
        self._tx = None  # the rest of a frame the port took only partly, and progress
        self._tx_off = 0
        self._tx_n = 0
        self._skipped = 0  # samples dropped by the ring since the last one sent
        self._set_period(cfg["rate_hz"])
        t = clock.ticks_us()
        self.t_boot = t
        self.next_due = t
        self.t_last = t
        self.t_status = t
        self.t_sample = t  # last time a sample arrived (watchdog, dead-bus reset)
        self._retry_at = t
        self._backoff = 0
        self._have_last = False
        self._idle = True
        self.fifo = False
        self.fifo_rearms = 0  # FIFO found silent and re-armed
        self._rearms = 0
        self._fifo_note = None  # said by the main loop (the sampler never writes)
        if cfg["fifo"]:
            self._start_fifo()
        io.write(b"\x00")  # delimiter: whatever was printed before cannot merge with a frame
        self.hello()
        if problem:
            self.log(problem, 30)
        if cal_problem:
            self.log(cal_problem, 30)
        if self.ring.capacity < cfg["ring_samples"]:
            self.log(
                "ring_samples %d does not fit in RAM; using %d"
                % (cfg["ring_samples"], self.ring.capacity),
                30,
            )
        self.timer = timer
        self._tick_us = 0  # timer period (µs): the idle main loop sleeps until after a tick
        self._t_tick = t
        if timer is not None:
            ms = TIMER_PERIOD_MS if self.fifo else max(1, self.period_us // 1000)
            self._tick_us = ms * 1000
            timer.init(period=ms, callback=self._on_timer)

    def log(self, text, level=20):
        self._send_ctl(self.enc.log, None, self.clock.ticks_us(), text, level)

    def _cal_state(self):
        c = self.pipe.cal
        if c.calibrated or (c.restore_pending and c.has_mount):
            # restored from flash; the heading anchors on the first settled sample
            return P.CAL_FULL
        return P.CAL_NEUTRAL if c.has_neutral else P.CAL_NONE

    def _state(self):
        if self.pipe.mode != MODE_RUN:
            return P.STATE_CALIBRATING
        return P.STATE_STREAMING if self.streaming else P.STATE_IDLE

    def _imu_models(self):
        names = [self.imu.name]
        if self.pelvis_imu is not None:
            names.append(self.pelvis_imu.name)
        return ",".join(n.lower() for n in names)

    def _hello_args(self):
        # HELLO payload fields, shared by the HELLO frame and the ACK to CMD_INFO
        return (
            VERSION,
            self.device_id,
            self._imu_models(),
            self.rate_hz,
            self._cal_state(),
            2 if self.pelvis_imu is not None else 1,
            self._state(),
            self.boot_id,
            self.reset_cause,
        )

    def hello(self):
        self._send_ctl(self.enc.hello, None, self.clock.ticks_us(), *self._hello_args())

    def i2c_errors(self):
        n = self.imu.i2c_errors
        if self.pelvis_imu is not None:
            n += self.pelvis_imu.i2c_errors
        return n

    def fifo_overflows(self):
        n = self.imu.fifo_overflows
        if self.pelvis_imu is not None:
            n += self.pelvis_imu.fifo_overflows
        return n

    def _status_args(self, now):
        r = self.ring
        return (
            self._state(),
            self._cal_state(),
            self.rate_hz,
            self.samples,
            self.i2c_errors(),
            self.overruns,
            self.reader.errors,
            self.mem_free() if self.mem_free else 0,
            self.clock.ticks_diff(now, self.t_boot) // 1000000,
            r.dropped,
            r.peak,
            r.capacity,
            self.fifo_overflows(),
            getattr(self.io, "stalls", 0),
            self.tx_dropped,
            self.boot_id,
            self.reset_cause,
            self.boot["wdt_resets"] + self.boot["app_resets"],
        )

    # -- set-up ----------------------------------------------------------------------
    def _set_period(self, rate_hz):
        self.rate_hz = rate_hz
        self.period_us = 1000000 // rate_hz

    def _save_calibration(self):
        self.fs.write(config.CALIBRATION_FILE, json.dumps(self.pipe.cal.to_dict()))

    # -- loop ------------------------------------------------------------------------
    def run(self):
        """Run until exit_repl (returns) or reboot."""
        while self.running:
            self.step()

    def _on_timer(self, _t=None):
        self._t_tick = self.clock.ticks_us()
        self.service()

    def step(self):
        clock = self.clock
        data = self.io.read()
        if data:
            # The sampler (a scheduled timer callback) may run between any two bytecodes of
            # the main loop: hold it while a command touches the pipeline, IMU or config.
            self._hold = True
            try:
                for cmd in self.reader.feed(data):
                    self._command(cmd)
                    if not self.running:
                        return
            finally:
                self._hold = False
        if self.timer is None:
            self.service()
        if self._fifo_note is not None:
            self.log(self._fifo_note, 30)
            self._fifo_note = None
        if self.pipe.cal_done is not None:
            # Here, not in the sampler: replies and the flash write belong to the main loop
            # (a frame written from the timer could land inside one the loop is writing).
            self._calibration_finished()
        # >>> pelvis relative-bias hook (dgsclip.relbias.RelBias): its float work, at the
        # snapshot rate (20 Hz), here outside the heap lock; the sampler is held meanwhile.
        rb = self.pipe.relbias
        if rb is not None and rb.snap[15]:
            self._hold = True
            try:
                self.pipe.slow()
            finally:
                self._hold = False
        # <<< pelvis relative-bias hook
        now = clock.ticks_us()
        if self.wdt is not None and clock.ticks_diff(now, self.t_sample) < self._feed_window():
            self.wdt.feed()  # only while samples flow: a dead bus ends in a watchdog reset
        self._check_dead(now)
        if not self._output(now):
            # Nothing went out (idle, or the host is not reading): sleep until just after
            # the sampler's next timer tick (or the next poll), not a fixed 1 ms: each
            # idle pass of this loop costs ~25 k instructions on a Cortex-M0
            # (benchmarks/results/m0budget.md). Commands wait at most one tick (20 ms).
            clock.sleep_us(self._idle_us(clock, now))

    def _idle_us(self, clock, now):
        if self.timer is None:
            if self.fifo:
                wait = clock.ticks_diff(clock.ticks_add(self.t_sample, TIMER_PERIOD_MS * 1000), now)
            else:
                wait = clock.ticks_diff(self.next_due, now)
        else:
            # 500 µs after the next tick: the callback has filled the ring by then.
            wait = clock.ticks_diff(clock.ticks_add(self._t_tick, self._tick_us + 500), now)
        if wait < 1000:
            return 1000
        return wait if wait < IDLE_MAX_US else IDLE_MAX_US

    def _feed_window(self):
        return self.cfg["wdt_timeout_ms"] * 500  # half the timeout, in µs

    def _check_dead(self, now):
        """No sample for half the watchdog period: reset on purpose (counted, reason kept)
        rather than wait for the watchdog, so the next boot can say why."""
        if self.reset is None or self.clock.ticks_diff(now, self.t_sample) < self._feed_window():
            return
        why = "no IMU sample for %d ms (I2C errors %d)" % (
            self.clock.ticks_diff(now, self.t_sample) // 1000,
            self.i2c_errors(),
        )
        self.log(why, 40)
        persist.note_app_reset(self.fs, self.boot, why)
        self.running = False
        self.reset()

    def _calibration_finished(self):
        kind, err = self.pipe.cal_done
        self.pipe.cal_done = None
        pending = self.pending
        self.pending = None
        if err is None:
            try:
                self._save_calibration()
            except OSError as exc:
                err = "calibration computed but not saved: %s" % exc
        if pending is None:
            return
        cmd_id, cmd = pending
        if err is None:
            c = self.pipe.cal
            res = {
                "step": "neutral" if kind == MODE_NEUTRAL else "functional",
                "calibrated": c.calibrated,
            }
            if kind == MODE_FUNCTIONAL:
                res["axis_angle_deg"] = round(c.axis_angle_deg, 2)
                res["planarity"] = round(c.planarity, 4)
            self._reply(cmd_id, cmd, P.ERR_OK, json.dumps(res).encode())
        else:
            self.log(err, 40)
            self._reply(cmd_id, cmd, P.ERR_FAILED, err.encode())

    # -- commands --------------------------------------------------------------------
    def _reply(self, cmd_id, cmd, code, payload=None):
        frame = bytes(self.enc.ack(None, self.clock.ticks_us(), cmd_id, cmd, code, payload))
        self._remember(cmd_id, frame)

    def _remember(self, cmd_id, frame):
        self._last_id = cmd_id
        self._last_reply = frame
        if self._can_send():
            self._send(frame)
        else:
            self.tx_dropped += 1  # the host's retry of this id gets it again

    def _command(self, item):
        cmd_id, cmd, args, repeat = item
        if repeat and cmd_id == self._last_id and self._last_reply is not None:
            self._remember(cmd_id, self._last_reply)  # host retry: same answer, not a rerun
            return
        if repeat and self.pending is not None and self.pending[0] == cmd_id:
            return  # retry of a calibration still running: it answers when done
        now = self.clock.ticks_us()
        try:
            self._dispatch(cmd_id, cmd, args, now)
        except config.ConfigError as exc:
            self._reply(cmd_id, cmd, P.ERR_BAD_ARGUMENT, str(exc).encode()[:200])
        except (ValueError, IndexError) as exc:
            self._reply(cmd_id, cmd, P.ERR_BAD_ARGUMENT, ("bad arguments: %s" % exc).encode()[:200])

    def _u16(self, args, default):
        if len(args) < 2:
            return default
        v = args[0] | (args[1] << 8)
        return v or default

    def _dispatch(self, cmd_id, cmd, args, now):
        enc = self.enc
        if cmd == P.CMD_INFO:
            self._remember(cmd_id, bytes(enc.ack_info(None, now, cmd_id, *self._hello_args())))
        elif cmd == P.CMD_GET_STATUS:
            self._remember(
                cmd_id, bytes(enc.ack_status(None, now, cmd_id, *self._status_args(now)))
            )
        elif cmd == P.CMD_START:
            self.streaming = True
            self._reply(cmd_id, cmd, P.ERR_OK)
            self.hello()
        elif cmd == P.CMD_STOP:
            self.streaming = False
            self.ring.clear()
            self._reply(cmd_id, cmd, P.ERR_OK)
        elif cmd == P.CMD_SET_RATE:
            if len(args) < 2:
                raise ValueError("set_rate needs u16 rate_hz")
            self.cfg = config.validate({"rate_hz": args[0] | (args[1] << 8)}, self.cfg)
            self._set_rate(self.cfg["rate_hz"])
            self._reply(cmd_id, cmd, P.ERR_OK)
        elif cmd == P.CMD_CALIBRATE_NEUTRAL or cmd == P.CMD_CALIBRATE_FUNCTIONAL:
            if self.pending is not None:
                self._reply(cmd_id, cmd, P.ERR_BUSY, b"a calibration is already running")
                return
            neutral = cmd == P.CMD_CALIBRATE_NEUTRAL
            if not neutral and not self.pipe.calibrator.has_up:
                self._reply(cmd_id, cmd, P.ERR_BAD_STATE, b"run calibrate_neutral first")
                return
            ms = self._u16(args, self.cfg["neutral_ms"] if neutral else self.cfg["functional_ms"])
            n = max(1, ms * self.rate_hz // 1000)
            self.pipe.begin_calibration(MODE_NEUTRAL if neutral else MODE_FUNCTIONAL, n)
            self.pending = (cmd_id, cmd)
        elif cmd == P.CMD_GET_CONFIG:
            # Paged (arg: optional u8 page) so each reply fits one frame's 234-byte payload.
            page = args[0] if len(args) else 0
            text = config.page(self.cfg, page)
            if text is None:
                raise ValueError("no config page %d" % page)
            self._reply(cmd_id, cmd, P.ERR_OK, text.encode())
        elif cmd == P.CMD_SET_CONFIG:
            try:
                update = json.loads(bytes(args).decode())
            except ValueError:
                raise config.ConfigError("set_config needs a JSON object")
            new = config.validate(update, self.cfg)
            self.fs.write(config.CONFIG_FILE, config.dumps(new))
            self._apply(new)
            self._reply(cmd_id, cmd, P.ERR_OK)
        elif cmd == P.CMD_SELF_TEST:
            report = self.self_test()  # the sampler is held while commands run (step)
            self._t_fifo = None
            code = P.ERR_OK if report["ok"] else P.ERR_FAILED
            self._reply(cmd_id, cmd, code, json.dumps(report).encode())
        elif cmd == P.CMD_REBOOT:
            self._reply(cmd_id, cmd, P.ERR_OK)
            self.running = False
            if self.reset is not None:
                self.reset()
        elif cmd == P.CMD_EXIT_REPL:
            if cmd_id != 0:  # the raw escape (id 0) gets no reply: nobody framed it
                self._reply(cmd_id, cmd, P.ERR_OK)
            self.streaming = False
            self.running = False
        else:
            self._reply(cmd_id, cmd, P.ERR_UNKNOWN_COMMAND)

    def _set_rate(self, rate_hz):
        """New sampling rate: the IMU's output data rate too, and the FIFO restarted."""
        self._set_period(rate_hz)
        try:
            for imu in (self.imu, self.pelvis_imu):
                if imu is not None:
                    imu.set_odr(rate_hz)
            if self.fifo:
                self._start_fifo()
        except (OSError, ImuError) as exc:
            self.log("set_rate: IMU reconfiguration failed: %s" % exc, 40)

    def _apply(self, cfg):
        rate_changed = cfg["rate_hz"] != self.rate_hz
        self.cfg = cfg
        if rate_changed:
            self._set_rate(cfg["rate_hz"])
        self.pipe.hip.set_side(cfg["side"])
        for f in (self.pipe.thigh, self.pipe.pelvis):
            if f is not None:
                f.set(**config.fusion_settings(cfg))

    def self_test(self):
        """Read a burst: the IMU answers, |a| is ~1 g, and the gyro is quiet when still."""
        ok_reads = 0
        amax = 0.0
        amin = 99.0
        for _ in range(SELF_TEST_SAMPLES):
            if self.imu.read_into(self.gyro, self.accel):
                ok_reads += 1
                a = self.accel
                n = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]) ** 0.5 / 32768.0  # g
                amax = max(amax, n)
                amin = min(amin, n)
            self.clock.sleep_us(self.period_us)
        ok = ok_reads == SELF_TEST_SAMPLES and 0.8 < amin and amax < 1.2
        return {
            "ok": ok,
            "imu": self.imu.name,
            "reads_ok": ok_reads,
            "accel_norm_g": [round(amin, 3), round(amax, 3)],
            "i2c_errors": self.i2c_errors(),
            "recoveries": self.imu.recoveries,
            "pelvis": self.pelvis_imu.name if self.pelvis_imu is not None else None,
        }
