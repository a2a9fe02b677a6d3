"""Durable store-and-forward of DICOM files to PACS destinations (SQLite, WAL, FULL sync).

One row per (destination, SOP instance): enqueueing the same instance twice is a no-op, so a
re-run never files a second copy as something new. A row is marked sent only after the
destination confirmed it (C-STORE success/warning status, STOW-RS 200/202 without failures);
a transient failure is retried with exponential back-off; a permanent refusal parks the row
with the reason (shown in status/health; `retry_parked()` requeues after a fix). Rows are
never deleted, so what was sent where stays auditable. The same queue carries the FHIR
bundles (edge_service/integration/delivery.py: one row per destination x result version,
an older version still unsent is marked `superseded` so it never overwrites a newer one)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edge_service.dicomnet.send import PermanentSendError, SendError, send_file
from edge_service.dicomnet.settings import DicomSettings
from edge_service.errors import DgsError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    created REAL NOT NULL,
    done_t REAL,
    UNIQUE (destination, sop_uid)
);
"""

Sender = Callable[[str, Path], str]


class QueueSettings(Protocol):
    """What the queue reads of its settings ([dicom] or [fhir])."""

    @property
    def destinations(self) -> list[str]: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def retry_min_s(self) -> float: ...
    @property
    def retry_max_s(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...


class ForwardQueueError(DgsError):
    """The forward queue file cannot be opened or written."""


@dataclass(frozen=True)
class Item:
    id: int
    destination: str
    sop_uid: str
    kind: str
    path: Path
    session_id: str
    attempts: int


class ForwardQueue:
    def __init__(self, path: Path | str, settings: DicomSettings | QueueSettings,
                 sender: Sender | None = None) -> None:  # fmt: skip
        self.path = Path(path)
        self.s = settings
        if sender is None:
            if not isinstance(settings, DicomSettings):
                raise TypeError("a queue for something other than DICOM needs its sender")
            dicom = settings
            sender = lambda dest, p: send_file(  # noqa: E731
                dest, p, calling_aet=dicom.calling_aet, timeout_s=dicom.timeout_s)  # fmt: skip
        self._send = sender
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None, timeout=10)  # fmt: skip
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ForwardQueueError(f"cannot open forward queue {self.path}: {exc}") from exc

    def enqueue(self, session_id: str, kind: str, sop_uid: str, path: Path,
                destinations: list[str] | None = None) -> int:  # fmt: skip
        """Queue one instance for every destination; returns how many rows were new."""
        dests = self.s.destinations if destinations is None else destinations
        n = 0
        with self._lock:
            for d in dests:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO items (destination, sop_uid, kind, path, session_id,"
                    " created) VALUES (?, ?, ?, ?, ?, ?)",
                    (d, sop_uid, kind, str(Path(path).resolve()), session_id, time.time()),
                )
                n += cur.rowcount
        self._wake.set()
        return n

    def _due(self, now: float) -> list[Item]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, destination, sop_uid, kind, path, session_id, attempts FROM items"
                " WHERE state = 'pending' AND next_try <= ? ORDER BY id",
                (now,),
            ).fetchall()
        return [Item(r[0], r[1], r[2], r[3], Path(r[4]), r[5], r[6]) for r in rows]

    def _backoff(self, attempts: int) -> float:
        return float(min(self.s.retry_max_s, self.s.retry_min_s * 2 ** max(attempts - 1, 0)))

    def process_due(self, now: float | None = None) -> int:
        """Try every due item once (in insertion order); returns how many were confirmed."""
        ok = 0
        # A destination that just failed transiently is not tried again in this round.
        down: set[str] = set()
        for it in self._due(time.time() if now is None else now):
            if it.destination in down:
                continue
            try:
                note = self._send(it.destination, it.path)
            except PermanentSendError as exc:
                self._update(it, "parked", str(exc), 0)
                log.error(
                    "forward %s %s -> %s parked: %s", it.kind, it.sop_uid, it.destination, exc
                )
                continue
            except (SendError, OSError) as exc:
                down.add(it.destination)
                park = self.s.max_attempts and it.attempts + 1 >= self.s.max_attempts
                self._update(it, "parked" if park else "pending", str(exc),
                             self._backoff(it.attempts + 1))  # fmt: skip
                log.warning("forward %s -> %s failed (attempt %d): %s", it.kind,
                            it.destination, it.attempts + 1, exc)  # fmt: skip
                continue
            self._update(it, "sent", None, 0, note=note)
            ok += 1
        return ok

    def _update(self, it: Item, state: str, error: str | None, delay_s: float,
                note: str | None = None) -> None:  # fmt: skip
        now = time.time()
        with self._lock:
            self._db.execute(
                "UPDATE items SET state = ?, attempts = attempts + 1, last_error = ?,"
                " next_try = ?, done_t = ? WHERE id = ?",
                (state, error if error else note, now + delay_s,
                 now if state == "sent" else None, it.id),
            )  # fmt: skip

    def supersede(self, session_id: str, kind: str, keep_uid: str) -> int:
        """Mark this session's unsent `kind` rows other than `keep_uid` as superseded (a
        newer version replaces them; sending the old one after it would undo the fix)."""
        with self._lock:
            n = self._db.execute(
                "UPDATE items SET state = 'superseded', last_error = ? WHERE session_id = ?"
                " AND kind = ? AND sop_uid != ? AND state IN ('pending', 'parked')",
                (f"superseded by {keep_uid}", session_id, kind, keep_uid),
            ).rowcount
        return int(n)

    def retry_parked(self) -> int:
        with self._lock:
            n = self._db.execute(
                "UPDATE items SET state = 'pending', next_try = 0 WHERE state = 'parked'"
            ).rowcount
        self._wake.set()
        return int(n)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per destination: counts by state, the last error and when the last send succeeded."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for dest, state, n in self._db.execute(
                "SELECT destination, state, COUNT(*) FROM items GROUP BY destination, state"
            ):
                d = out.setdefault(dest, {"pending": 0, "sent": 0, "parked": 0, "superseded": 0,
                                          "last_error": None, "last_sent_t": None})  # fmt: skip
                d[state] = n
            for dest, err in self._db.execute(
                "SELECT destination, last_error FROM items WHERE state IN ('pending', 'parked')"
                " AND last_error IS NOT NULL ORDER BY id"
            ):
                out[dest]["last_error"] = err
            for dest, t in self._db.execute(
                "SELECT destination, MAX(done_t) FROM items WHERE state = 'sent' GROUP BY destination"
            ):
                out[dest]["last_sent_t"] = t
        return out

    def items(self, session_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT destination, sop_uid, kind, state, attempts, last_error FROM items"
        args: tuple[Any, ...] = ()
        if session_id is not None:
            q += " WHERE session_id = ?"
            args = (session_id,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY id", args).fetchall()
        keys = ("destination", "sop_uid", "kind", "state", "attempts", "last_error")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def drain(self, timeout_s: float) -> bool:
        """Process until nothing is pending or the deadline; True when all are sent/parked."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.process_due()
            with self._lock:
                left = self._db.execute(
                    "SELECT MIN(next_try), COUNT(*) FROM items WHERE state = 'pending'"
                ).fetchone()
            if not left[1]:
                return True
            wait = min(max(left[0] - time.time(), 0.05), deadline - time.monotonic())
            if wait <= 0:
                return False
            time.sleep(min(wait, 0.5))

    def start(self) -> None:
        """Background sender; `enqueue` wakes it, otherwise it polls every second."""

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.process_due()
                except sqlite3.Error as exc:
                    log.error("forward queue: %s", exc)
                self._wake.wait(1.0)
                self._wake.clear()

        self._thread = threading.Thread(target=run, name="dicom-forward", daemon=True)
        self._thread.start()

    def close(self, flush: bool = False) -> None:
        """Stop the sender; flush=True first tries every due item once more (bounded by the
        send timeouts), so a short-lived process still sends what it just queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.s.timeout_s + 5)
        if flush and (self._thread is None or not self._thread.is_alive()):
            try:
                self.process_due()
            except sqlite3.Error as exc:
                log.error("forward queue: %s", exc)
        with self._lock:
            self._db.close()
