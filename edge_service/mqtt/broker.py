"""Brokers the appliance can run itself: a Mosquitto child process (preferred) or an
in-process amqtt broker when Mosquitto is not installed. Used by `dgs-edge demo` and the
tests; production sites point the publisher at the hospital broker instead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from edge_service.errors import BrokerError

log = logging.getLogger(__name__)

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    for p in MOSQUITTO_PATHS:
        if Path(p).exists():
            return p
    return shutil.which("mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port the kernel just handed out (and released) on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout_s: float, *, up: bool = True) -> bool:
    """Poll until a TCP connect to host:port succeeds (or, with up=False, fails)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                ok = up
        except OSError:
            ok = not up
        if ok:
            return True
        time.sleep(0.02)
    return False


class Mosquitto:
    """A Mosquitto process on a fixed loopback port; stop()/start() keep the same port so
    clients can reconnect, and the persistence file keeps retained messages across restarts."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_conf: Sequence[str] = (),
        host: str = "127.0.0.1",
        binary: str | None = None,
        raw_conf: str | None = None,
    ) -> None:
        exe = binary or find_mosquitto()
        if exe is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.host = host
        self.port = port or free_port(host)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = self.workdir / "mosquitto.conf"
        self.logfile = self.workdir / "mosquitto.log"
        lines = [
            f"listener {self.port} {self.host}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            *extra_conf,
        ]
        if os.geteuid() == 0:
            # Mosquitto started as root drops to user 'mosquitto', which cannot read our
            # private temp dir (certs, password file, persistence): stay the invoking user.
            lines.append("user root")
        if not any(line.startswith(("allow_anonymous", "password_file")) for line in extra_conf):
            lines.append("allow_anonymous true")
        if raw_conf is not None:  # a complete config (e.g. deploy/mosquitto) used as is
            lines = [raw_conf] + (["user root"] if os.geteuid() == 0 else [])
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        logf = self.logfile.open("ab")
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=logf, stderr=logf, stdin=subprocess.DEVNULL
        )
        logf.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited at start (code {self.proc.returncode}): {self.log_tail()}"
                )
            if wait_port(self.host, self.port, 0.1):
                return
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} in {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class AmqttBroker:
    """The pure-Python amqtt broker on its own event-loop thread (MQTT 3.1.1 only)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        from amqtt.broker import Broker  # imported lazily: heavy, and only a fallback

        ready = threading.Event()
        errors: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

        async def _start() -> None:
            self._broker = Broker(config, loop=loop)
            await self._broker.start()

        def _run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(_start())
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=_run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or errors:
            raise BrokerError(f"amqtt broker did not start: {errors[0] if errors else 'timeout'}")
        if not wait_port(self.host, self.port, timeout_s):
            raise BrokerError(f"amqtt broker did not listen on {self.host}:{self.port}")

    def stop(self, timeout_s: float = 10.0) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        with contextlib.suppress(Exception):
            fut.result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._loop = self._broker = self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class EmbeddedBroker:
    """`with EmbeddedBroker() as b: b.url` — Mosquitto on an ephemeral loopback port when it
    is installed, else amqtt in-process. `b.protocol` is the MQTT version clients should use."""

    def __init__(self, prefer: str = "mosquitto", workdir: Path | None = None) -> None:
        if prefer not in ("mosquitto", "amqtt"):
            raise ValueError("prefer must be 'mosquitto' or 'amqtt'")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dgs-broker-")
            workdir = Path(self._tmp.name)
        self.impl: Mosquitto | AmqttBroker
        if prefer == "mosquitto" and find_mosquitto():
            self.impl = Mosquitto(workdir)
            self.kind = "mosquitto"
            self.protocol = "5"
        else:
            self.impl = AmqttBroker()
            self.kind = "amqtt"
            self.protocol = "3.1.1"

    @property
    def url(self) -> str:
        return self.impl.url

    @property
    def port(self) -> int:
        return self.impl.port

    def start(self) -> EmbeddedBroker:
        self.impl.start()
        log.info("embedded %s broker listening on %s", self.kind, self.url)
        return self

    def stop(self) -> None:
        self.impl.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
