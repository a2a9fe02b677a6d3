"""A virtual MicroPython board on a real pty, for `mpremote` and `dgs-clip flash` without hardware.

The REPL is the real MicroPython interpreter (the WebAssembly port under Node, see
`edge_service.sim.mpnode`); this module is the board's USB-serial side: a thread owns the
pty master and speaks the REPL protocol byte for byte as MicroPython's
shared/runtime/pyexec.c does (the non-event-driven variant of rp2/stm32/esp32):

- friendly REPL: banner, `>>> ` prompt with echo, Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C
  clears, Ctrl-D soft reset, Ctrl-E paste mode, `... ` continuation for compound statements;
- raw REPL: `raw REPL; CTRL-B to exit\\r\\n>`, code up to Ctrl-D, `OK`, stdout, `\\x04`,
  exception text, `\\x04`, `>`; an empty block is a soft reset; Ctrl-B back to friendly;
- raw-paste (`\\x05A\\x01`): `R\\x01`, a 128-byte window (half of the 256-byte stdin
  buffer) and a `\\x01` credit each time a window has been consumed, `\\x04` to end;
  another kind than `A` gets `R\\x00>`; `raw_paste=False` acts as firmware before v1.14,
  which knows no raw-paste (the request is plain bytes, Ctrl-A resets the raw REPL);
- soft reset (`MPY: soft reboot`): a fresh interpreter heap, boot.py; main.py too when in the
  friendly REPL; `machine.reset()`: a hard reset (pending input lost, boot.py, main.py,
  banner). The filesystem survives both, as flash does.

Output from Python goes through the board's "cooked" stdout (`\\n` -> `\\r\\n`), as
`print` does on a real port (here `sys.stdout.buffer` is cooked too). What the board cannot
do: interrupt running code with Ctrl-C (the interpreter runs each block to the end, so code
that never returns, e.g. main.py's sampling loop or importing a truncated .mpy, hangs the
board), and give Python code access to stdin (so `mpremote mount` does not work). It has no
IMU: main.py finds none, logs that and returns to the REPL, as a clip with its IMU unplugged. Fault injection for tests: `hang()` (interpreter process killed: the
board stops answering), `unplug()` (pty closed), `fault_after(n, kind)` (the same, or a
reboot, in the middle of a host's session).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import struct
import threading
import time
import tty
from pathlib import Path
from typing import Literal

from edge_service.sim.mpnode import ExecResult, MpNode, NodeGone

log = logging.getLogger(__name__)

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 128  # MICROPY_REPL_STDIN_BUFFER_MAX (256) / 2
_MAX_RESET_LOOP = 3  # main.py that resets the board every time: stop after this many

Fault = Literal["hang", "unplug", "reset"]


def _cooked(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


class ReplBoard:
    """A MicroPython board whose USB serial port is `port` (a pty slave, /dev/pts/N).

    files: initial filesystem content {"/main.py": b"..."}; link: optional symlink path
    to the pty (like /dev/serial/by-id/...); raw_paste=False behaves like firmware older
    than v1.14 (no raw-paste), so hosts fall back to the plain raw REPL. Use as a context manager or call close().
    """

    def __init__(
        self,
        files: dict[str, bytes] | None = None,
        link: str | Path | None = None,
        heap_bytes: int = 256 * 1024,
        node: str | None = None,
        raw_paste: bool = True,
    ) -> None:
        self.mp = MpNode(node=node, heap_bytes=heap_bytes)
        # False: firmware before v1.14, where `\x05A\x01` is just bytes and a raw REPL reset.
        self.raw_paste = raw_paste
        self.execs = 0  # code blocks run from the REPL (raw, raw-paste or friendly)
        self.paste_execs = 0  # of which sent in raw-paste mode
        self.soft_resets = 0
        self.hard_resets = 0
        self._fault: tuple[int, Fault] | None = None
        self._hung = False
        self._wlock = threading.Lock()
        self._stop = threading.Event()
        ver = self.mp.exec(
            b"import sys\nprint(sys.version.split('; ', 1)[1] + '; ' + sys.implementation._machine)"
        )
        self.banner = ver.out.strip() + b'\r\nType "help()" for more information.\r\n'
        for path, data in (files or {}).items():
            self.mp.write(path, data)
        m, s = os.openpty()
        tty.setraw(s)  # no echo or newline translation before a host configures the port
        os.set_blocking(m, False)
        self._master: int | None = m
        self._slave: int | None = s  # kept open: the pty lives across host connections
        self.port = os.ttyname(s)
        self.link = str(link) if link is not None else None
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
            os.symlink(self.port, self.link)
        self._raw = False
        self._line = bytearray()
        self._cont: list[bytes] = []  # friendly REPL: lines of a compound statement
        self._paste: bytearray | None = None  # friendly paste mode (Ctrl-E) buffer
        self._rawpaste: bytearray | None = None  # raw-paste buffer
        self._window = 0
        self._power_on()
        self._thread = threading.Thread(target=self._serve, name="replboard", daemon=True)
        self._thread.start()

    # -- public API -------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes | None:
        """A file from the board's filesystem (absolute path), None if missing."""
        return self.mp.read(path)

    def write_file(self, path: str, data: bytes) -> None:
        self.mp.write(path, data)

    def files(self) -> dict[str, int]:
        """Every file on the board's filesystem: {absolute path: size}."""
        return self.mp.files()

    def fault_after(self, n_execs: int, kind: Fault) -> None:
        """Fail at the n-th code block from now (after its `OK`): "hang" kills the
        interpreter (the board stops answering), "unplug" closes the pty, "reset" reboots
        the board instead of running the block (a brown-out; the filesystem stays)."""
        self._fault = (self.execs + n_execs, kind)

    def hang(self) -> None:
        """The board stops answering: its interpreter process is killed."""
        self._hung = True
        self.mp.kill()

    def unplug(self) -> None:
        """Pull the cable: the pty closes, the host's reads and writes fail."""
        with self._wlock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    def close(self) -> None:
        self._stop.set()
        self.unplug()
        self.mp.close()  # also frees the serving thread if code on the board never returns
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def __enter__(self) -> ReplBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serial side --------------------------------------------------------------------------

    def _write(self, data: bytes, timeout_s: float = 5.0) -> None:
        """Write to the host; bytes nobody reads within timeout_s are dropped (as a USB CDC
        device drops them when the host does not poll)."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout_s
        with self._wlock:
            while view:
                if self._master is None:
                    return
                try:
                    view = view[os.write(self._master, view) :]
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        log.warning("virtual board: host not reading, %d bytes dropped", len(view))
                        return
                    select.select([], [self._master], [], 0.05)
                except OSError as exc:
                    log.debug("virtual board write failed: %s", exc)
                    return

    def _serve(self) -> None:
        while not self._stop.is_set():
            m = self._master
            if m is None or self._hung:
                if self._stop.wait(0.05):
                    return
                continue
            try:
                ready, _, _ = select.select([m], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(m, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.EIO):
                    continue  # unplugged (master closed) or no host side open
                raise
            for c in data:
                if self._hung or self._master is None:
                    break
                try:
                    self._feed(c)
                except NodeGone as exc:
                    log.info("virtual board hangs: %s", exc)
                    self._hung = True

    def _drop_input(self) -> None:
        with contextlib.suppress(OSError, TypeError):
            while self._master is not None and os.read(self._master, 4096):
                pass

    # -- REPL state machine (pyexec.c) -------------------------------------------------------

    def _feed(self, c: int) -> None:
        if self._rawpaste is not None:
            self._feed_rawpaste(c)
        elif self._raw:
            self._feed_raw(c)
        elif self._paste is not None:
            self._feed_paste(c)
        else:
            self._feed_friendly(c)

    def _feed_raw(self, c: int) -> None:
        line = self._line
        if c == 0x01:  # Ctrl-A: reset raw REPL, or raw-paste request "\x05A\x01"
            if len(line) == 2 and line[0] == 0x05 and self.raw_paste:
                kind = line[1]
                line.clear()
                if kind == ord("A"):
                    self._write(b"R\x01" + struct.pack("<H", PASTE_WINDOW) + b"\x01")
                    self._rawpaste = bytearray()
                    self._window = PASTE_WINDOW
                else:
                    self._write(b"R\x00>")
                return
            line.clear()
            self._write(RAW_BANNER + b">")
        elif c == 0x02:  # Ctrl-B: friendly REPL
            line.clear()
            self._raw = False
            self._write(b"\r\n" + self.banner + b">>> ")
        elif c == 0x03:
            line.clear()
        elif c == 0x04:
            self._write(b"OK")
            code = bytes(line)
            line.clear()
            if not code:
                self._write(b"\r\n")
                self._soft_reset()
                return
            self._run_raw(code)
        else:
            line.append(c)  # any other raw 8-bit value

    def _feed_rawpaste(self, c: int) -> None:
        buf = self._rawpaste
        assert buf is not None
        if c in (0x03, 0x04):
            self._rawpaste = None
            self._write(b"\x04")  # end of data acknowledged
            if c == 0x03:
                self._write(b"\x04KeyboardInterrupt: \r\n\x04>")
                return
            self.paste_execs += 1
            self._run_raw(bytes(buf))
            return
        buf.append(c)
        self._window -= 1
        if self._window == 0:
            self._window = PASTE_WINDOW
            self._write(b"\x01")  # one more window may be sent

    def _exec_unless_reset(self, code: bytes) -> tuple[ExecResult, bytes] | None:
        """Run code; on machine.reset() print its output and reboot (None), else the result
        and its exception text, cooked for the terminal."""
        res = self._exec(code)
        if res.exit == "hard":
            self._write(_cooked(res.out))
            self._hard_reset()
            return None
        return res, b"" if res.error is None else _cooked(res.error.encode())

    def _run_raw(self, code: bytes) -> None:
        done = self._exec_unless_reset(code)
        if done is None:
            return
        res, err = done
        self._write(_cooked(res.out) + b"\x04" + err + b"\x04")
        if res.exit == "soft":
            self._soft_reset()
        else:
            self._write(b">")

    def _feed_friendly(self, c: int) -> None:
        line = self._line
        if 0x01 <= c <= 0x05 and not line and not self._cont:
            if c == 0x01:
                self._raw = True
                self._write(b"\r\n" + RAW_BANNER + b">")
            elif c == 0x02:
                self._write(b"\r\n" + self.banner + b">>> ")
            elif c == 0x03:
                self._write(b"\r\n>>> ")
            elif c == 0x04:
                self._write(b"\r\n")
                self._soft_reset()
            else:
                self._paste = bytearray()
                self._write(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
        elif c == 0x03:
            line.clear()
            self._cont.clear()
            self._write(b"\r\n>>> ")
        elif c == 0x0D:
            self._write(b"\r\n")
            text = bytes(line)
            line.clear()
            if self._cont and text.strip():
                self._cont.append(text)
                self._write(b"... ")
            elif self._cont:
                code = b"\n".join(self._cont) + b"\n"
                self._cont.clear()
                self._run_friendly(code, single=True)
            elif not text.strip():
                self._write(b">>> ")
            elif text.rstrip().endswith(b":"):
                self._cont.append(text)
                self._write(b"... ")
            else:
                self._run_friendly(text, single=True)
        elif c in (0x08, 0x7F):
            if line:
                line.pop()
                self._write(b"\x08\x1b[K")
        elif c >= 0x20 or c == 0x09:
            line.append(c)
            self._write(bytes([c]))

    def _feed_paste(self, c: int) -> None:
        buf = self._paste
        assert buf is not None
        if c == 0x03:
            self._paste = None
            self._write(b"\r\n>>> ")
        elif c == 0x04:
            self._paste = None
            self._write(b"\r\n")
            self._run_friendly(bytes(buf), single=False)
        else:
            buf.append(c)
            self._write(b"\r\n=== " if c == 0x0D else bytes([c]))

    def _run_friendly(self, code: bytes, single: bool) -> None:
        if single:
            # Single-input mode prints the repr of an expression statement, as `>>> 1+1` does.
            code = b"exec(compile(%r, '<stdin>', 'single'))" % code.decode(errors="replace")
        done = self._exec_unless_reset(code)
        if done is None:
            return
        res, err = done
        self._write(_cooked(res.out) + err)
        if res.exit == "soft":
            self._write(b"\r\n")
            self._soft_reset()
        else:
            self._write(b">>> ")

    def _exec(self, code: bytes) -> ExecResult:
        self.execs += 1
        if self._fault is not None and self.execs >= self._fault[0]:
            kind = self._fault[1]
            self._fault = None
            log.info("virtual board: injected fault %s at code block %d", kind, self.execs)
            if kind == "reset":  # brown-out: the block never runs, the board reboots
                return ExecResult(b"", None, "hard")
            if kind == "unplug":
                self.unplug()
            else:
                self.hang()
            raise NodeGone(f"injected fault: {kind}")
        return self.mp.exec(code)

    # -- resets ------------------------------------------------------------------------------

    def _run_scripts(self, with_main: bool) -> None:
        """boot.py, then main.py (friendly REPL only, and only if boot.py did not fail)."""
        scripts = ["boot.py", "main.py"] if with_main else ["boot.py"]
        for name in scripts:
            res = self.mp.run_file("/" + name)
            if res is None:
                continue
            err = b"" if res.error is None else _cooked(res.error.encode())
            self._write(_cooked(res.out) + err)
            if res.exit == "hard":
                raise _HardReset
            if res.error is not None or res.exit == "soft":
                return

    def _soft_reset(self) -> None:
        self._write(b"MPY: soft reboot\r\n")
        self.mp.reset()
        try:
            self._run_scripts(with_main=not self._raw)
        except _HardReset:
            self._hard_reset()
            return
        self.soft_resets += 1  # counted once the board is back at its prompt
        self._prompt()

    def _hard_reset(self) -> None:
        for _ in range(_MAX_RESET_LOOP):
            self._drop_input()  # the USB link goes down: what the host sent meanwhile is lost
            self._raw = False
            self._line.clear()
            self._cont.clear()
            self._paste = self._rawpaste = None
            self.mp.reset()
            try:
                self._run_scripts(with_main=True)
            except _HardReset:
                continue
            break
        self.hard_resets += 1  # counted once the board is back at its prompt
        self._prompt()

    def _power_on(self) -> None:
        try:
            self._run_scripts(with_main=True)
        except _HardReset:
            self._hard_reset()
            return
        self._prompt()

    def _prompt(self) -> None:
        self._write(RAW_BANNER + b">" if self._raw else self.banner + b">>> ")


class _HardReset(Exception):
    """main.py/boot.py called machine.reset()."""
