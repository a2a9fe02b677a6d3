"""`dgs-edge subscribe` as a real process against a real Mosquitto, plus publisher alarms."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_service.mqtt import OutboxFull
from edge_service.mqtt.validation import validate
from tests.harness.broker import HOST, wait_for
from tests.harness.paths import REPO
from tests.mqtt.sample_result import sample_result

pytestmark = pytest.mark.sim


def _subscribe(url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_service.cli.edge", "subscribe", "--broker", url, *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def test_subscribe_writes_jsonl_dedups_and_reports_gaps(
    mosquitto, tmp_path, make_publisher, collector_factory
):
    col = collector_factory(HOST, mosquitto.port)
    out = tmp_path / "msgs.jsonl"
    # --client-id: a persistent session, so nothing is missed while it starts up.
    proc = _subscribe(mosquitto.url, "--site", "site-a", "--jsonl", str(out), "--count", "5",
                      "--duration-s", "60", "--client-id", "sub-test")  # fmt: skip
    try:
        wait_for(lambda: "sub-test" in mosquitto.log_tail(100_000), 20, "subscriber connected")
        pub = make_publisher(mosquitto.url, fhir=True)
        pub.start()
        pub.event("sess-s", "started", {"protocol": "fair"})
        pub.result("sess-s", sample_result("sess-s"))  # + FHIR bundle (seq 3)
        assert pub.wait_drained(10)
        # A replayed duplicate and a message from a "future" sequence: one gap of 4..9.
        raw = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        raw.connect(HOST, mosquitto.port)
        raw.loop_start()
        first = col.wait_docs("/events", 1)[0]  # exactly as it went over the wire
        topic = "dgs/v1/site-a/dgs-01/sessions/sess-s/events"
        dup = raw.publish(topic, json.dumps(first), 1)
        late = dict(first, msg_id="11111111-1111-4111-8111-111111111111", seq=10)
        nxt = raw.publish(topic, json.dumps(late), 1)
        dup.wait_for_publish(5)
        nxt.wait_for_publish(5)
        raw.disconnect()
        raw.loop_stop()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1, err  # exits non-zero: a gap was seen
    assert "duplicates=1" in err and "gaps=1" in err and "missing=6" in err
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [r["kind"] for r in recs]
    assert kinds.count("events") == 2 and "result" in kinds and "fhir" in kinds
    assert recs[-1]["gap"] == [4, 9]
    for r in recs:
        assert r["valid"], r["error"]
        validate(r["payload"])


def test_full_outbox_raises_loud_alarm_in_status_and_log(
    mosquitto, make_publisher, collector_factory, caplog
):
    col = collector_factory(HOST, mosquitto.port, "dgs/v1/+/+/status")
    pub = make_publisher(mosquitto.url, outbox_max_messages=10)
    pub.start()
    assert pub.wait_connected(10)
    mosquitto.stop()
    wait_for(lambda: not pub._connected.is_set(), 10, "outage noticed")
    ids = [pub.event("sess-f", "manoeuvre", {"i": i}) for i in range(10)]
    with pytest.raises(OutboxFull):
        pub.event("sess-f", "manoeuvre", {"i": 10})
    assert "outbox full" in caplog.text
    assert [e.msg_id for e in pub.outbox.pending()] == ids  # nothing overwritten
    mosquitto.start()
    assert pub.wait_drained(20)
    # The birth after reconnecting carried the alarm (it was raised while offline).
    wait_for(lambda: any("outbox_full" in d["alarms"] for d in col.docs()), 10, "alarm status")
    pub.set_status({"probe": {"state": "idle"}})
    status = wait_for(lambda: [d for d in col.docs() if d.get("probe")], 10, "status update")
    assert status[-1]["alarms"] == [] and status[-1]["link"]["outbox_pending"] == 0
    assert pub.event("sess-f", "ended", {})  # accepted again once drained


def test_subscribe_wrong_broker_is_one_clear_line(tmp_path):
    from edge_service.mqtt.broker import free_port

    proc = _subscribe(f"mqtt://{HOST}:{free_port()}", "--duration-s", "1")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and "cannot reach broker" in err


def test_subscribe_live_table_shows_retained_status(mosquitto, make_publisher):
    pub = make_publisher(mosquitto.url)
    pub.start(status={"clip": "virtual"})
    assert pub.wait_connected(10)
    pub.stop()  # leaves the retained 'stopped' status on the broker
    proc = _subscribe(mosquitto.url, "--table", "--duration-s", "2")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "dgs/v1" in out and "status" in out and "stopped" in out
    assert "valid=1" in err
