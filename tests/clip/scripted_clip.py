"""A small scripted clip on the master end of a pty, speaking protocol 1.0 with the firmware's
own encoder and command reader. Deterministic knobs let tests cause the faults they check:
dropped command frames (retry), a mute clip (timeout), reboots, tick wrap and clock drift."""

from __future__ import annotations

import json
import math
import struct
import threading
import time

from dgsclip import protocol as P

from tests.harness.serialpty import PtyPort


class ScriptedClip:
    def __init__(
        self,
        port: PtyPort,
        rate_hz: int = 100,
        tick_start: int = 0,
        drift_ppm: float = 0.0,
        ignore_commands: int = 0,
        mute: bool = False,
        device_id: str = "e6614103",
        stream: bool = False,
    ) -> None:
        self.port = port
        self.rate_hz = rate_hz
        self.tick_start = tick_start
        self.drift_ppm = drift_ppm
        self.ignore_commands = ignore_commands  # drop this many command frames (no reply)
        self.mute = mute
        self.device_id = device_id
        self.streaming = stream
        self.enc = P.Encoder()
        self.reader = P.CommandReader()
        self.received: list[tuple[int, int, bytes, bool]] = []
        self.config: dict[str, object] = {"rate_hz": rate_hz, "side": "left"}
        self.cal_state = P.CAL_NONE
        self.sent_samples = 0
        self.in_repl = False
        self.boot_id = 1
        self.reset_cause = P.RESET_POWER_ON
        self._last_reply: bytes | None = None
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scripted-clip", daemon=True)
        self._pending: list[tuple[float, bytes]] = []  # replies due later (calibration)

    def __enter__(self) -> ScriptedClip:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def ticks(self) -> int:
        el = (time.monotonic() - self._t0) * (1.0 + self.drift_ppm * 1e-6)
        return (self.tick_start + int(el * 1e6)) & P.TICKS_MASK

    def reboot(self, idle: bool = False, cause: int = P.RESET_HARD) -> None:
        """Restart: sequence 0, ticks 0, a new boot id; idle=True comes back not streaming
        (what the firmware does after a brown-out)."""
        if idle:
            self.streaming = False
        self.enc.seq = 0
        self._t0 = time.monotonic()
        self.tick_start = 0
        self.boot_id += 1
        self.reset_cause = cause
        self.port.write(b"\x00" + bytes(self._hello()))

    def _hello(self) -> memoryview:
        return self.enc.hello(
            None,
            self.ticks(),
            "0.1.0-test",
            self.device_id,
            "mpu6050",
            self.rate_hz,
            self.cal_state,
            boot_id=self.boot_id,
            reset_cause=self.reset_cause,
        )

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        next_t = time.monotonic()
        if not self.mute:
            self.port.write(b"\x00" + bytes(self._hello()))
        while not self._stop.is_set():
            now = time.monotonic()
            if self.streaming and now >= next_t and not self.mute:
                t = now - self._t0
                f = self.enc.sample(
                    None,
                    self.ticks(),
                    3000 * math.sin(t),
                    500,
                    -800,
                    (16384, 0, 0, 0),
                    P.FLAG_CALIBRATED,
                    0,
                    0,
                )
                self.port.write(bytes(f))
                self.sent_samples += 1
                next_t += 1.0 / self.rate_hz
                if now - next_t > 0.5:  # we were unplugged or starved: do not burst
                    next_t = now
            for due, data in list(self._pending):
                if now >= due:
                    self._pending.remove((due, data))
                    self.port.write(data)
            data = self.port.read(timeout_s=min(period, 0.005))
            if data:
                for c in self.reader.feed(data):
                    self.received.append(c)
                    self._handle(*c)

    def _reply(self, data: bytes) -> None:
        self._last_reply = data
        self.port.write(data)

    def _handle(self, cmd_id: int, cmd: int, args: bytes, repeat: bool) -> None:
        if self.mute:
            return
        if self.ignore_commands > 0:
            self.ignore_commands -= 1
            return
        if repeat and self._last_reply is not None:
            self.port.write(self._last_reply)
            return
        t = self.ticks()
        e = self.enc
        if cmd == P.CMD_INFO:
            self._reply(
                bytes(
                    e.ack_info(
                        None,
                        t,
                        cmd_id,
                        "0.1.0-test",
                        self.device_id,
                        "mpu6050",
                        self.rate_hz,
                        self.cal_state,
                        state=int(self.streaming),
                    )
                )
            )
        elif cmd == P.CMD_START:
            self.streaming = True
            self._reply(bytes(e.ack(None, t, cmd_id, cmd)))
        elif cmd == P.CMD_STOP:
            self.streaming = False
            self._reply(bytes(e.ack(None, t, cmd_id, cmd)))
        elif cmd == P.CMD_SET_RATE:
            (hz,) = struct.unpack("<H", args[:2]) if len(args) >= 2 else (0,)
            if 50 <= hz <= 200:
                self.rate_hz = hz
                self._reply(bytes(e.ack(None, t, cmd_id, cmd)))
            else:
                self._reply(
                    bytes(
                        e.ack(None, t, cmd_id, cmd, P.ERR_BAD_ARGUMENT, b"rate must be 50..200 Hz")
                    )
                )
        elif cmd in (P.CMD_CALIBRATE_NEUTRAL, P.CMD_CALIBRATE_FUNCTIONAL):
            (ms,) = struct.unpack("<H", args[:2])
            self.cal_state = P.CAL_NEUTRAL if cmd == P.CMD_CALIBRATE_NEUTRAL else P.CAL_FULL
            body = json.dumps({"ok": True, "cal_state": self.cal_state}).encode()
            reply = bytes(e.ack(None, t, cmd_id, cmd, P.ERR_OK, body))
            self._last_reply = reply
            self._pending.append((time.monotonic() + ms / 1000.0, reply))
        elif cmd == P.CMD_GET_CONFIG:
            self._reply(
                bytes(e.ack(None, t, cmd_id, cmd, P.ERR_OK, json.dumps(self.config).encode()))
            )
        elif cmd == P.CMD_SET_CONFIG:
            self.config.update(json.loads(args))
            self._reply(bytes(e.ack(None, t, cmd_id, cmd)))
        elif cmd == P.CMD_GET_STATUS:
            self._reply(
                bytes(
                    e.ack_status(
                        None,
                        t,
                        cmd_id,
                        int(self.streaming),
                        self.cal_state,
                        self.rate_hz,
                        self.sent_samples,
                        0,
                        0,
                        0,
                        100000,
                        int(time.monotonic() - self._t0),
                    )
                )
            )
        elif cmd == P.CMD_EXIT_REPL:
            if cmd_id:
                self._reply(bytes(e.ack(None, t, cmd_id, cmd)))
            self.streaming = False
            self.in_repl = True
            self.port.write(b"\r\nMicroPython v1.24.1 on 2024-11-29; dgs-clip\r\n>>> ")
        else:
            self._reply(bytes(e.ack(None, t, cmd_id, cmd, P.ERR_UNKNOWN_COMMAND)))
