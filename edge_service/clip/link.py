"""Serial link to the clip: exclusive open, reader thread, reconnect, commands, statistics.

One reader thread owns the port: it reads whatever is waiting (pyserial `serial.threaded`
style), feeds the pure `FrameDecoder`, times samples with `ClockSync`, and hands them to the
timeline, the recorder and subscribers. When the port disappears (unplug: `SerialException`
or `OSError`), it closes, waits with exponential back-off and reopens the same path; the
decoder and the clock fit restart because neither survives a reconnect. Commands are sent from
the caller's thread and answered through the reader thread (ACK/NAK matched by command id).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import serial
from dgsclip import protocol as P

from edge_service.clip.alarms import ALARMS, Alarm, AlarmBoard, implausible
from edge_service.clip.clocksync import ClockSync
from edge_service.clip.commands import ClipCommands
from edge_service.clip.decoder import FrameDecoder, IncompatibleVersion
from edge_service.clip.discovery import detect_port, probe, usb_candidates
from edge_service.clip.messages import (
    Ack,
    ClipInfo,
    ClipStatus,
    DeviceReset,
    Hello,
    Log,
    Message,
    Sample,
    Status,
)
from edge_service.clip.recovery import RebootRecovery
from edge_service.clip.settings import ClipLinkSettings
from edge_service.clip.timeline import AngleTimeline, ImuJsonlWriter, TimedSample
from edge_service.errors import DeviceError

__all__ = [
    "ALARMS",
    "Alarm",
    "ClipLink",
    "CommandFailed",
    "CommandTimeout",
    "detect_port",
    "implausible",
    "probe",
    "usb_candidates",
]


log = logging.getLogger(__name__)
clip_log = logging.getLogger("dgsclip.device")  # the clip's own LOG frames


class CommandFailed(DeviceError):
    """The clip answered NAK."""

    def __init__(self, name: str, ack: Ack) -> None:
        reason = ack.text()
        super().__init__(
            f"clip refused '{name}': {ack.error_name}" + (f" ({reason})" if reason else "")
        )
        self.ack = ack


class CommandTimeout(DeviceError):
    """No ACK/NAK after all retries."""


@dataclass
class LinkStats:
    state: str = "closed"  # closed, open, reconnecting, incompatible
    port: str | None = None
    connects: int = 0
    disconnects: int = 0
    bytes_in: int = 0
    samples: int = 0
    commands: int = 0
    retries: int = 0
    timeouts: int = 0
    naks: int = 0
    writer_errors: int = 0
    clip_reboots: int = 0  # reboots detected (sequence restart or a new boot id)
    stream_restarts: int = 0  # `start` re-sent after a reboot, acknowledged
    implausible_samples: int = 0  # valid-CRC samples dropped as impossible
    incompatible_frames: int = 0  # frames of another protocol major (dropped)
    clip_ring_dropped: int = 0  # samples the clip fused but could not send (its STATUS)
    last_sample_at: float | None = None
    errors: list[str] = field(default_factory=list)


class ClipLink(ClipCommands):
    """Talks to one clip. Use as a context manager or call `open()` / `close()`.

    Samples: `subscribe(fn)` gets every `TimedSample` (called on the reader thread: keep it
    short); `timeline` and `writer`, when given, are fed directly.
    """

    def __init__(
        self,
        settings: ClipLinkSettings | None = None,
        port: str | None = None,
        timeline: AngleTimeline | None = None,
        writer: ImuJsonlWriter | None = None,
        clock: ClockSync | None = None,
    ) -> None:
        self.settings = settings or ClipLinkSettings()
        self.port = port or self.settings.port
        self.timeline = timeline
        self.writer = writer
        self.clock = clock or ClockSync(self.settings.clock)
        self.decoder = FrameDecoder()
        self.stats = LinkStats()
        self.info: ClipInfo | None = None
        self.status: ClipStatus | None = None
        self.incompatible: IncompatibleVersion | None = None
        self._subs: list[Callable[[TimedSample], None]] = []
        self._ser: serial.Serial | None = None
        self._wlock = threading.Lock()
        self._cond = threading.Condition()
        self._acks: dict[int, Ack] = {}
        self._next_id = 1
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self.alarms = AlarmBoard()
        self.recovery = RebootRecovery(self)
        self._frames_at_incompatible = 0

    def on_alarm(self, fn: Callable[[Alarm], None]) -> None:
        """fn(Alarm) on every alarm raised or cleared (any thread: keep it short)."""
        self.alarms.subscribe(fn)

    @property
    def active_alarms(self) -> dict[str, Alarm]:
        return self.alarms.active

    @property
    def alarm_log(self) -> deque[Alarm]:
        return self.alarms.log

    def _alarm(self, code: str, message: str, **details: Any) -> None:
        self.alarms.raise_(code, message, **details)

    def _clear(self, code: str) -> None:
        self.alarms.clear(code)

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> ClipLink:
        if self.port is None:
            self.port = detect_port(self.settings)
        self._open_port()  # the first open fails loudly (wrong path, port busy)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="clip-link", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        ser = self._ser
        if ser is not None:
            with contextlib.suppress(serial.SerialException, OSError, AttributeError):
                ser.cancel_read()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._close_port()
        self.stats.state = "closed"

    def __enter__(self) -> ClipLink:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, fn: Callable[[TimedSample], None]) -> None:
        self._subs.append(fn)

    def unsubscribe(self, fn: Callable[[TimedSample], None]) -> None:
        """Stop calling `fn` (a session that ended must not keep collecting samples).
        Copy-on-write: the reader thread may be iterating the old list."""
        self._subs = [f for f in self._subs if f is not fn]

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def _open_port(self) -> None:
        assert self.port is not None
        try:
            ser = serial.Serial(self.port, self.settings.baudrate, timeout=0.1, exclusive=True)
        except serial.SerialException as exc:
            msg = str(exc)
            if "lock" in msg.lower() or "busy" in msg.lower():
                raise DeviceError(f"{self.port} is in use by another program") from None
            raise DeviceError(f"cannot open {self.port}: {msg}") from None
        except OSError as exc:
            raise DeviceError(f"cannot open {self.port}: {exc.strerror}") from None
        self._ser = ser
        self.decoder.reset()
        self._compatible_again()  # a replugged clip may have been reflashed
        self.clock.reset("connected")
        self.stats.connects += 1
        self.stats.port = self.port
        self.stats.state = "open"
        self._connected.set()
        with contextlib.suppress(DeviceError):
            # A lone delimiter ends whatever partial bytes the clip's reader holds.
            self._write_raw(b"\x00")
        log.info("clip link open on %s", self.port)

    def _close_port(self) -> None:
        self._connected.clear()
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()

    def _run(self) -> None:
        backoff = self.settings.reconnect_initial_s
        while not self._stop.is_set():
            ser = self._ser
            if ser is None:
                if self._stop.wait(backoff):
                    break
                try:
                    self._open_port()
                    backoff = self.settings.reconnect_initial_s
                except DeviceError as exc:
                    log.debug("reconnect failed: %s", exc)
                    backoff = min(backoff * 2, self.settings.reconnect_max_s)
                continue
            try:
                data = ser.read(min(ser.in_waiting, self.settings.read_chunk_bytes) or 1)
            except (serial.SerialException, OSError, TypeError) as exc:
                # TypeError: pyserial after cancel_read/close from another thread.
                if self._stop.is_set():
                    break
                self._lost(str(exc))
                continue
            if not data:
                # Quiet line: text without a delimiter (a traceback, then the REPL prompt).
                self.decoder.flush_text()
                self._log_stray_text()
                continue
            if data:
                try:
                    self._handle_bytes(data, time.time())
                except Exception as exc:  # keep reading: one bad consumer must not stop the link
                    log.exception("clip link: handling received data failed")
                    self.stats.errors = [*self.stats.errors[-9:], f"handler: {exc}"]

    def _lost(self, why: str) -> None:
        log.warning("clip link lost on %s: %s; reconnecting", self.port, why)
        self.stats.disconnects += 1
        self.stats.state = "reconnecting"
        self.stats.errors = [*self.stats.errors[-9:], why]
        self._close_port()

    def _handle_bytes(self, data: bytes, arrival: float) -> None:
        self.stats.bytes_in += len(data)
        while True:
            # Each refused frame is consumed by the raise, so this ends; the frames around
            # it are kept by the decoder and come out on the next call.
            try:
                msgs = self.decoder.feed(data)
                break
            except IncompatibleVersion as exc:
                if self.incompatible is None:
                    log.error("%s", exc)
                self.incompatible = exc
                self._frames_at_incompatible = self.decoder.stats.frames
                self.stats.incompatible_frames += 1
                self.stats.state = "incompatible"
                self._alarm("incompatible_protocol", str(exc), major=exc.major, minor=exc.minor)
                with self._cond:
                    self._cond.notify_all()
                data = b""
        if (
            self.incompatible is not None
            and self.decoder.stats.frames > self._frames_at_incompatible
        ):
            self._compatible_again()  # a frame of our major decoded after the refused one
        for m in msgs:
            self._dispatch(m, arrival)
        self._log_stray_text()

    def _compatible_again(self) -> None:
        """A frame of our major decoded after refused ones: the clip speaks our protocol
        again (reflashed, or the refused frame was a one-off); commands work again."""
        if self.incompatible is None:
            return
        log.info("clip link: compatible frames again; accepting commands")
        self.incompatible = None
        if self.stats.state == "incompatible":
            self.stats.state = "open" if self._ser is not None else "reconnecting"
        self._clear("incompatible_protocol")

    def _log_stray_text(self) -> None:
        for text in self.decoder.take_stray_text():
            clip_log.warning("clip printed outside frames: %s", text[:500])

    def _dispatch(self, m: Message, arrival: float) -> None:
        if isinstance(m, Sample):
            why = implausible(m)
            if why is not None:
                self.stats.implausible_samples += 1
                n = self.stats.implausible_samples
                if n & (n - 1) == 0:  # 1, 2, 4, 8, ...: loud but bounded
                    self._alarm(
                        "implausible_samples",
                        f"dropped {n} implausible sample(s); last: {why}",
                        count=n,
                    )
                return
            t_dev, t = self.clock.observe(m.t_us, arrival)
            ts = TimedSample(t, t_dev, m, self.clock.generation)
            self.stats.samples += 1
            self.stats.last_sample_at = arrival
            if self.timeline is not None:
                self.timeline.add(ts)
            if self.writer is not None:
                try:
                    self.writer.write(ts)
                except OSError as exc:  # disk full / removed: keep streaming, say so loudly
                    self.stats.writer_errors += 1
                    if self.stats.writer_errors == 1:
                        log.error("cannot record IMU samples to %s: %s", self.writer.path, exc)
            for fn in self._subs:
                try:
                    fn(ts)
                except Exception:  # a broken subscriber must not kill the link
                    log.exception("sample subscriber failed")
        elif isinstance(m, Ack):
            with self._cond:
                self._acks[m.cmd_id] = m
                self._cond.notify_all()
        elif isinstance(m, Hello):
            # Not fed to the clock: only samples share one send path (read -> fuse -> write),
            # so only they belong to the same latency envelope.
            self.info = m.info
            self.recovery.hello(m.info)
        elif isinstance(m, Status):
            prev_drop = self.status.ring_dropped if self.status is not None else None
            self.status = m.status
            d = m.status.ring_dropped
            if d is not None:
                self.stats.clip_ring_dropped = d
                if prev_drop is not None and d > prev_drop:
                    self._alarm(
                        "clip_samples_dropped",
                        f"the clip dropped {d - prev_drop} sample(s): the host did not read "
                        f"for longer than its ring holds ({m.status.ring_capacity} samples)",
                        dropped=d - prev_drop,
                    )
        elif isinstance(m, Log):
            clip_log.log(m.level if m.level in (10, 20, 30, 40, 50) else 20, "%s", m.text)
        elif isinstance(m, DeviceReset):
            self.recovery.rebooted(f"sequence {m.previous_seq} -> {m.seq}", None)

    # -- commands --------------------------------------------------------------------------

    def _write_raw(self, data: bytes) -> None:
        with self._wlock:
            ser = self._ser
            if ser is None:
                raise DeviceError(f"clip on {self.port} is not connected")
            try:
                ser.write(data)
                ser.flush()
            except (serial.SerialException, OSError) as exc:
                raise DeviceError(f"write to {self.port} failed: {exc}") from None

    def command(
        self,
        cmd: int,
        args: bytes = b"",
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> Ack:
        """Send one command and wait for its ACK; re-send (same id) on timeout.

        Raises CommandFailed on NAK, CommandTimeout when no reply came, DeviceError when
        the clip is disconnected for the whole wait."""
        name = P.COMMAND_NAMES.get(cmd, f"cmd {cmd}")
        timeout = self.settings.command_timeout_s if timeout_s is None else timeout_s
        tries = 1 + (self.settings.command_retries if retries is None else retries)
        with self._cond:
            cmd_id = self._next_id
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        frame = P.encode_command(cmd_id, cmd, args)
        self.stats.commands += 1
        for attempt in range(tries):
            if attempt:
                self.stats.retries += 1
                log.info("retrying '%s' (id %d), attempt %d", name, cmd_id, attempt + 1)
            if self.incompatible is not None:
                raise self.incompatible
            if not self._connected.wait(timeout):
                continue
            try:
                self._write_raw(frame)
            except DeviceError:
                continue
            deadline = time.monotonic() + timeout
            with self._cond:
                while cmd_id not in self._acks:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.incompatible is not None:
                        break
                    self._cond.wait(left)
                ack = self._acks.pop(cmd_id, None)
            if ack is not None:
                if not ack.ok:
                    self.stats.naks += 1
                    raise CommandFailed(name, ack)
                return ack
        self.stats.timeouts += 1
        raise CommandTimeout(
            f"clip did not answer '{name}' on {self.port} ({tries} tries, {timeout:.1f} s each)"
        )

    def _clip_dict(self) -> dict[str, Any]:
        """The clip's own view (last HELLO / STATUS), for status publishing."""
        out: dict[str, Any] = {}
        if self.info is not None:
            out.update(
                fw_version=self.info.fw_version,
                proto=f"{self.info.proto_major}.{self.info.proto_minor}",
                boot_id=self.info.boot_id,
                reset_cause=self.info.reset_cause_name,
                cal_state=self.info.cal_state,
            )
        st = self.status
        if st is not None:
            out.update({k: getattr(st, k) for k in st.__dataclass_fields__})
            if st.reset_cause is not None:  # a name, as from HELLO, not the wire code
                out["reset_cause"] = P.RESET_NAMES.get(st.reset_cause, str(st.reset_cause))
        return out

    def stats_dict(self) -> dict[str, Any]:
        """Everything the service and MQTT status want to publish about the link."""
        c = self.clock.state()
        return {
            **{k: v for k, v in self.stats.__dict__.items() if k != "errors"},
            "last_errors": list(self.stats.errors),
            "alarms": sorted(self.active_alarms),
            "alarm_log": [a.as_dict() for a in self.alarm_log],
            "clip": self._clip_dict(),
            "data_quality": {
                "clip_reboots": self.stats.clip_reboots,
                "samples_lost_in_transit": self.decoder.stats.lost_frames,
                "samples_dropped_on_clip": self.stats.clip_ring_dropped,
                "implausible_samples": self.stats.implausible_samples,
                "incompatible_frames": self.stats.incompatible_frames,
            },
            "decoder": self.decoder.stats.as_dict(),
            "clock": {
                "synced": c.synced,
                "drift_ppm": round(c.drift_ppm, 2),
                "uncertainty_ms": round(c.uncertainty_s * 1e3, 3)
                if c.uncertainty_s != float("inf")
                else None,
                "resets": c.resets,
                "rejected_bins": c.rejected_bins,
            },
        }
