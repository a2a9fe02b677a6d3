"""Durable store-and-forward for QoS 1 messages.

paho keeps unacknowledged messages in memory only, so a broker outage that outlasts the
process, a crash or a power cut would lose results. Every event/result is first committed to
this SQLite (WAL) file, published afterwards, and deleted only when the broker's PUBACK
arrives. On start everything still in the file is sent again in insertion order (at-least-
once; consumers de-duplicate by message id). The per-device sequence number lives in the
same transaction as the row, so it stays monotonic across restarts.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_service.errors import DgsError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    schema TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    rejected TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OutboxFull(DgsError):
    """The outbox reached its bound: the message was NOT stored (nothing is overwritten)."""


class OutboxError(DgsError):
    """The outbox file cannot be opened or written."""


@dataclass(frozen=True)
class Entry:
    seq: int
    msg_id: str
    topic: str
    payload: bytes
    schema: str


# Builds (msg_id, topic, payload, schema) once the sequence number is known.
Builder = Callable[[int], tuple[str, str, bytes, str]]


class Outbox:
    def __init__(self, path: Path | str, max_messages: int = 100_000, fsync: bool = True) -> None:
        self.path = Path(path)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._acks: list[int] = []
        self._last_flush = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # Results are health data: owner-only, whatever the process umask is.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            # One connection shared by the caller thread and paho's network thread.
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL syncs the WAL on every commit: a PUBACK-less message survives power loss.
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc

    def append(self, build: Builder) -> Entry | None:
        """Store one message. Returns None when a message with the same id is already
        pending (idempotent re-publish). Raises OutboxFull when the bound is reached."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
                    count -= len(self._acks)  # acknowledged, delete still batched
                    if count >= self.max_messages:
                        raise OutboxFull(
                            f"outbox {self.path} is full ({count} messages unacknowledged); "
                            "message refused — restore the broker link"
                        )
                    row = self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
                    seq = (row[0] if row else 0) + 1
                    msg_id, topic, payload, schema = build(seq)
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO outbox(seq,msg_id,topic,payload,schema,created)"
                        " VALUES (?,?,?,?,?,?)",
                        (seq, msg_id, topic, payload, schema, time.time()),
                    )
                    if cur.rowcount == 0:
                        self._db.execute("ROLLBACK")
                        return None
                    self._db.execute(
                        "INSERT INTO meta(key,value) VALUES('seq',?)"
                        " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (seq,),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc
        return Entry(seq, msg_id, topic, payload, schema)

    def ack(self, seq: int) -> None:
        """Forget an acknowledged message. Deletes are batched (one synced transaction per
        64 acks or 50 ms): losing a batch in a crash only means duplicates on restart, which
        consumers already drop by message id, while a synced delete per PUBACK would cap
        the drain rate at the disk's fsync rate."""
        with self._lock:
            self._acks.append(seq)
            if len(self._acks) >= 64 or time.monotonic() - self._last_flush > 0.05:
                self._flush_acks()

    def _flush_acks(self) -> None:  # caller holds the lock
        if self._acks:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM outbox WHERE seq=?", [(s,) for s in self._acks])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                # Disk full or I/O error: the acks stay in memory and are retried on the next
                # flush; if the process dies first they are only re-sent (same msg_id).
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                log.warning("outbox %s: cannot record %d acks yet: %s", self.path,
                            len(self._acks), exc)  # fmt: skip
                self._last_flush = time.monotonic()
                return
            self._acks.clear()
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        with self._lock:
            self._flush_acks()

    def mark_rejected(self, seq: int, reason: str) -> None:
        """The broker refused it (e.g. ACL): keep it for an operator, never drop it."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET rejected=?, attempts=attempts+1 WHERE seq=?", (reason, seq)
            )

    def pending(self) -> list[Entry]:
        with self._lock:
            self._flush_acks()
            rows = self._db.execute(
                "SELECT seq,msg_id,topic,payload,schema FROM outbox ORDER BY seq"
            ).fetchall()
        return [Entry(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    def count(self) -> int:
        with self._lock:
            self._flush_acks()
            (n,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            if self._acks:  # acks not yet written (disk full): already delivered
                n -= len(self._acks)
        return int(n)

    def rejected_count(self) -> int:
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE rejected IS NOT NULL"
            ).fetchone()
        return int(n)

    def pending_sessions(self) -> set[str]:
        """Session ids that still have a message waiting for its PUBACK (any kind)."""
        with self._lock:
            self._flush_acks()
            rows = self._db.execute("SELECT topic FROM outbox").fetchall()
        out: set[str] = set()
        for (topic,) in rows:
            parts = str(topic).split("/")
            # dgs/v1/{site}/{device}/sessions/{sid}/{leaf}
            if len(parts) == 7 and parts[4] == "sessions":
                out.add(parts[5])
        return out

    def next_counter(self, key: str) -> int:
        """Increment and return a persistent counter (e.g. the status birth id, `bdSeq`)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
                value = (row[0] if row else 0) + 1
                self._db.execute(
                    "INSERT INTO meta(key,value) VALUES(?,?)"
                    " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, value),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc
        return int(value)

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            try:
                self._flush_acks()
            finally:
                self._db.close()
