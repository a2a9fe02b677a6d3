"""Consumers at scale: two `dgs-edge subscribe --share g1` processes storing into one
PostgreSQL report no gaps (gaps are per device across the group) and keep one row per
session holding its latest result version; the SQLite store for one machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from edge_service.mqtt import MqttSettings, Publisher
from edge_service.mqtt.broker import Mosquitto
from edge_service.mqtt.store import open_store
from tests.harness.broker import wait_for
from tests.harness.paths import REPO
from tests.harness.postgres import Postgres, postgres  # noqa: F401  (fixture)
from tests.mqtt.sample_result import sample_result

pytestmark = pytest.mark.sim


def _terminal_sigint() -> None:
    # As from a terminal: a test run started in the background (`cmd &` in a script) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler in the child.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _subscribe(url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_service.cli.edge", "subscribe", "--broker", url, *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=_terminal_sigint,
    )  # fmt: skip


def _publish(url: str, outbox: Path, n_sessions: int) -> None:
    pub = Publisher(MqttSettings(url=url, fhir=True, reconnect_max_s=1.0), outbox)
    pub.start()
    try:
        for i in range(n_sessions):
            sid = f"sess-{i}"
            pub.event(sid, "started", {"protocol": "fair"})
            doc = sample_result(sid)
            pub.result(sid, doc)
            if i % 2 == 0:  # every other session is corrected: version 2
                pub.result(sid, doc | {"version": 2, "supersedes": "x"})
        assert pub.wait_drained(20)
    finally:
        pub.stop(timeout_s=2)


def test_two_shared_consumers_one_postgres(postgres: Postgres, tmp_path: Path) -> None:  # noqa: F811
    # Subscription logging on, so the test can wait until both group members subscribed.
    mosquitto = Mosquitto(tmp_path / "broker", extra_conf=["log_type subscribe"])
    mosquitto.start()
    try:
        _two_consumers(mosquitto, postgres, tmp_path)
    finally:
        mosquitto.stop()


def _two_consumers(mosquitto: Mosquitto, postgres: Postgres, tmp_path: Path) -> None:  # noqa: F811
    procs = [_subscribe(mosquitto.url, "--share", "g1", "--store", postgres.url, "--client-id",
                        f"reg-{k}", "--jsonl", str(tmp_path / f"c{k}.jsonl"),
                        "--duration-s", "300") for k in range(2)]  # fmt: skip
    try:
        for k in range(2):
            wait_for(lambda k=k: f"reg-{k}" in mosquitto.log_tail(100_000), 20, f"consumer {k}")
        wait_for(lambda: mosquitto.log_tail(100_000).count("$share/g1") >= 2, 20, "subscriptions")
        _publish(mosquitto.url, tmp_path / "outbox.sqlite", 6)

        def stored() -> int:
            with psycopg.connect(postgres.url) as c:
                row = c.execute("SELECT COUNT(*) FROM dgs_messages").fetchone()
            return int(row[0]) if row else 0

        wait_for(lambda: stored() >= 24, 60, "24 messages in the registry")
        for p in procs:  # Ctrl-C is how a live consumer ends: it still prints the summary
            p.send_signal(signal.SIGINT)
        errs = [p.communicate(timeout=60)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, err in zip(procs, errs, strict=True):
        assert p.returncode == 0, err
        assert "gaps=0" in err and "sessions=6" in err, err
    # Both consumers took part (the broker spread the messages).
    lines = [sum(1 for ln in (tmp_path / f"c{k}.jsonl").read_text().splitlines()
                 if (json.loads(ln)["payload"] or {}).get("msg_id")) for k in range(2)]  # fmt: skip
    # 6 x (started event, result, FHIR) + 3 corrections x (result, FHIR), each stored once.
    assert all(n > 0 for n in lines) and sum(lines) == 6 * 3 + 3 * 2, lines
    with psycopg.connect(postgres.url) as c:
        rows = c.execute(
            "SELECT session_id, version FROM dgs_sessions ORDER BY session_id"
        ).fetchall()
        n_msgs = c.execute("SELECT COUNT(*) FROM dgs_messages").fetchone()
    assert [r[0] for r in rows] == [f"sess-{i}" for i in range(6)]
    assert {r[0]: r[1] for r in rows} == {f"sess-{i}": 2 if i % 2 == 0 else 1 for i in range(6)}
    assert n_msgs is not None and n_msgs[0] == sum(lines)


def test_sqlite_store_is_idempotent_and_keeps_latest_version(tmp_path: Path) -> None:
    st = open_store(f"sqlite:///{tmp_path / 'reg.sqlite'}")
    r1 = {"msg_id": "m1", "seq": 1, "session_id": "s", "result": {"version": 1}}
    r2 = {"msg_id": "m2", "seq": 3, "session_id": "s", "result": {"version": 2, "supersedes": "m1"}}
    assert st.add("a/d", "result", r2, 1.0) and st.add("a/d", "result", r1, 2.0)  # out of order
    assert not st.add("a/d", "result", r1, 3.0)  # redelivery
    assert st.sessions() == [{"device": "a/d", "session_id": "s", "version": 2, "msg_id": "m2",
                              "supersedes": "m1"}]  # fmt: skip
    assert st.gaps() == {"a/d": [(2, 2)]}
    st.close()
