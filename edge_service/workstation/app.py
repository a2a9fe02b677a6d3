"""The workstation's ASGI app: the page, the HTTP API (contract 6) and the live stream.

Everything the page does goes through these routes, so anything the clinician can do can
also be scripted. Thread hand-over: the live service calls back on its session threads;
events are handed to each WebSocket's asyncio queue with `call_soon_threadsafe`, and the
live image is JPEG-encoded once per frame by one encoder thread (never on the acquisition
thread) at most `view_fps_max` times a second, whatever the number of viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import struct
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from edge_service import __version__
from edge_service.errors import DgsError, InputError
from edge_service.live.service import PROTOCOLS, Conflict, LiveService, NotFound
from edge_service.workstation.auth import verify_token
from edge_service.workstation.metrics import render_metrics
from edge_service.workstation.settings import WorkstationSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "dgs_ws"
OPEN_PATHS = ("/healthz", "/login", "/static/login.css")


def _is_alarm(msg: Any) -> bool:
    return isinstance(msg, str) and msg.startswith('{"type": "alarm"')


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    side: Literal["left", "right"]
    protocol: Literal["exam", "fair", "piriformis", "neutral", "injection"] = "exam"
    accession_number: str = Field(min_length=1, max_length=64)
    patient_id: str = Field(min_length=1, max_length=64)


class RelabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    side: Literal["left", "right"] | None = None
    accession_number: str | None = Field(default=None, min_length=1, max_length=64)
    patient_id: str | None = Field(default=None, min_length=1, max_length=64)


class FrameFanout:
    """Latest-frame slot + one encoder thread -> JPEG to every viewer (drop-to-latest)."""

    def __init__(self, fps_max: float, quality: int) -> None:
        self.period = 1.0 / fps_max
        self.quality = quality
        self._cv = threading.Condition()
        self._frame: Any = None
        self._sinks: list[Any] = []
        self._stop = False
        self.encoded = 0
        self._th = threading.Thread(target=self._run, name="ws-jpeg", daemon=True)
        self._th.start()

    def offer(self, frame: Any) -> None:
        with self._cv:
            self._frame = frame
            self._cv.notify()

    def add(self, sink: Any) -> None:
        with self._cv:
            self._sinks.append(sink)

    def remove(self, sink: Any) -> None:
        with self._cv:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()

    def _run(self) -> None:
        import cv2

        last = 0.0
        while True:
            with self._cv:
                while self._frame is None and not self._stop:
                    self._cv.wait(1.0)
                if self._stop:
                    return
                frame, self._frame = self._frame, None
                sinks = list(self._sinks)
            if not sinks:
                continue
            ok, jpg = cv2.imencode(
                ".jpg", frame.pixels, [int(cv2.IMWRITE_JPEG_QUALITY), self.quality]
            )
            if not ok:
                continue
            msg = struct.pack("<Id", frame.index & 0xFFFFFFFF, frame.t) + jpg.tobytes()
            self.encoded += 1
            for s in sinks:
                s(msg)
            wait = self.period - (time.monotonic() - last)
            last = time.monotonic()
            if wait > 0:
                time.sleep(wait)  # at most view_fps_max images a second per viewer


def create_app(service: LiveService, settings: WorkstationSettings) -> FastAPI:
    fanout = FrameFanout(settings.view_fps_max, settings.jpeg_quality)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        fanout.close()

    app = FastAPI(
        lifespan=lifespan,
        title="dgs-edge workstation",
        version=__version__,
        description=(
            "Clinic workstation of the dgs-edge appliance: session control by order and "
            "side, live overlay stream, results and reports (contract 6). The live stream is "
            "the WebSocket /api/v1/live (JSON events as text messages, the live image as "
            "binary messages: uint32 frame index, float64 time, JPEG); see docs/workstation.md."
        ),
    )
    logins: set[str] = set()
    app.state.fanout = fanout
    app.state.service = service

    def authorised(headers: Any, cookies: Any, query: Any) -> bool:
        if settings.token_hash is None:
            return True
        if cookies.get(COOKIE) in logins:
            return True
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else query.get("token")
        return bool(token) and verify_token(token, settings.token_hash)

    def same_origin(headers: Any) -> bool:
        """A browser's request from another site (CSRF, or a cross-site WebSocket) carries
        that site's Origin; scripts and the page itself pass. Needed on loopback too,
        where there is no token: any page open in the kiosk browser could post otherwise."""
        origin = headers.get("origin")
        if not origin or origin == "null":
            return origin is None
        return urlsplit(origin).netloc == headers.get("host")

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request.headers):
            return JSONResponse({"detail": "cross-site request refused"}, 403)
        if path in OPEN_PATHS or authorised(request.headers, request.cookies, {}):
            resp: Response = await call_next(request)
            return resp
        if path == "/" or path.startswith("/static"):
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"detail": "unauthorised: log in or send a bearer token"}, 401)

    @app.exception_handler(NotFound)
    async def _nf(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _cf(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InputError)
    async def _ie(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(DgsError)
    async def _de(request: Request, exc: DgsError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    # -- page ------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/login", include_in_schema=False)
    async def login_page() -> HTMLResponse:
        return HTMLResponse((STATIC / "login.html").read_text(encoding="utf-8"))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = (await request.body()).decode("utf-8", "replace")
        from urllib.parse import parse_qs

        token = (parse_qs(form).get("token") or [""])[0]
        if settings.token_hash is None or not verify_token(token, settings.token_hash):
            return HTMLResponse("<p>Wrong token. <a href='/login'>Try again</a></p>", 401)
        key = secrets.token_urlsafe(24)
        logins.add(key)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(
            COOKIE, key, httponly=True, samesite="strict", secure=settings.tls_certfile is not None
        )
        return resp

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- health and metrics ------------------------------------------------------------------
    @app.get("/healthz", summary="health: ok, degraded (results wait) or down (503)")
    async def healthz() -> JSONResponse:
        h = service.health()
        return JSONResponse(h, status_code=503 if h["status"] == "down" else 200)

    @app.get("/metrics", summary="Prometheus text format", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            render_metrics(service, fanout), media_type="text/plain; version=0.0.4"
        )

    # Hospital integration: the order picker (edge_service/integration/workstation.py).
    from edge_service.integration.workstation import register_orders

    register_orders(app, service)

    @app.get("/api/v1/status", summary="rig, broker, disk and the acquiring session")
    async def status() -> dict[str, Any]:
        h = service.health()
        act = service.active()
        return {
            **h,
            "protocols": list(PROTOCOLS),
            "active": None if act is None else act.summary(),
            "hold_results": service.s.hold_results,
        }

    @app.get("/api/v1/worklist", summary="open orders (empty until a worklist is configured)")
    async def worklist() -> dict[str, Any]:
        if service.worklist is None:
            return {"configured": False, "orders": []}
        orders = await asyncio.to_thread(service.worklist)
        return {"configured": True, "orders": [o.to_dict() for o in orders]}

    # -- sessions ----------------------------------------------------------------------------
    def detail(sid: str) -> dict[str, Any]:
        e = service.get(sid)
        d = e.summary()
        d["result"] = e.result() if e.state == "done" else None
        d["report_url"] = f"/api/v1/sessions/{sid}/report" if e.state == "done" else None
        d["report_pdf_url"] = f"/api/v1/sessions/{sid}/report.pdf" if e.state == "done" else None
        d["comparisons"] = service.comparisons(sid) if e.state == "done" else []
        if e.live is not None:
            d["live"] = e.live.counters.to_dict()
            d["steps"] = e.live.steps.to_list()
        d["recording_finalised"] = e.live is None or e.live.finalised.is_set()
        d["result_ready_t"] = e.result_ready_t
        d["stopped_t"] = e.stopped_t
        return d

    @app.post("/api/v1/sessions", status_code=201, summary="start a session (one at a time)")
    async def start(req: StartRequest) -> dict[str, Any]:
        sid = await asyncio.to_thread(
            service.start, req.side, req.protocol, req.accession_number, req.patient_id
        )
        return {"id": sid, "state": "acquiring", "url": f"/api/v1/sessions/{sid}"}

    @app.get("/api/v1/sessions", summary="all sessions, newest first")
    async def sessions() -> dict[str, Any]:
        return {"sessions": [e.summary() for e in service.sessions()]}

    @app.get("/api/v1/sessions/{sid}", summary="state, result (when done), report URL")
    async def get_session(sid: str) -> dict[str, Any]:
        return await asyncio.to_thread(detail, sid)

    @app.post("/api/v1/sessions/{sid}/stop", summary="stop acquiring; the analysis follows")
    async def stop(sid: str) -> dict[str, Any]:
        e = service.stop(sid)
        return {"id": e.id, "state": e.state}

    @app.post("/api/v1/sessions/{sid}/publish", summary="publish the result over MQTT")
    async def publish(sid: str) -> dict[str, Any]:
        e = await asyncio.to_thread(service.publish, sid)
        return {"id": e.id, "published": e.published}

    @app.patch("/api/v1/sessions/{sid}", summary="relabel side or order before publishing")
    async def relabel(sid: str, req: RelabelRequest) -> dict[str, Any]:
        await asyncio.to_thread(
            service.relabel, sid, req.side, req.accession_number, req.patient_id
        )
        return await asyncio.to_thread(detail, sid)

    @app.delete("/api/v1/sessions/{sid}", status_code=204, summary="discard before publishing")
    async def discard(sid: str) -> Response:
        await asyncio.to_thread(service.discard, sid)
        return Response(status_code=204)

    @app.get("/api/v1/sessions/{sid}/trace", summary="live gliding trace so far [[IR deg, mm]]")
    async def trace(sid: str) -> dict[str, Any]:
        e = service.get(sid)
        pts = e.live.trace() if e.live is not None else []
        return {"points": [[round(a, 2), round(b, 3)] for a, b in pts]}

    @app.get("/api/v1/sessions/{sid}/comparisons", summary="contralateral and follow-up")
    async def comparisons(sid: str) -> dict[str, Any]:
        return {"comparisons": await asyncio.to_thread(service.comparisons, sid)}

    def _done_path(sid: str, name: str) -> Path:
        e = service.get(sid)
        p = e.path / name
        if e.state != "done" or not p.exists():
            raise HTTPException(404, f"session {sid} has no {name} (state {e.state})")
        return p

    @app.get("/api/v1/sessions/{sid}/report", summary="printable HTML report")
    async def report(sid: str) -> FileResponse:
        return FileResponse(_done_path(sid, "report.html"), media_type="text/html")

    @app.get("/api/v1/sessions/{sid}/report.pdf", summary="PDF report")
    async def report_pdf(sid: str) -> Response:
        from edge_service.workstation.pdf import render_pdf

        e = service.get(sid)
        _done_path(sid, "result.json")
        pdf = await asyncio.to_thread(render_pdf, e, service.comparisons(sid))
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="dgs-report-{sid}.pdf"'},
        )

    # -- live stream -------------------------------------------------------------------------
    @app.websocket("/api/v1/live")
    async def live(ws: WebSocket) -> None:
        """Text messages: JSON events {"type": "overlay"|"state"|"session"|"status", ...};
        binary messages: the live image (uint32 frame index, float64 time, then JPEG)."""
        if not same_origin(ws.headers) or not authorised(ws.headers, ws.cookies, ws.query_params):
            await ws.close(code=4401)
            return
        await ws.accept()
        loop = asyncio.get_running_loop()
        # (priority, sequence, message): an alarm (priority 0) goes out before every queued
        # image and overlay, so it never waits behind a JPEG; in order among themselves.
        q: asyncio.PriorityQueue[tuple[int, int, Any]] = asyncio.PriorityQueue(maxsize=64)
        seq = itertools.count()
        want_frames = ws.query_params.get("frames", "1") != "0"

        def put(item: Any) -> None:
            if q.full():  # a slow viewer skips old events instead of growing a backlog
                # ... but never an alarm (injection guidance): drop the oldest other event
                held = []
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        held.append(q.get_nowait())
                drop = next((i for i, m in enumerate(held) if m[0] > 0), 0)
                del held[drop]
                for m in held:
                    q.put_nowait(m)
            q.put_nowait((0 if _is_alarm(item) else 1, next(seq), item))

        def on_event(kind: str, payload: dict[str, Any]) -> None:
            if kind == "frame":
                fanout.offer(payload["frame"])
                return
            msg = json.dumps({"type": kind, **payload}, default=float)
            loop.call_soon_threadsafe(put, msg)

        def on_jpeg(msg: bytes) -> None:
            loop.call_soon_threadsafe(put, msg)

        service.subscribe(on_event, frames=want_frames)
        if want_frames:
            fanout.add(on_jpeg)

        async def status_pump() -> None:
            while True:
                h = await asyncio.to_thread(service.health)
                put(json.dumps({"type": "status", **h}, default=float))
                await asyncio.sleep(1.0)

        async def reader() -> None:
            while True:
                await ws.receive_text()  # the page sends nothing; this notices a close

        pump = asyncio.create_task(status_pump())
        rd = asyncio.create_task(reader())
        try:
            while True:
                get = asyncio.create_task(q.get())
                done, _ = await asyncio.wait({get, rd}, return_when=asyncio.FIRST_COMPLETED)
                if rd in done:
                    get.cancel()
                    break
                item = get.result()[2]
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_text(item)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the browser went away; the session goes on
        finally:
            pump.cancel()
            rd.cancel()
            service.unsubscribe(on_event, frames=want_frames)
            fanout.remove(on_jpeg)

    return app
