"""Run the workstation app on uvicorn: in the foreground (CLI) or on a thread (tests, bench)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import uvicorn

from edge_service.errors import DeviceError
from edge_service.live.service import LiveService
from edge_service.workstation.app import create_app
from edge_service.workstation.settings import WorkstationSettings

log = logging.getLogger(__name__)


def _config(
    service: LiveService, ws: WorkstationSettings, port: int | None = None
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(service, ws),
        host=ws.host,
        port=ws.port if port is None else port,
        ssl_certfile=str(ws.tls_certfile) if ws.tls_certfile else None,
        ssl_keyfile=str(ws.tls_keyfile) if ws.tls_keyfile else None,
        log_level="warning",
        ws="websockets-sansio",
        lifespan="on",
        access_log=False,
    )


class BackgroundServer:
    """uvicorn on a daemon thread; `.url` once started (port 0 = an ephemeral port)."""

    def __init__(self, service: LiveService, ws: WorkstationSettings, port: int | None = None):
        self.server = uvicorn.Server(_config(service, ws, port))
        self.ws = ws
        self.thread = threading.Thread(target=self.server.run, name="workstation", daemon=True)

    def start(self, timeout_s: float = 15.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DeviceError(f"the workstation could not listen on {self.ws.host}")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        sock = self.server.servers[0].sockets[0]
        return int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.ws.tls_certfile else "http"
        return f"{scheme}://{self.ws.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)


def serve_forever(service: LiveService, ws: WorkstationSettings, on_ready: Any = None) -> None:
    """Serve until SIGINT/SIGTERM; a running session is ended cleanly (recorded, analysed)
    before returning. uvicorn runs on a thread so the signals stay ours (uvicorn re-raises
    a captured Ctrl-C as a traceback when it owns them)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.warning("signal %d: stopping the workstation", signum)
        stop.set()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    bg = BackgroundServer(service, ws)
    try:
        bg.start()
        if on_ready is not None:
            on_ready(bg.port)
        while not stop.wait(0.5):
            if not bg.thread.is_alive():
                raise DeviceError("the workstation web server stopped unexpectedly")
    finally:
        service.close()
        bg.stop()
        for sig, h in old.items():
            signal.signal(sig, h)
