"""The durable result registry of `dgs-edge subscribe --store URL`.

`sqlite:///PATH` for one machine; `postgresql://...` (psycopg) as the registry several
consumers share (e.g. a `--share` group). Every QoS 1 message is inserted once by `msg_id`
(idempotent: a redelivery or the other consumer's copy is a no-op and reported as a
duplicate); per session the row with the highest result version wins. Sequence gaps are
computed per device over everything the store holds, i.e. across the whole group, not over
what one consumer happened to receive."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from edge_service.errors import ConfigError, DgsError


class StoreError(DgsError):
    """The registry database cannot be opened or written."""


_TABLES = """
CREATE TABLE IF NOT EXISTS dgs_messages (
    msg_id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    session_id TEXT,
    kind TEXT NOT NULL,
    seq BIGINT NOT NULL,
    received_ts DOUBLE PRECISION NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dgs_sessions (
    device TEXT NOT NULL,
    session_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    msg_id TEXT NOT NULL,
    supersedes TEXT,
    updated_ts DOUBLE PRECISION NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (device, session_id)
);
"""
_INSERT_MSG = ("INSERT INTO dgs_messages (msg_id, device, session_id, kind, seq, received_ts, payload)"
               " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (msg_id) DO NOTHING")  # fmt: skip
_UPSERT_SESSION = (
    "INSERT INTO dgs_sessions (device, session_id, version, msg_id, supersedes, updated_ts, result)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (device, session_id) DO UPDATE SET"
    " version = excluded.version, msg_id = excluded.msg_id, supersedes = excluded.supersedes,"
    " updated_ts = excluded.updated_ts, result = excluded.result"
    " WHERE excluded.version > dgs_sessions.version"
)


class Store(Protocol):
    def add(self, device: str, kind: str, doc: Mapping[str, Any], received_ts: float) -> bool: ...
    def gaps(self) -> dict[str, list[tuple[int, int]]]: ...
    def sessions(self) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class _SqlStore:
    placeholder = "?"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def add(self, device: str, kind: str, doc: Mapping[str, Any], received_ts: float) -> bool:
        """Store one message with a msg_id; False when it was already stored (by anyone)."""
        p = self.placeholder
        sid = doc.get("session_id")
        with self._lock:
            cur = self._exec(_INSERT_MSG.format(p=p), (str(doc["msg_id"]), device, sid, kind,
                             int(doc["seq"]), received_ts, json.dumps(doc)))  # fmt: skip
            new = cur.rowcount == 1
            result = doc.get("result")
            if new and kind == "result" and isinstance(result, Mapping) and sid:
                version = int(result.get("version") or 1)
                self._exec(_UPSERT_SESSION.format(p=p), (device, str(sid), version,
                           str(doc["msg_id"]), result.get("supersedes"), received_ts,
                           json.dumps(result)))  # fmt: skip
            self._commit()
        return new

    def gaps(self) -> dict[str, list[tuple[int, int]]]:
        """Missing seq ranges per device between the lowest and highest seq stored."""
        out: dict[str, list[tuple[int, int]]] = {}
        with self._lock:
            rows = self._exec(
                "SELECT device, seq FROM dgs_messages ORDER BY device, seq"
            ).fetchall()
        last: dict[str, int] = {}
        for device, seq in rows:
            prev = last.get(device)
            if prev is not None and seq > prev + 1:
                out.setdefault(device, []).append((prev + 1, seq - 1))
            last[device] = seq
        return out

    def sessions(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._exec("SELECT device, session_id, version, msg_id, supersedes FROM"
                              " dgs_sessions ORDER BY device, session_id").fetchall()  # fmt: skip
        keys = ("device", "session_id", "version", "msg_id", "supersedes")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._exec("SELECT COUNT(*) FROM dgs_messages").fetchone()[0])


class SqliteStore(_SqlStore):
    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_TABLES)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"registry: {exc}") from exc

    def _commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.close()


class PostgresStore(_SqlStore):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        import psycopg

        self._psycopg = psycopg
        try:
            self._db = psycopg.connect(url, connect_timeout=10)
            with self._db.transaction():
                # Two consumers creating the tables at once: serialise on an advisory lock.
                self._db.execute("SELECT pg_advisory_xact_lock(74737)")
                for stmt in _TABLES.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)  # type: ignore[call-overload]
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the PostgreSQL registry: {exc}") from exc

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        try:
            return self._db.execute(sql, args)  # type: ignore[call-overload]
        except self._psycopg.Error as exc:
            self._db.rollback()
            raise StoreError(f"registry: {exc}") from exc

    def _commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def open_store(url: str) -> SqliteStore | PostgresStore:
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url[len("sqlite:///") :]))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ConfigError(f"--store {url!r}: expected sqlite:///PATH or postgresql://...")
