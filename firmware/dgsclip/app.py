"""The clip's main loop: fixed-rate sampling, fusion, hip angles, protocol I/O, commands.

Everything is injected (boot.py builds the real ones, the virtual clip and the tests build
simulated ones):
  imu, pelvis_imu   drivers with read_into(gyro, accel) -> bool (dgsclip.drivers)
  io                read() -> bytes or None (non-blocking), write(buf)
  clock             ticks_us(), ticks_diff(a, b), ticks_add(a, d), sleep_us(n): `time` on
                    the clip; periods always via ticks_diff (30-bit wrap)
  fs                read(name) -> str or None, write(name, text) (dgsclip.storage.DirFS)
  wdt               feed() (machine.WDT) or None
  reset             callable that reboots the board (machine.reset) or None
The loop never raises on I2C errors: they are counted, flagged and the driver recovers.
"""

from array import array

from dgsclip import VERSION, config
from dgsclip import protocol as P
from dgsclip.calib import CalibrationError
from dgsclip.compat import json
from dgsclip.pipeline import (
    FLAG_I2C_ERROR,
    FLAG_OVERRUN,
    FLAG_PELVIS_ERROR,
    MODE_FUNCTIONAL,
    MODE_NEUTRAL,
    MODE_RUN,
    Pipeline,
)

SELF_TEST_SAMPLES = 20


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
        problem = None
        if cfg is None:
            cfg, problem = config.load(fs)
        self.cfg = cfg
        self.enc = P.Encoder()
        self.reader = P.CommandReader()
        self.pipe = Pipeline(cfg["side"], pelvis_imu is not None, config.fusion_settings(cfg))
        self._load_calibration()
        self.gyro = array("f", (0.0, 0.0, 0.0))
        self.accel = array("f", (0.0, 1.0, 0.0))
        self.pgyro = array("f", (0.0, 0.0, 0.0))
        self.paccel = array("f", (0.0, 1.0, 0.0))
        self.q14 = array("h", (16384, 0, 0, 0))
        self.pq14 = array("h", (16384, 0, 0, 0))
        self.streaming = bool(cfg["autostart"])
        self.running = True
        self.samples = 0
        self.overruns = 0
        self.pending = None  # (cmd_id, cmd) of a calibration waiting for its samples
        self._last_reply = None  # bytes of the previous reply, re-sent on a host retry
        self._last_id = -1
        self._flags_extra = 0
        self._set_period(cfg["rate_hz"])
        t = clock.ticks_us()
        self.t_boot = t
        self.next_due = t
        self.t_last = t
        self.t_status = t
        self._have_last = False
        self._idle = True
        io.write(b"\x00")  # delimiter: whatever was printed before cannot merge with a frame
        self.hello()
        if problem:
            self.log(problem, 30)

    # -- output ----------------------------------------------------------------------
    def _send(self, frame):
        self.io.write(frame)

    def log(self, text, level=20):
        self._send(self.enc.log(None, self.clock.ticks_us(), text, level))

    def _cal_state(self):
        c = self.pipe.cal
        if c.calibrated:
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
        )

    def hello(self):
        self._send(self.enc.hello(None, self.clock.ticks_us(), *self._hello_args()))

    def i2c_errors(self):
        n = self.imu.i2c_errors
        if self.pelvis_imu is not None:
            n += self.pelvis_imu.i2c_errors
        return n

    def _status_args(self, now):
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
        )

    # -- set-up ----------------------------------------------------------------------
    def _set_period(self, rate_hz):
        self.rate_hz = rate_hz
        self.period_us = 1000000 // rate_hz

    def _load_calibration(self):
        text = self.fs.read(config.CALIBRATION_FILE)
        if text is None:
            return
        try:
            self.pipe.cal.load_dict(json.loads(text))
        except (ValueError, CalibrationError):
            self.pipe.cal.has_mount = False  # unusable file: run uncalibrated, say so in status

    def _save_calibration(self):
        self.fs.write(config.CALIBRATION_FILE, json.dumps(self.pipe.cal.to_dict()))

    # -- loop ------------------------------------------------------------------------
    def run(self):
        """Run until exit_repl (returns) or reboot."""
        while self.running:
            self.step()

    def step(self):
        clock = self.clock
        data = self.io.read()
        if data:
            for cmd in self.reader.feed(data):
                self._command(cmd)
                if not self.running:
                    return
        if self.wdt is not None:
            self.wdt.feed()
        now = clock.ticks_us()
        # The fusion runs from boot whether or not frames are streamed: orientation (and
        # its gyro-only heading) and the bias estimate must be current when `start` comes.
        if self._idle:
            self._idle = False
            self.next_due = now
        wait = clock.ticks_diff(self.next_due, now)
        if wait > 0:
            clock.sleep_us(wait if wait < 1000 else 1000)
            return
        late = -wait
        if late >= self.period_us:
            # Missed at least one period: count it and re-phase instead of bursting.
            self.overruns += late // self.period_us
            self._flags_extra |= FLAG_OVERRUN
            self.next_due = clock.ticks_add(now, self.period_us)
        else:
            self.next_due = clock.ticks_add(self.next_due, self.period_us)
        self._sample(now)
        if (
            self.streaming
            and clock.ticks_diff(now, self.t_status) >= self.cfg["status_period_ms"] * 1000
        ):
            self.t_status = now
            self._send(self.enc.status(None, now, *self._status_args(now)))

    def _sample(self, now):
        errs = self.i2c_errors()
        ok = self.imu.read_into(self.gyro, self.accel)
        pg = pa = None
        extra = self._flags_extra
        if self.pelvis_imu is not None:
            if self.pelvis_imu.read_into(self.pgyro, self.paccel):
                pg, pa = self.pgyro, self.paccel
            else:
                extra |= FLAG_PELVIS_ERROR
        if self.i2c_errors() != errs:
            extra |= FLAG_I2C_ERROR
        if not ok:
            # No fresh data: keep the flags for the next sample; dt then spans the gap.
            self._flags_extra = extra
            return
        dt = 0.0
        if self._have_last:
            dt = self.clock.ticks_diff(now, self.t_last) * 1e-6
        self.t_last = now
        self._have_last = True
        pipe = self.pipe
        flags = pipe.update(self.gyro, self.accel, dt, pg, pa) | extra
        self._flags_extra = 0
        if pipe.cal_done is not None:
            self._calibration_finished()
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
        a = pipe.angles
        self._send(
            self.enc.sample(
                None,
                now,
                int(a[0] * 100.0),
                int(a[1] * 100.0),
                int(a[2] * 100.0),
                q14,
                flags & 0xFF,
                self.i2c_errors(),
                self.overruns,
                pq,
            )
        )
        self.samples += 1

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
        self._send(frame)

    def _command(self, item):
        cmd_id, cmd, args, repeat = item
        if repeat and cmd_id == self._last_id and self._last_reply is not None:
            self._send(self._last_reply)  # host retry: same answer, not a second execution
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
            self._reply(cmd_id, cmd, P.ERR_OK)
        elif cmd == P.CMD_SET_RATE:
            if len(args) < 2:
                raise ValueError("set_rate needs u16 rate_hz")
            self.cfg = config.validate({"rate_hz": args[0] | (args[1] << 8)}, self.cfg)
            self._set_period(self.cfg["rate_hz"])
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
            report = self.self_test()
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

    def _apply(self, cfg):
        self.cfg = cfg
        self._set_period(cfg["rate_hz"])
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
