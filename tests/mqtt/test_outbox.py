"""The SQLite outbox on its own: order, durability, bound, idempotence, bad files."""

from __future__ import annotations

import json
import sqlite3

import pytest

from edge_service.mqtt.outbox import Outbox, OutboxError, OutboxFull


def builder(msg_id: str, body: dict | None = None):
    def build(seq: int):
        return (
            msg_id,
            "dgs/v1/a/b/sessions/s/events",
            json.dumps({"seq": seq, **(body or {})}).encode(),
            "dgs.mqtt-event/1",
        )

    return build


def test_append_ack_and_order_survive_reopen(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    seqs = [ob.append(builder(f"id-{i}", {"i": i})).seq for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    ob.ack(2)
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite")
    pend = ob.pending()
    assert [e.seq for e in pend] == [1, 3, 4, 5]
    assert [json.loads(e.payload)["i"] for e in pend] == [0, 2, 3, 4]
    # The sequence continues after a restart, even when everything was acknowledged.
    for e in pend:
        ob.ack(e.seq)
    assert ob.count() == 0
    assert ob.append(builder("id-x")).seq == 6
    assert ob.last_seq() == 6


def test_same_message_id_is_not_stored_twice(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    assert ob.append(builder("result-1")) is not None
    assert ob.append(builder("result-1")) is None
    assert ob.count() == 1
    assert ob.last_seq() == 1  # the refused copy did not consume a sequence number


def test_full_outbox_refuses_and_never_overwrites(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_messages=10)
    for i in range(10):
        ob.append(builder(f"id-{i}"))
    with pytest.raises(OutboxFull, match="full"):
        ob.append(builder("id-10"))
    assert [e.msg_id for e in ob.pending()] == [f"id-{i}" for i in range(10)]
    ob.ack(1)
    assert ob.append(builder("id-10")).seq == 11


def test_rejected_messages_are_kept(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    e = ob.append(builder("id-0"))
    ob.mark_rejected(e.seq, "Not authorized")
    assert ob.count() == 1 and ob.rejected_count() == 1


def test_corrupt_file_is_a_typed_error(tmp_path):
    bad = tmp_path / "o.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(bad)


def test_wal_mode_and_full_sync(tmp_path):
    Outbox(tmp_path / "o.sqlite").close()
    db = sqlite3.connect(tmp_path / "o.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
