"""Every session reaches an end: find unfinished sessions, finish and deliver them once.

A session directory moves through these stages; each is visible on disk, so a process
killed at any instant leaves a state the next start can pick up:

    recording   session.json complete=false + frames.raw journal   -> repair (cine from journal)
    recorded    cine.dcm, no result.json                           -> analyse
    analysed    result.json, no delivery.json                      -> publish (queue in outbox)
    queued      delivery.json, outbox still holds its messages     -> the publisher sends them
    delivered   delivery.json, nothing of it left in the outbox    (retention may delete it)
    parked      parked.json (cannot be finished: no frames, no calibration, corrupt)

Publishing re-queues every message of the session with a message id derived from
site/device/session (events too), so a session published twice (killed between the outbox
commit and delivery.json) is the same messages twice: consumers de-duplicate by msg_id and
see each session's result exactly once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edge_service.errors import DgsError, InputError
from edge_service.recording.meta import SessionMeta, read_meta, write_json_atomic

log = logging.getLogger(__name__)

DELIVERY = "delivery.json"
PARKED = "parked.json"
RESULT = "result.json"
SESSION_JSON = "session.json"


class EventPublisher(Protocol):
    def event(
        self, session_id: str, kind: str, data: Any = None, key: str | None = None
    ) -> str: ...
    def result(self, session_id: str, result_doc: Any) -> str: ...


class OutboxLike(Protocol):
    def pending_sessions(self) -> set[str]: ...


def publish_session(
    publisher: EventPublisher, meta: SessionMeta, result: Mapping[str, Any], out_dir: Path
) -> list[str]:
    """Queue every message of a finished session (stable ids) and mark it queued."""
    from edge_service.integration.hook import before_publish

    # Hospital: SR/PDF/FHIR written and queued first, so the result carries order + UIDs.
    result = before_publish(out_dir, result)
    sid = meta.session_id
    ids = [publisher.event(sid, "started", {"side": meta.side, "protocol": meta.protocol}, "")]
    for i, m in enumerate(result.get("maneuvers", []) or []):
        ids.append(publisher.event(sid, "manoeuvre", m, str(i)))
    ids.append(publisher.result(sid, result))
    ids.append(
        publisher.event(
            sid, "ended", {"frames": meta.n_frames or 0, "imu_samples": meta.n_imu or 0}, ""
        )
    )
    # After the outbox commit: a kill before this line only means the same messages again.
    write_json_atomic(out_dir / DELIVERY, {"queued_t": time.time(), "msg_ids": ids})
    return ids


def park(path: Path, reason: str, publisher: EventPublisher | None = None) -> bool:
    """Give up on a session that cannot be finished, saying why (kept for an operator).

    With a publisher, consumers are told too (they saw `started` and would otherwise wait
    for a result forever): its result if one exists and can be sent, then a `parked` event
    with the reason, both with stable ids. Returns False when that could not be queued (disk
    full): the session is then left unparked, so the next recovery parks it again."""
    from edge_service.mqtt.outbox import OutboxError

    # Consumers get the reason without the local recordings path (only the folder name).
    reason = reason.replace(f"{path.parent}{os.sep}", "")
    log.error("session %s parked: %s", path.name, reason)
    event_id = None
    if publisher is not None:
        try:
            event_id = _announce_parked(path, reason, publisher)
        except (OSError, OutboxError) as exc:
            log.error("session %s: cannot queue its parked event yet: %s", path.name, exc)
            return False
    try:
        write_json_atomic(
            path / PARKED, {"parked_t": time.time(), "reason": reason, "event_msg_id": event_id}
        )
    except OSError as exc:
        log.error("cannot write %s: %s", path / PARKED, exc.strerror)
    return True


def _announce_parked(path: Path, reason: str, publisher: EventPublisher) -> str | None:
    import json

    try:
        meta = read_meta(path / SESSION_JSON)
    except InputError as exc:  # no session id to publish under
        log.error("session %s: no parked event (%s)", path.name, exc)
        return None
    data: dict[str, Any] = {"reason": reason[:500], "result_msg_id": None}
    try:
        result = json.loads((path / RESULT).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        result = None
    if isinstance(result, dict):
        from edge_service.mqtt.outbox import OutboxError

        try:
            data["result_msg_id"] = publisher.result(meta.session_id, result)
        except OutboxError:
            raise  # disk full: retried by the next recovery
        except DgsError as exc:  # the result itself may be what cannot be sent
            data["result_error"] = str(exc)[:500]
    return publisher.event(meta.session_id, "parked", data, "")


def stage(path: Path, pending: set[str] | None = None) -> str:
    """The stage of one session directory (see the module docstring)."""
    if (path / PARKED).exists():
        return "parked"
    if (path / DELIVERY).exists():
        if pending is None:
            return "queued"
        try:
            sid = read_meta(path / SESSION_JSON).session_id
        except InputError:
            return "queued"
        return "queued" if sid in pending else "delivered"
    if (path / RESULT).exists():
        return "analysed"
    if (path / "cine.dcm").exists():
        return "recorded"
    return "recording"


def is_session_dir(path: Path) -> bool:
    return path.is_dir() and (path / SESSION_JSON).is_file()


class SessionIndex:
    """Session directories outside a recordings_dir (the demo's --out folders) that are not
    delivered yet: one small file per session under STATE/sessions/, naming its folder."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "sessions"

    def add(self, session_id: str, path: Path) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.dir / f".{session_id}.tmp"
        tmp.write_text(str(path.resolve()) + "\n")
        os.replace(tmp, self.dir / session_id)

    def remove(self, session_id: str) -> None:
        (self.dir / session_id).unlink(missing_ok=True)

    def entries(self) -> dict[str, Path]:
        if not self.dir.is_dir():
            return {}
        out: dict[str, Path] = {}
        for f in sorted(self.dir.iterdir()):
            if f.name.startswith("."):
                continue
            try:
                out[f.name] = Path(f.read_text().strip())
            except (OSError, UnicodeDecodeError):
                continue
        return out


class StateLock:
    """One process per state directory: two would finish the same session twice at once."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class RecoveryReport:
    published: list[str] = field(default_factory=list)  # session dir names queued now
    parked: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # name -> why (e.g. disk full)
    held: list[str] = field(default_factory=list)  # analysed, waiting for the clinician
    delivered: int = 0

    def summary(self) -> str:
        parts = [f"{len(self.published)} finished and queued"]
        if self.parked:
            parts.append(f"{len(self.parked)} parked")
        if self.waiting:
            parts.append(f"{len(self.waiting)} waiting")
        if self.held:
            parts.append(f"{len(self.held)} analysed and held for review")
        return ", ".join(parts)


Analyzer = Callable[[Path, Any], dict[str, Any]]


def finish_session(
    path: Path,
    *,
    detector: Any,
    publisher: EventPublisher,
    analyze: Analyzer | None = None,
    queue: bool = True,
) -> dict[str, Any]:
    """Repair, analyse and queue one unfinished session; returns its result.

    queue=False stops after the analysis: the workstation holds results until the clinician
    publishes them (a wrong side or order must be fixable first), also after a crash.

    Raises InputError when the session cannot be finished (the caller parks it) and
    OSError when the environment is the problem (disk full: retried later).
    """
    import json

    from edge_service.recording import open_recording

    (path / "cine.frags").unlink(missing_ok=True)  # a killed writer's partial encoding
    rec = open_recording(path)
    if not rec.complete:
        if not rec.recovered:
            raise InputError("no frame was recorded")
        log.warning("session %s: repairing (%d frames from the journal)", path.name, rec.n_frames)
        rec.repair()
    meta = rec.meta
    result_path = path / RESULT
    if result_path.exists():
        try:
            result: dict[str, Any] = json.loads(result_path.read_text())
        except (ValueError, UnicodeDecodeError):
            log.warning("session %s: unreadable result.json; analysing again", path.name)
            result_path.unlink()
    if not result_path.exists():
        log.warning("session %s: analysing (%d frames)", path.name, rec.n_frames)
        if analyze is None:
            from edge_service.analysis.session import analyze_session

            result = analyze_session(path, detector=detector)
        else:
            result = analyze(path, detector)
    if queue:
        publish_session(publisher, meta, result, path)
    return result


def recover(
    paths: Iterable[Path],
    *,
    detector: Any,
    publisher: EventPublisher,
    pending: set[str],
    analyze: Analyzer | None = None,
    on_delivered: Callable[[Path], None] | None = None,
    hold: Callable[[Path], bool] | None = None,
) -> RecoveryReport:
    """Finish every session in `paths` that is not queued/delivered/parked yet.

    hold(path) True: repair and analyse only, never queue (the workstation's held results)."""
    report = RecoveryReport()
    for path in paths:
        if not is_session_dir(path):
            continue
        st = stage(path, pending)
        if st == "delivered":
            report.delivered += 1
            if on_delivered is not None:
                on_delivered(path)
            continue
        if st in ("queued", "parked"):
            continue
        held = hold is not None and hold(path)
        if held and st == "analysed":
            report.held.append(path.name)
            continue
        try:
            finish_session(
                path, detector=detector, publisher=publisher, analyze=analyze, queue=not held
            )
        except OSError as exc:
            why = exc.strerror or str(exc)
            log.error("session %s cannot be finished yet: %s", path.name, why)
            report.waiting[path.name] = why
            continue
        except DgsError as exc:
            if _environmental(exc):
                log.error("session %s cannot be finished yet: %s", path.name, exc)
                report.waiting[path.name] = str(exc)
                continue
            why = str(exc)
        except Exception as exc:  # a bug must not stop the other sessions being delivered
            why = f"{type(exc).__name__}: {exc}"
        else:
            (report.held if held else report.published).append(path.name)
            continue
        if park(path, why, publisher):
            report.parked.append(path.name)
        else:
            report.waiting[path.name] = "parked, but its parked event cannot be queued yet"
    return report


def _environmental(exc: BaseException) -> bool:
    """An error caused by the machine (disk full, I/O) rather than the session itself."""
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError)


def session_dirs(recordings_dir: Path) -> list[Path]:
    """Session folders under a recordings dir, oldest first (by name: they start with a
    timestamp, then by mtime)."""
    if not recordings_dir.is_dir():
        return []
    dirs = [p for p in recordings_dir.iterdir() if is_session_dir(p)]
    return sorted(dirs, key=lambda p: (_started(p), p.name))


def _started(path: Path) -> float:
    try:
        return float(read_meta(path / SESSION_JSON).started_t)
    except (InputError, ValueError):
        return path.stat().st_mtime
