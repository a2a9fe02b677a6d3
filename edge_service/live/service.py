"""The live session service: the one layer the web workstation, the API and the CLI drive.

It owns the rig (probe + clip), the detector and the session registry. One session acquires
at a time (one probe); analysed sessions stay in the registry, which is rebuilt from the
recordings folder at start, so the session list survives a restart. Orders (accession
number, patient id) and the side travel with the session in `session.json`; comparisons are
only ever made between sessions of one patient (contralateral: same order, other side;
follow-up: same patient and side, earlier visit).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_service.analysis.settings import AnalysisSettings
from edge_service.errors import DgsError, InputError
from edge_service.live.registry import Conflict, NotFound, Order, SessionEntry, comparisons_for
from edge_service.live.rig import Rig
from edge_service.live.session import LiveSession
from edge_service.procedure.settings import ProcedureSettings
from edge_service.recording import SessionMeta

log = logging.getLogger(__name__)

PROTOCOLS = ("exam", "fair", "piriformis", "neutral", "injection")


@dataclass
class ServiceSettings:
    recordings_dir: Path
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    hold_results: bool = True  # results wait for "publish" so a wrong label can be fixed
    max_duration_s: float | None = 600.0
    min_free_disk_mb: float = 500.0
    clip_grace_s: float = 1.0
    procedure: ProcedureSettings = field(default_factory=ProcedureSettings)


class LiveService:
    """Start/stop/discard/relabel/publish sessions; fan live events out to subscribers."""

    def __init__(
        self,
        rig: Rig,
        detector: Any,
        settings: ServiceSettings,
        publisher: Any = None,
        worklist: Callable[[], list[Order]] | None = None,
        locator_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.rig = rig
        # The needle locator of protocol "injection" (one per session: it keeps a short
        # history); None = injection guidance is not available on this appliance.
        self.locator_factory = locator_factory
        self._alarm_pub: Any = None
        # The hook for a modality worklist: a callable returning today's open orders.
        # None = orders are typed in on the page.
        self.worklist = worklist
        self.detector = detector
        self.s = settings
        self.publisher = publisher
        self._lock = threading.RLock()
        self._sessions: dict[str, SessionEntry] = {}
        self._subs: list[Callable[[str, dict[str, Any]], None]] = []
        self._frame_viewers = 0
        self.totals = {
            "frames_acquired": 0,
            "frames_detected": 0,
            "dropped_for_detection": 0,
            "dropped_by_source": 0,
            "frozen_frames": 0,
            "sessions_done": 0,
            "sessions_failed": 0,
        }
        self.s.recordings_dir.mkdir(parents=True, exist_ok=True)
        self._load_existing()

    # -- registry -------------------------------------------------------------------------
    def _load_existing(self) -> None:
        for sj in sorted(self.s.recordings_dir.glob("*/session.json")):
            try:
                d = json.loads(sj.read_text(encoding="utf-8"))
                meta = SessionMeta.from_dict(d)
            except (OSError, ValueError, DgsError) as exc:
                log.warning("skipping an unreadable session folder: %s", exc)
                continue
            ws = meta.extra.get("workstation") or {}
            if not ws:
                continue  # a session not made by the workstation (e.g. `dgs-edge run` timer)
            done = (sj.parent / "result.json").exists()
            e = SessionEntry(
                id=meta.session_id,
                side=meta.side,
                protocol=meta.protocol,
                order=Order(str(ws.get("accession_number", "")), str(meta.patient_id)),
                started_t=meta.started_t,
                path=sj.parent,
                state="done" if done else "failed",
                error=None if done else "interrupted before analysis (run dgs-edge recover)",
                published=bool(ws.get("published", False)),
                ended_reason=meta.extra.get("ended_reason"),
            )
            self._sessions[e.id] = e

    def _get(self, sid: str) -> SessionEntry:
        e = self._sessions.get(sid)
        if e is None:
            raise NotFound(f"no session {sid!r}")
        return e

    def get(self, sid: str) -> SessionEntry:
        with self._lock:
            return self._get(sid)

    def sessions(self) -> list[SessionEntry]:
        with self._lock:
            return sorted(self._sessions.values(), key=lambda e: e.started_t, reverse=True)

    def active(self) -> SessionEntry | None:
        with self._lock:
            return next((e for e in self._sessions.values() if e.state == "acquiring"), None)

    # -- control --------------------------------------------------------------------------
    def start(self, side: str, protocol: str, accession_number: str, patient_id: str) -> str:
        if side not in ("left", "right"):
            raise InputError(f"side must be 'left' or 'right', got {side!r}")
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if not accession_number.strip() or not patient_id.strip():
            raise InputError("an order needs an accession number and a patient id")
        if protocol == "injection" and self.locator_factory is None:
            raise InputError("injection guidance needs a needle locator; none is configured")
        free = self.disk_free_mb()
        if free is not None and free < self.s.min_free_disk_mb:
            raise Conflict(
                f"only {free:.0f} MB free on the recordings disk (< {self.s.min_free_disk_mb:g})"
            )
        with self._lock:
            act = self.active()
            if act is not None:
                raise Conflict(f"session {act.id} is still acquiring; stop it first")
            inputs = self.rig.open(side, protocol)
            meta = SessionMeta(
                side=side,
                protocol=protocol,
                probe=inputs.probe,
                clip=inputs.clip,
                fps_hz=inputs.fps_hz,
                source=inputs.source,
                patient_id=patient_id.strip(),
                extra={
                    "workstation": {
                        "accession_number": accession_number.strip(),
                        "published": False,
                    }
                },
            )
            # Hospital integration hook (edge_service/integration/workstation.py): the
            # chosen order's identity and UIDs go into the recording's DICOM.
            attach = getattr(self, "attach_order", None)
            if attach is not None:
                attach(meta, accession_number.strip(), patient_id.strip())
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = self.s.recordings_dir / f"{stamp}-{meta.session_id}"
            kw: dict[str, Any] = {
                "settings": self.s.analysis,
                "on_event": self._emit,
                "on_finished": self._finished,
                "want_frames": lambda: self._frame_viewers > 0,
                "clip_grace_s": self.s.clip_grace_s,
                "max_duration_s": self.s.max_duration_s,
            }
            if protocol == "injection":
                from edge_service.live.procedure import ProcedureSession

                assert self.locator_factory is not None
                live: LiveSession = ProcedureSession(
                    meta, out, inputs, self.detector, locator=self.locator_factory(),
                    procedure=self.s.procedure, **kw,
                )  # fmt: skip
            else:
                live = LiveSession(meta, out, inputs, self.detector, **kw)
            e = SessionEntry(
                id=meta.session_id,
                side=side,
                protocol=protocol,
                order=Order(accession_number.strip(), patient_id.strip()),
                started_t=meta.started_t,
                path=out,
                state="acquiring",
                live=live,
            )
            self._sessions[e.id] = e
        log.info("session %s started (%s side, %s)", e.id, side, protocol)
        if self.publisher is not None:
            self.publisher.event(e.id, "started", {"side": side, "protocol": protocol})
        live.start()
        return e.id

    def stop(self, sid: str) -> SessionEntry:
        with self._lock:
            e = self._get(sid)
            if e.state != "acquiring" or e.live is None:
                raise Conflict(f"session {sid} is {e.state}, not acquiring")
            e.live.stop()
            e.stopped_t = e.live.stopped_t
            # Acquisition ends with the frame in hand; the analysis follows (same request
            # answered consistently whatever the thread timing).
            e.state = "analysing"
        return e

    def wait(self, sid: str, timeout_s: float) -> SessionEntry:
        """Until the session is done or failed (or the timeout); returns its entry."""
        e = self.get(sid)
        if e.live is not None:
            e.live.join(timeout_s)
        return e

    def _finished(self, live: LiveSession) -> None:
        with self._lock:
            e = self._sessions.get(live.id)
            if e is None:
                return
            e.state = live.state
            e.error = live.error
            e.ended_reason = live.ended_reason
            e.result_ready_t = live.result_ready_t
            e.stopped_t = live.stopped_t
            e._result = live.result
            c = live.counters
            self.totals["frames_acquired"] += c.frames_acquired
            self.totals["frames_detected"] += c.frames_detected
            self.totals["dropped_for_detection"] += c.dropped_for_detection
            self.totals["dropped_by_source"] += c.dropped_by_source
            self.totals["frozen_frames"] += c.frozen_frames
            self.totals["sessions_done" if live.state == "done" else "sessions_failed"] += 1
        log.info("session %s %s", live.id, live.state)
        if live.state == "done" and e.protocol == "injection":
            from edge_service.live.procedure_hooks import attach_followup

            attach_followup(e, self.sessions())
        if live.state == "done" and not self.s.hold_results:
            try:
                self.publish(live.id)
            except DgsError as exc:
                log.warning("session %s: result not published: %s", live.id, exc)
        self._emit("session", {"id": live.id, "state": live.state, "error": live.error})

    def _wait_finalised(self, sid: str, timeout_s: float = 120.0) -> None:
        e = self.get(sid)
        if e.live is not None and not e.live.finalised.wait(timeout_s):
            raise Conflict(f"session {sid}: the recording is still being finalised")

    def discard(self, sid: str) -> None:
        """Remove a session recorded by mistake (wrong patient or side) before publishing."""
        self._wait_finalised(sid)
        with self._lock:
            e = self._get(sid)
            if e.state in ("acquiring", "analysing"):
                raise Conflict(f"session {sid} is {e.state}; stop it and wait for the analysis")
            if e.published:
                raise Conflict(f"session {sid} is already published; it cannot be discarded")
            del self._sessions[sid]
        trash = self.s.recordings_dir / ".discarded"
        trash.mkdir(exist_ok=True)
        if e.path.exists():
            # Moved aside, not deleted: a discard by mistake can still be undone by hand.
            shutil.move(str(e.path), str(trash / e.path.name))
        log.info("session %s discarded", sid)
        self._emit("session", {"id": sid, "state": "discarded"})

    def relabel(
        self,
        sid: str,
        side: str | None = None,
        accession_number: str | None = None,
        patient_id: str | None = None,
    ) -> SessionEntry:
        """Correct the side or order of an unpublished session (the result is rebuilt)."""
        from edge_service.analysis.report import write_report
        from edge_service.analysis.result import write_json_atomic
        from edge_service.recording.meta import read_meta

        if side is not None and side not in ("left", "right"):
            raise InputError(f"side must be 'left' or 'right', got {side!r}")
        self._wait_finalised(sid)
        with self._lock:
            e = self._get(sid)
            if e.state != "done" and e.state != "failed":
                raise Conflict(f"session {sid} is {e.state}; relabel it when it is analysed")
            if e.published:
                raise Conflict(f"session {sid} is already published; it cannot be relabelled")
            meta = read_meta(e.path / "session.json")
            if side is not None:
                meta.side = side
                e.side = side
            if patient_id is not None and patient_id.strip():
                meta.patient_id = patient_id.strip()
                e.order.patient_id = patient_id.strip()
            ws = dict(meta.extra.get("workstation") or {})
            if accession_number is not None and accession_number.strip():
                ws["accession_number"] = accession_number.strip()
                e.order.accession_number = accession_number.strip()
            ws["relabelled_t"] = time.time()
            meta.extra["workstation"] = ws
            write_json_atomic(e.path / "session.json", meta.to_dict())
            an = e.live.analyzer if e.live is not None else None
            if side is not None and e.protocol == "injection" and e.state == "done":
                res = e.result()
                if res is not None:  # image mm do not depend on the side: relabel only
                    res["side"] = side
                    write_json_atomic(e.path / "result.json", res)
                    e._result = res
            elif side is not None and an is not None and e.state == "done":
                # The side sets which image direction is lateral: rebuild the result.
                an.side, an.lat = side, (1.0 if side == "left" else -1.0)
                result = an.finish()
                old = e.result() or {}
                result.setdefault("data_quality", {}).update(
                    {
                        k: v
                        for k, v in (old.get("data_quality") or {}).items()
                        if k not in result["data_quality"]
                    }
                )
                write_json_atomic(e.path / "result.json", result)
                write_report(e.path / "report.html", result, an.key)
                e._result = result
            elif side is not None and e.state == "done":
                from edge_service.analysis.session import analyze_session

                e._result = analyze_session(e.path, detector=self.detector)
        self._emit("session", {"id": sid, "state": e.state, "relabelled": True})
        return e

    def publish(self, sid: str) -> SessionEntry:
        from edge_service.recording.meta import read_meta, write_json_atomic

        self._wait_finalised(sid)
        with self._lock:
            e = self._get(sid)
            if e.state != "done":
                raise Conflict(f"session {sid} is {e.state}; only analysed sessions are published")
            if e.published:
                return e
            result = e.result()
            # Hospital integration hook (edge_service/integration/workstation.py): SR + PDF
            # written and queued to PACS; MQTT gets the result as [dicom] allows.
            export = getattr(self, "export_result", None)
            if export is not None and result is not None:
                e._result, result = export(e.path)
            if self.publisher is not None and result is not None and e.protocol == "injection":
                self.publisher.procedure_result(sid, result)
                self.publisher.event(sid, "ended", {"frames": result["data_quality"].get("frames")})
            elif self.publisher is not None and result is not None:
                for m in result.get("maneuvers") or []:
                    self.publisher.event(sid, "manoeuvre", m)
                self.publisher.result(sid, result)
                self.publisher.event(sid, "ended", {"frames": result.get("data_quality", {}).get("n_frames")})  # fmt: skip
            e.published = True
            meta = read_meta(e.path / "session.json")
            ws = dict(meta.extra.get("workstation") or {})
            ws["published"] = True
            meta.extra["workstation"] = ws
            write_json_atomic(e.path / "session.json", meta.to_dict())
        self._emit("session", {"id": sid, "state": e.state, "published": True})
        return e

    # -- comparisons ----------------------------------------------------------------------
    def comparisons(self, sid: str) -> list[dict[str, Any]]:
        """Contralateral and follow-up comparisons of a done session (never across patients)."""
        with self._lock:
            e = self._get(sid)
            others = [o for o in self._sessions.values() if o.id != sid]
        if e.protocol == "injection":
            fu = (e.result() or {}).get("followup")
            return [] if not fu else [{"mode": "followup", "summary": [fu["note"]], **fu}]
        # an injection's result is not an exam result: exams compare with exams only
        return comparisons_for(e, [o for o in others if o.protocol != "injection"])

    # -- live events ----------------------------------------------------------------------
    def subscribe(self, fn: Callable[[str, dict[str, Any]], None], frames: bool = False) -> None:
        with self._lock:
            self._subs.append(fn)
            if frames:
                self._frame_viewers += 1

    def unsubscribe(self, fn: Callable[[str, dict[str, Any]], None], frames: bool = False) -> None:
        with self._lock:
            if fn in self._subs:
                self._subs.remove(fn)
                if frames:
                    self._frame_viewers = max(0, self._frame_viewers - 1)

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "state":
            with self._lock:
                e = self._sessions.get(payload["id"])
                final = e is None or e.state in ("done", "failed")
                # after stop() the entry says "analysing"; a late "acquiring" is stale
                stale = e is not None and e.state == "analysing" and payload["state"] == "acquiring"
                if e is not None and not final and not stale:
                    e.state = payload["state"]
        if kind == "overlay" and self.publisher is not None:
            self._mqtt_live(payload)
        if kind == "alarm" and self.publisher is not None:
            self._mqtt_alarm(payload)
        with self._lock:
            subs = list(self._subs)
        for fn in subs:
            try:
                fn(kind, payload)
            except Exception:  # a broken viewer must not stop the session
                log.exception("live subscriber failed")

    def _mqtt_alarm(self, p: dict[str, Any]) -> None:
        """Alarms go out as QoS 1 session events from their own thread: the durable outbox
        writes to disk, which the detection worker must not wait for."""
        from edge_service.live.procedure_hooks import AlarmPublisher

        if self._alarm_pub is None:
            self._alarm_pub = AlarmPublisher(self.publisher)
        self._alarm_pub.put(p)

    def _mqtt_live(self, p: dict[str, Any]) -> None:
        n = p.get("nerve") or {}
        m = {"t": round(p["t"], 6), "frame": p["frame"], "nerve_found": bool(n.get("found"))}
        for k in ("ap_mm", "width_mm", "csa_mm2", "confidence"):
            if n.get(k) is not None:
                m[f"nerve_{k}"] = n[k]
        m["calcification_present"] = bool((p.get("calcification") or {}).get("present"))
        try:
            self.publisher.live_measurements(m)
            a = p.get("angles")
            if a:
                self.publisher.live_angles(
                    {"t": round(p["t"], 6), "flexion_deg": a["flexion_deg"],
                     "adduction_deg": a["adduction_deg"], "rotation_deg": a["internal_rotation_deg"]}
                )  # fmt: skip
        except Exception as exc:  # live streams are best effort (QoS 0)
            log.debug("live MQTT publish failed: %s", exc)

    # -- health ---------------------------------------------------------------------------
    def disk_free_mb(self) -> float | None:
        try:
            return shutil.disk_usage(self.s.recordings_dir).free / 1e6
        except OSError:
            return None

    def health(self) -> dict[str, Any]:
        """{"status": ok|degraded|down, "checks": {...}}: down = no session can be recorded."""
        checks: dict[str, Any] = {}
        status = "ok"
        free = self.disk_free_mb()
        disk_ok = free is not None and free >= self.s.min_free_disk_mb
        checks["disk"] = {
            "ok": disk_ok,
            "free_mb": None if free is None else round(free, 1),
            "min_free_mb": self.s.min_free_disk_mb,
        }
        if not disk_ok:
            status = "down"
        rig = dict(self.rig.status())
        checks["probe"] = {"ok": True, "state": rig.get("probe")}
        clip_state = str(rig.get("clip"))
        clip_ok = bool(rig.get("clip_ok", False))
        checks["clip"] = {"ok": clip_ok, "state": clip_state}
        if not clip_ok and status == "ok":
            status = "degraded"
        checks["simulated"] = bool(rig.get("simulated", False))
        if self.publisher is not None:
            connected = _broker_connected(self.publisher)
            pending = self.outbox_pending()
            checks["broker"] = {"ok": connected, "outbox_pending": pending}
            if not connected and status == "ok":
                status = "degraded"  # results wait in the outbox; nothing is lost
        else:
            checks["broker"] = {"ok": True, "state": "not configured"}
        act = self.active()
        if act is not None and act.live is not None:
            checks["session"] = {"id": act.id, "state": act.state, **act.live.counters.to_dict()}
        return {"status": status, "checks": checks}

    def outbox_pending(self) -> int | None:
        pub = self.publisher
        if pub is None:
            return None
        fn = getattr(pub, "_pending_safe", None)
        try:
            return int(fn()) if fn is not None else None
        except Exception:
            return None

    def close(self) -> None:
        act = self.active()
        if act is not None and act.live is not None:
            act.live.stop("the service is stopping")
            act.live.join(30.0)
        if self._alarm_pub is not None:
            self._alarm_pub.close()
        self.rig.close()


def _broker_connected(pub: Any) -> bool:
    ev = getattr(pub, "_connected", None)  # the publisher's connection flag (an Event)
    if isinstance(ev, threading.Event):
        return ev.is_set()
    return bool(getattr(pub, "connected", False))
