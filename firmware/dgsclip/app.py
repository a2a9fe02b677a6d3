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
    FLAG_I2C_ERROR,
    FLAG_OVERRUN,
    FLAG_PELVIS_ERROR,
    MODE_FUNCTIONAL,
    MODE_NEUTRAL,
    MODE_RUN,
    Pipeline,
)
from dgsclip.ring import SampleRing

SELF_TEST_SAMPLES = 20
BACKOFF_MIN_US = 20000  # first pause after the bus failed all retries
BACKOFF_MAX_US = 500000
TIMER_PERIOD_MS = 20  # FIFO drain period (the MPU FIFO holds 850 ms at 100 Hz)


class App:
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
        self.ring = self._make_ring(cfg["ring_samples"], pelvis_imu is not None)
        self.gyro = array("f", (0.0, 0.0, 0.0))
        self.accel = array("f", (0.0, 1.0, 0.0))
        self.pgyro = array("f", (0.0, 0.0, 0.0))
        self.paccel = array("f", (0.0, 1.0, 0.0))
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
        if timer is not None:
            ms = TIMER_PERIOD_MS if self.fifo else max(1, self.period_us // 1000)
            timer.init(period=ms, callback=self._on_timer)

    def _make_ring(self, n, pelvis):
        while True:
            try:
                return SampleRing(n, pelvis)
            except MemoryError:
                if n <= 64:
                    raise
                n //= 2

    def _start_fifo(self):
        pel = self.pelvis_imu
        # Thigh and pelvis samples are paired one to one: only with equal output data rates
        # (e.g. an LSM6DSOX at 104 Hz with an MPU at 100 Hz is polled instead).
        ok = pel is None or pel.odr_hz == self.imu.odr_hz
        ok = ok and self.imu.fifo_start()
        if ok and pel is not None:
            ok = pel.fifo_start()
        if not ok:
            self.imu.fifo_on = False
            if pel is not None:
                pel.fifo_on = False
        self.fifo = bool(ok)
        if self.fifo:
            # Sample period 1e6/ODR µs as whole µs plus a Bresenham remainder (104 Hz:
            # 9615 µs + 40/104), so stamps follow the IMU's clock without drifting.
            odr = int(self.imu.odr_hz)
            self._fodr = odr
            self.fifo_period_us = 1000000 // odr
            self._frem = 1000000 % odr
            self._facc = 0
            self._t_fifo = None  # timestamp of the last sample taken from the FIFO

    # -- output ----------------------------------------------------------------------
    def _tx_idle(self):
        """Push the pending frame on; True when the port has nothing of ours pending."""
        if self._tx is None:
            return True
        w = self._write_nb(memoryview(self._tx)[self._tx_off : self._tx_n])
        self._tx_off += w
        if self._tx_off < self._tx_n:
            return False
        self._tx = None
        return True

    def _send(self, frame):
        """Hand one whole frame to the port. Without write_nb the port never blocks (tests,
        the virtual clip's pty). Returns False when the port still holds a partial frame:
        the caller must not encode another one (the encoder buffer is in use)."""
        if self._write_nb is None:
            self.io.write(frame)
            return True
        n = len(frame)
        w = self._write_nb(frame)
        if w < n:
            # Keep the rest in our own buffer (the encoder's is reused by the next frame);
            # only at the onset of a host stall, so the copy is rare.
            rest = n - w
            self._txbuf[:rest] = frame[w:]
            self._tx = self._txbuf
            self._tx_off = 0
            self._tx_n = rest
        return True

    def _can_send(self):
        return self._write_nb is None or self._tx_idle()

    def _send_ctl(self, build, *args):
        """Status/log/hello: built only if the port is free, else dropped and counted."""
        if not self._can_send():
            self.tx_dropped += 1
            return
        self._send(build(*args))

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
        now = clock.ticks_us()
        if self.wdt is not None and clock.ticks_diff(now, self.t_sample) < self._feed_window():
            self.wdt.feed()  # only while samples flow: a dead bus ends in a watchdog reset
        self._check_dead(now)
        if not self._output(now):
            clock.sleep_us(1000)  # nothing went out (idle, or the host is not reading)

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

    def _output(self, now):
        """Frame and send what the sampler queued, while the port takes it; then STATUS."""
        ring = self.ring
        sent = False
        enc = self.enc
        while ring.count:
            if not self._can_send():
                return sent
            i = ring.tail
            b = i * 7
            v = ring.v
            u = ring.u
            q14 = self.q14
            q14[0] = v[b + 3]
            q14[1] = v[b + 4]
            q14[2] = v[b + 5]
            q14[3] = v[b + 6]
            pq = None
            if ring.p is not None and u[i * 3] & 0x20:
                pq = self.pq14
                p = ring.p
                pq[0] = p[i * 4]
                pq[1] = p[i * 4 + 1]
                pq[2] = p[i * 4 + 2]
                pq[3] = p[i * 4 + 3]
            skipped = ring.s[i]
            if skipped:
                enc.seq = (enc.seq + skipped) & 0xFFFFFFFF  # host counts them as lost
            self._send(
                enc.sample(
                    None,
                    ring.t[i],
                    v[b],
                    v[b + 1],
                    v[b + 2],
                    q14,
                    u[i * 3],
                    u[i * 3 + 1],
                    u[i * 3 + 2],
                    pq,
                )
            )
            ring.pop()
            self.samples += 1
            sent = True
        if (
            self.streaming
            and self.clock.ticks_diff(now, self.t_status) >= self.cfg["status_period_ms"] * 1000
        ):
            self.t_status = now
            self._send_ctl(self.enc.status, None, now, *self._status_args(now))
        return sent

    # -- sampling (timer interrupt via micropython.schedule, or polled from step) -------
    def service(self):
        if self._hold or not self.running:
            return
        clock = self.clock
        now = clock.ticks_us()
        if clock.ticks_diff(now, self._retry_at) < 0:
            return  # the bus failed every retry: back off instead of stalling the loop
        if self.fifo:
            self._service_fifo(now)
        else:
            self._service_poll(now)

    def _bus_failed(self, now):
        b = self._backoff * 2 if self._backoff else BACKOFF_MIN_US
        self._backoff = b if b < BACKOFF_MAX_US else BACKOFF_MAX_US
        self._retry_at = self.clock.ticks_add(now, self._backoff)
        self._flags_extra |= FLAG_I2C_ERROR

    def _service_fifo(self, now):
        imu = self.imu
        errs = self.i2c_errors()
        ovf = self.fifo_overflows()
        n = imu.fifo_level()
        pel = self.pelvis_imu
        if n > 0 and pel is not None:
            pn = pel.fifo_level()
            if pn < 0:
                self._flags_extra |= FLAG_PELVIS_ERROR
                pel = None
            elif pn < n:
                n = pn
        if self.fifo_overflows() != ovf:
            self.overruns += 1
            self._flags_extra |= FLAG_OVERRUN
            self._t_fifo = None
        if n < 0:
            self._bus_failed(now)
            return
        if n == 0:
            self._fifo_silent(now)
            return
        self._rearms = 0
        clock = self.clock
        period = self.fifo_period_us
        # Timestamps from the IMU's sample clock: each sample one ODR period after the
        # previous. The newest sample was taken within the last period, so (re-)anchoring
        # puts it one period before now: never ahead of the truth, at most a period behind,
        # and later reads keep it in [0, 2 periods) unless the clocks drift apart.
        t = self._t_fifo
        last = None if t is None else clock.ticks_add(t, n * period)
        if last is None or not 0 <= clock.ticks_diff(now, last) < 2 * period:
            t = clock.ticks_add(now, -(n + 1) * period)
            self._facc = 0
        dt = 1.0 / self._fodr
        for _ in range(n):
            if not imu.fifo_read(self.gyro, self.accel):
                self._bus_failed(now)
                self._t_fifo = None
                return
            pg = pa = None
            if pel is not None:
                if pel.fifo_read(self.pgyro, self.paccel):
                    pg, pa = self.pgyro, self.paccel
                else:
                    self._flags_extra |= FLAG_PELVIS_ERROR
            t = clock.ticks_add(t, period)
            self._facc += self._frem
            if self._facc >= self._fodr:
                self._facc -= self._fodr
                t = clock.ticks_add(t, 1)
            if self.i2c_errors() != errs:
                self._flags_extra |= FLAG_I2C_ERROR
                errs = self.i2c_errors()
            self._process(t, dt, pg, pa)
        self._t_fifo = t
        self._backoff = 0
        self.t_sample = now

    def _fifo_silent(self, now):
        """The FIFO answers but stays empty for 5 periods: a chip reset to its power-on
        defaults (brown-out of the IMU alone) or a FIFO that never fills. Re-apply the
        configuration (it re-arms the FIFO) up to 3 times, then sample by polling."""
        if self.clock.ticks_diff(now, self.t_sample) < 5 * self.fifo_period_us:
            return
        self.t_sample = now  # one attempt per silent window
        if self._rearms < 3:
            self._rearms += 1
            self.fifo_rearms += 1
            try:
                self.imu.configure()
                if self.pelvis_imu is not None:
                    self.pelvis_imu.configure()
            except (OSError, ImuError):
                self._bus_failed(now)
            self._t_fifo = None
            return
        self.fifo = False
        self.imu.fifo_on = False
        if self.pelvis_imu is not None:
            self.pelvis_imu.fifo_on = False
        self._idle = True
        self._fifo_note = "IMU FIFO stays empty after 3 re-arms; sampling by polling"

    def _service_poll(self, now):
        clock = self.clock
        # The fusion runs from boot whether or not frames are streamed: orientation (and
        # its gyro-only heading) and the bias estimate must be current when `start` comes.
        if self._idle:
            self._idle = False
            self.next_due = now
        wait = clock.ticks_diff(self.next_due, now)
        if wait > 0:
            return
        late = -wait
        if late >= self.period_us:
            # Missed at least one period: count it and re-phase instead of bursting.
            self.overruns += late // self.period_us
            self._flags_extra |= FLAG_OVERRUN
            self.next_due = clock.ticks_add(now, self.period_us)
        else:
            self.next_due = clock.ticks_add(self.next_due, self.period_us)
        errs = self.i2c_errors()
        ok = self.imu.read_into(self.gyro, self.accel)
        pg = pa = None
        if self.pelvis_imu is not None:
            if self.pelvis_imu.read_into(self.pgyro, self.paccel):
                pg, pa = self.pgyro, self.paccel
            else:
                self._flags_extra |= FLAG_PELVIS_ERROR
        if self.i2c_errors() != errs:
            self._flags_extra |= FLAG_I2C_ERROR
        if not ok:
            # No fresh data: keep the flags for the next sample; dt then spans the gap.
            self._bus_failed(now)
            return
        self._backoff = 0
        dt = 0.0
        if self._have_last:
            dt = clock.ticks_diff(now, self.t_last) * 1e-6
        self.t_last = now
        self._have_last = True
        self.t_sample = now
        self._process(now, dt, pg, pa)

    def _process(self, t, dt, pg, pa):
        """Fuse one sample taken at device time t and queue it for output."""
        pipe = self.pipe
        flags = pipe.update(self.gyro, self.accel, dt, pg, pa) | self._flags_extra
        self._flags_extra = 0
        self.fused += 1
        if not self.streaming:
            return
        q = pipe.q_thigh_seg
        q14 = self.q14
        for i in range(4):
            q14[i] = int(q[i] * 16384.0)
        pq = None
        if pg is not None:
            pq = self.pq14
            qp = pipe.q_pelvis_seg
            for i in range(4):
                pq[i] = int(qp[i] * 16384.0)
            flags |= 0x20
        self.ring.push(t, pipe.angles, q14, flags & 0xFF, self.i2c_errors(), self.overruns, pq)

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
                for k, v in config.fusion_settings(cfg).items():
                    setattr(f, k, v)

    def self_test(self):
        """Read a burst: the IMU answers, |a| is ~1 g, and the gyro is quiet when still."""
        ok_reads = 0
        amax = 0.0
        amin = 99.0
        for _ in range(SELF_TEST_SAMPLES):
            if self.imu.read_into(self.gyro, self.accel):
                ok_reads += 1
                a = self.accel
                n = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]) ** 0.5
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
