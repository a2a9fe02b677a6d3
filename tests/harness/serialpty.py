"""Real pseudo-terminals as serial cables for link tests (used through pyserial).

`PtyPort.path` is a symlink to the pty slave, like /dev/serial/by-id/... for a real clip: the
host opens it with `serial.Serial(path)`. The test plays the clip on the master end.
`unplug()` closes the master (the host's reads fail like a pulled USB cable) and removes the
link; `replug()` makes a fresh pty and points the same path at it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class PtyPort:
    def __init__(self, directory: Path, name: str = "ttyCLIP") -> None:
        self.path = str(directory / name)
        self._lock = threading.RLock()
        self.master: int | None = None
        self._slave: int | None = None
        self.slave_name = ""
        self.plugs = 0
        self.replug()

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def replug(self) -> None:
        with self._lock:
            if self.master is not None:
                return
            m, s = os.openpty()
            # Raw from the first byte: the line discipline must not echo or translate the
            # clip's binary before the host has opened (and configured) the port.
            tty.setraw(s)
            os.set_blocking(m, False)
            self.slave_name = os.ttyname(s)
            tmp = self.path + ".new"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.slave_name, tmp)
            os.replace(tmp, self.path)
            self.master, self._slave = m, s
            self.plugs += 1

    def unplug(self) -> None:
        with self._lock:
            if self.master is None:
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self.master)
            if self._slave is not None:
                os.close(self._slave)
            self.master = self._slave = None

    def write(self, data: bytes, timeout_s: float = 2.0) -> bool:
        """Write all of data from the clip end; False when unplugged (bytes are lost, as on
        a real cable)."""
        view = memoryview(bytes(data))
        deadline = time.monotonic() + timeout_s
        while view:
            with self._lock:
                m = self.master
                if m is None:
                    return False
                try:
                    n = os.write(m, view)
                    view = view[n:]
                    continue
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if exc.errno in (errno.EIO, errno.EBADF):
                        return False
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError("pty buffer full: the host is not reading")
            select.select([], [m], [], 0.01)
        return True

    def read(self, timeout_s: float = 0.0) -> bytes:
        """Bytes the host sent, waiting up to timeout_s for the first ones."""
        with self._lock:
            m = self.master
        if m is None:
            return b""
        try:
            r, _, _ = select.select([m], [], [], timeout_s)
            if not r:
                return b""
            with self._lock:
                if self.master != m:
                    return b""
                return os.read(m, 65536)
        except (BlockingIOError, ValueError):
            return b""
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF):
                return b""
            raise

    def close(self) -> None:
        self.unplug()


def wait_until(cond: Callable[[], object], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll `cond` until truthy or fail after timeout_s (never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def pty_port(tmp_path: Path) -> Iterator[PtyPort]:
    port = PtyPort(tmp_path)
    yield port
    port.close()


@pytest.fixture
def pty_port_factory(tmp_path: Path) -> Iterator[Callable[[str], PtyPort]]:
    ports: list[PtyPort] = []

    def make(name: str = "ttyCLIP") -> PtyPort:
        p = PtyPort(tmp_path, name)
        ports.append(p)
        return p

    yield make
    for p in ports:
        p.close()
