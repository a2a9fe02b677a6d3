"""systemd notification protocol (sd_notify(3)) without a dependency: one datagram per call.

`Type=notify` units learn READY=1 when the service is up and STOPPING=1 when it shuts down;
with `WatchdogSec=` systemd expects WATCHDOG=1 at least every WATCHDOG_USEC and restarts the
service otherwise. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        # "@name" is a Linux abstract socket: the leading NUL is implied.
        self.address: str | None = ("\0" + addr[1:]) if addr.startswith("@") else (addr or None)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and ours else None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        if self.address is None:
            return False
        msg = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(msg, self.address)
        except OSError as exc:
            if not self._warned:  # systemd gone or socket wrong: say it once, carry on
                log.warning("cannot notify systemd at %s: %s", self.address.strip("\0"), exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(ready=1, **({"status": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.send(status=text)

    def stopping(self) -> bool:
        return self.send(stopping=1)

    def watchdog(self) -> bool:
        return self.send(watchdog=1)


class Watchdog:
    """Pings WATCHDOG=1 every half watchdog period, but only while the service's main loop
    has beaten within `stall_s`: a hung loop stops the pings and systemd restarts us."""

    def __init__(self, notifier: Notifier, stall_s: float = 600.0) -> None:
        self.n = notifier
        self.stall_s = stall_s
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self._last = time.monotonic()

    def start(self) -> None:
        if self.n.watchdog_s is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = max(0.05, (self.n.watchdog_s or 1.0) / 2)
        while not self._stop.wait(period):
            if time.monotonic() - self._last <= self.stall_s:
                self.n.watchdog()
            else:
                log.error("main loop silent for %.0f s: watchdog pings stopped", self.stall_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
