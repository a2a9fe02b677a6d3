"""Publisher against a real Mosquitto: delivery, outages, restarts, kill -9, LWT, auth, ACL, TLS."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_service.errors import BrokerError, InputError
from edge_service.mqtt import MqttSettings, Publisher, TlsSettings
from edge_service.mqtt.outbox import Outbox
from edge_service.mqtt.validation import validate
from tests.harness.broker import CONSUMER_USER, DEVICE_USER, HOST, wait_for
from tests.harness.paths import REPO
from tests.mqtt.sample_result import sample_result

pytestmark = pytest.mark.sim


def dedup_in_order(docs: list[dict]) -> list[dict]:
    seen: set[str] = set()
    out = []
    for d in docs:
        if d["msg_id"] not in seen:
            seen.add(d["msg_id"])
            out.append(d)
    return out


def test_session_flow_is_delivered_and_matches_the_schemas(
    mosquitto, make_publisher, collector_factory
):
    col = collector_factory(HOST, mosquitto.port)
    pub = make_publisher(mosquitto.url)
    pub.start(status={"mode": "demo", "clip": "virtual", "versions": {"model": "det-1"}})
    assert pub.wait_connected(10)
    pub.event("sess-1", "started", {"protocol": "fair", "side": "left"})
    assert pub.live_angles({"flexion_deg": 10.0, "adduction_deg": 2.0, "rotation_deg": 5.0})
    pub.live_measurements({"t": 1.0, "frame": 3, "nerve_found": True, "nerve_ap_mm": 12.0})
    pub.event("sess-1", "ended", {})
    rid = pub.result("sess-1", sample_result("sess-1"))
    assert pub.wait_drained(10)
    pub.stop()

    events = col.wait_docs("/events", 2)
    result = col.wait_docs("/result", 1)[0]
    status = wait_for(lambda: [d for d in col.docs("/status") if d["state"] == "stopped"],
                      10, "stopped status")  # fmt: skip
    assert [e["event"] for e in events] == ["started", "ended"]
    assert [e["seq"] for e in events] + [result["seq"]] == [1, 2, 3]
    assert result["msg_id"] == rid and result["result"] == sample_result("sess-1")
    assert status[-1]["versions"]["model"] == "det-1"
    assert status[-1]["link"]["acked"] == 3
    for doc in col.docs():
        validate(doc)  # every real message matches its published schema
    # MQTT 5 metadata: content type and the schema version as user properties.
    msg = next(m for m in col.messages if m.topic.endswith("/result"))
    assert msg.properties.ContentType == "application/json"
    assert ("schema", "dgs.mqtt-result/1") in msg.properties.UserProperty
    assert ("msg_id", rid) in msg.properties.UserProperty


def test_broker_restart_mid_session_delivers_everything_once_in_order(
    mosquitto, make_publisher, collector_factory
):
    col = collector_factory(HOST, mosquitto.port)
    pub = make_publisher(mosquitto.url)
    pub.start()
    assert pub.wait_connected(10)
    for i in range(5):
        pub.event("sess-2", "manoeuvre", {"i": i})
    mosquitto.stop()
    wait_for(lambda: not pub._connected.is_set(), 10, "publisher to notice the outage")
    for i in range(5, 10):
        pub.event("sess-2", "manoeuvre", {"i": i})  # queued while the broker is down
    pub.result("sess-2", sample_result("sess-2"))
    assert Outbox(pub.outbox.path).count() >= 6  # kept on disk, not just in memory
    mosquitto.start()
    assert pub.wait_drained(20)
    docs = dedup_in_order(col.wait_docs("/events", 10, 20))
    assert [d["data"]["i"] for d in docs] == list(range(10))
    assert col.wait_docs("/result", 1)[0]["seq"] == 11
    assert pub.stats["disconnects"] >= 1 and pub.stats["connects"] >= 2


def test_broker_down_at_start_keeps_everything(
    mosquitto, make_publisher, collector_factory, caplog
):
    col = collector_factory(HOST, mosquitto.port)  # persistent session, survives the outage
    mosquitto.stop()
    pub = make_publisher(mosquitto.url)
    pub.start()
    pub.event("sess-3", "started", {})
    pub.result("sess-3", sample_result("sess-3"))
    assert not pub.wait_connected(1.5)
    assert pub.outbox.count() == 2
    assert "unreachable" in caplog.text
    mosquitto.start()
    assert pub.wait_drained(20)
    assert col.wait_docs("/events", 1)[0]["seq"] == 1
    assert col.wait_docs("/result", 1)[0]["seq"] == 2


def test_retained_status_survives_broker_restart(mosquitto, make_publisher, collector_factory):
    pub = make_publisher(mosquitto.url)
    pub.start(status={"probe": {"state": "ready"}})
    assert pub.wait_connected(10)
    pub.set_status({"probe": {"state": "scanning"}})
    wait_for(lambda: pub.stats["connects"] == 1, 5, "connect")
    pub.stop()
    mosquitto.restart()  # persistence keeps retained messages
    col = collector_factory(HOST, mosquitto.port, "dgs/v1/+/+/status")
    status = col.wait_docs("/status", 1)[0]
    assert status["state"] == "stopped" and status["probe"] == {"state": "scanning"}
    assert col.messages[0].retain


def _child(url: str, outbox: Path, n: int, wait_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.mqtt.publisher_child", url, str(outbox), str(n), str(wait_s)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _read_until(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:  # the child prints its progress; EOF means it died
        if line.strip() == word:
            return
    raise AssertionError(f"child exited before {word}")


def test_lwt_offline_when_the_service_dies(mosquitto, tmp_path, collector_factory):
    col = collector_factory(HOST, mosquitto.port, "dgs/v1/+/+/status")
    proc = _child(mosquitto.url, tmp_path / "ob.sqlite", 0, 10)
    try:
        _read_until(proc, "QUEUED")
        wait_for(lambda: any(d["state"] == "online" for d in col.docs()), 10, "birth")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    offline = wait_for(lambda: [d for d in col.docs() if d["state"] == "offline"], 10, "LWT")
    validate(offline[-1])


def test_kill9_with_pending_messages_then_restart_delivers_all(
    mosquitto, tmp_path, make_publisher, collector_factory
):
    ob = tmp_path / "ob.sqlite"
    mosquitto.stop()  # nothing can be acknowledged: all 25 stay pending
    proc = _child(mosquitto.url, ob, 25, 0)
    try:
        _read_until(proc, "QUEUED")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert Outbox(ob).count() == 25
    mosquitto.start()
    col = collector_factory(HOST, mosquitto.port)
    pub = make_publisher(mosquitto.url, ob)
    pub.start()
    assert pub.wait_drained(20)
    docs = dedup_in_order(col.wait_docs("/events", 25))
    assert [d["data"]["i"] for d in docs] == list(range(25))
    assert [d["seq"] for d in docs] == list(range(1, 26))
    pub.event("sess-kill", "ended", {})  # the sequence continues after the restart
    assert col.wait_docs("/events", 26)[-1]["seq"] == 26


def test_wrong_password_is_a_clear_error_and_loses_nothing(
    mosquitto_factory, make_publisher, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)  # credentials must not appear at any level
    broker = mosquitto_factory("password")
    monkeypatch.setenv("DGS_MQTT_USERNAME", DEVICE_USER)
    monkeypatch.setenv("DGS_MQTT_PASSWORD", "Wr0ng-pw-7731")
    pub = make_publisher(broker.url)
    pub.start()
    pub.result("sess-4", sample_result("sess-4"))
    with pytest.raises(BrokerError, match=r"Not authorized|Bad user name or password"):
        pub.wait_connected(10)
    assert pub.outbox.count() == 1
    pub.stop()
    # Fixed credentials: the same outbox delivers the kept result.
    monkeypatch.setenv("DGS_MQTT_PASSWORD", "device-secret")
    pub2 = make_publisher(broker.url, pub.outbox.path)
    pub2.start()
    assert pub2.wait_connected(10) and pub2.wait_drained(10)
    assert "Wr0ng-pw-7731" not in caplog.text and "device-secret" not in caplog.text


def test_acl_denial_is_reported_and_the_message_is_kept(
    mosquitto_factory, make_publisher, monkeypatch, collector_factory, caplog
):
    broker = mosquitto_factory("acl")
    col = collector_factory(HOST, broker.port, username=CONSUMER_USER, password="reader-secret")
    monkeypatch.setenv("DGS_MQTT_USERNAME", DEVICE_USER)
    monkeypatch.setenv("DGS_MQTT_PASSWORD", "device-secret")
    # Allowed: its own device subtree.
    ok = make_publisher(broker.url, device=DEVICE_USER)
    ok.start()
    ok.result("sess-5", sample_result("sess-5"))
    assert ok.wait_drained(10)
    col.wait_docs("/result", 1)
    ok.stop()
    # Denied: posing as another device.
    bad = make_publisher(broker.url, Path(str(ok.outbox.path) + ".2"), device="dgs-99")
    bad.start()
    bad.result("sess-5", sample_result("sess-5"))
    wait_for(lambda: bad.stats["rejected"] == 1, 10, "PUBACK with 'Not authorized'")
    assert "rejected" in caplog.text and "Not authorized" in (bad.last_error or "")
    assert bad.outbox.count() == 1 and bad.outbox.rejected_count() == 1
    assert not bad.wait_drained(0.2)
    assert not [d for d in col.docs("/result") if d["device"] == "dgs-99"]


def test_consumer_cannot_publish_under_acl(mosquitto_factory, make_publisher, monkeypatch):
    broker = mosquitto_factory("acl")
    monkeypatch.setenv("DGS_MQTT_USERNAME", CONSUMER_USER)
    monkeypatch.setenv("DGS_MQTT_PASSWORD", "reader-secret")
    pub = make_publisher(broker.url, device=DEVICE_USER)
    pub.start()
    pub.event("sess-6", "started", {})
    wait_for(lambda: pub.stats["rejected"] == 1, 10, "read-only consumer refused")


def test_tls_with_generated_ca(mosquitto_factory, make_publisher, collector_factory):
    broker = mosquitto_factory("tls")
    tls = mosquitto_factory.tls
    col = collector_factory(HOST, broker.port, tls_ca=tls.ca)
    url = f"mqtts://{HOST}:{broker.port}"
    pub = make_publisher(url, tls=TlsSettings(ca_file=tls.ca))
    pub.start()
    pub.result("sess-7", sample_result("sess-7"))
    assert pub.wait_drained(10)
    assert col.wait_docs("/result", 1)[0]["session_id"] == "sess-7"


def test_tls_rejects_a_broker_signed_by_another_ca(mosquitto_factory, make_publisher, caplog):
    broker = mosquitto_factory("tls")
    tls = mosquitto_factory.tls
    pub = make_publisher(f"mqtts://{HOST}:{broker.port}", tls=TlsSettings(ca_file=tls.other_ca))
    pub.start()
    pub.result("sess-8", sample_result("sess-8"))
    # Reported as what it is (not "unreachable"), and permanent: wait_connected raises.
    with pytest.raises(
        BrokerError, match=r"TLS: the certificate of the broker .* failed verification"
    ):
        pub.wait_connected(10)
    assert "broker_tls" in pub.alarms
    assert pub.outbox.count() == 1  # kept for when the CA is fixed


def test_tls_client_certificate(mosquitto_factory, make_publisher):
    broker = mosquitto_factory("tls", require_client_cert=True)
    tls = mosquitto_factory.tls
    url = f"mqtts://{HOST}:{broker.port}"
    anon = make_publisher(url, tls=TlsSettings(ca_file=tls.ca))
    anon.start()
    # The broker demands a client certificate: said so, never "MQTT 5 fallback".
    with pytest.raises(BrokerError, match="rejected the client certificate"):
        anon.wait_connected(10)
    assert anon.protocol == "5"
    anon.stop()
    pub = make_publisher(
        url,
        Path(str(anon.outbox.path) + ".2"),
        tls=TlsSettings(ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key),
    )
    pub.start()
    assert pub.wait_connected(10)


def test_mqtt311_fallback(mosquitto, make_publisher, collector_factory):
    col = collector_factory(HOST, mosquitto.port)
    pub = make_publisher(mosquitto.url, protocol="3.1.1")
    pub.start()
    pub.event("sess-9", "started", {})
    assert pub.wait_drained(10)
    validate(col.wait_docs("/events", 1)[0])


def test_live_streams_are_rate_limited_and_dropped_offline(mosquitto, make_publisher):
    pub = make_publisher(mosquitto.url, live_rate_hz=5)
    assert not pub.live_angles({"flexion_deg": 0.0})  # not connected yet: dropped
    pub.start()
    assert pub.wait_connected(10)
    t0 = time.monotonic()
    sent = [pub.live_angles({"flexion_deg": float(i)}) for i in range(50)]
    allowed = 1 + int((time.monotonic() - t0) * 5)  # 5 Hz over however long the calls took
    assert sent[0] and sum(sent) <= allowed < 50
    assert pub.live_measurements({"nerve_csa_mm2": 40.0})  # streams are limited separately
    assert pub.stats["live_dropped"] == 1 + 50 - sum(sent)


def test_settings_reject_credentials_in_url():
    with pytest.raises(ValueError, match="credentials"):
        MqttSettings(url="mqtt://user:pw@127.0.0.1:1883")


def test_publisher_refuses_patient_identifiers(tmp_path):
    pub = Publisher(MqttSettings(), tmp_path / "ob.sqlite")
    with pytest.raises(Exception, match="patient-identifying"):
        pub.event("sess-x", "started", {"patient_name": "Doe^Jane"})
    with pytest.raises(Exception, match="pseudonymous"):
        pub.event("Jane Doe", "started", {})
    assert pub.outbox.count() == 0
    pub.stop()


def test_shipped_production_config_tls_password_acl(
    mosquitto_factory, make_publisher, monkeypatch, collector_factory
):
    broker = mosquitto_factory("deploy")
    tls = mosquitto_factory.tls
    col = collector_factory(HOST, broker.port, username=CONSUMER_USER, password="reader-secret",
                            tls_ca=tls.ca)  # fmt: skip
    monkeypatch.setenv("DGS_MQTT_USERNAME", DEVICE_USER)
    monkeypatch.setenv("DGS_MQTT_PASSWORD", "device-secret")
    pub = make_publisher(f"mqtts://localhost:{broker.port}", device=DEVICE_USER,
                         tls=TlsSettings(ca_file=tls.ca))  # fmt: skip
    pub.start()
    pub.result("sess-p", sample_result("sess-p"))
    assert pub.wait_drained(10)
    assert col.wait_docs("/result", 1)[0]["device"] == DEVICE_USER


def test_live_nan_fields_are_left_out_and_bad_results_are_still_published(
    mosquitto, make_publisher, collector_factory, caplog
):
    col = collector_factory(HOST, mosquitto.port)
    pub = make_publisher(mosquitto.url)
    pub.start()
    assert pub.wait_connected(10)
    assert pub.live_measurements({"t": 1.0, "frame": 0, "nerve_found": False,
                                  "nerve_ap_mm": float("nan")})  # fmt: skip
    live = col.wait_docs("/live/measurements", 1)[0]
    assert "nerve_ap_mm" not in live and live["nerve_found"] is False
    validate(live)
    bad = sample_result("sess-bad")
    del bad["nerve"]
    pub.result("sess-bad", bad)  # never dropped, but flagged loudly
    assert "does not match its schema" in caplog.text
    assert pub.wait_drained(10)
    assert "nerve" not in col.wait_docs("/result", 1)[0]["result"]


def test_status_republished_on_changes_with_persistent_birth_id(
    mosquitto, make_publisher, collector_factory, tmp_path
):
    col = collector_factory(HOST, mosquitto.port, "dgs/v1/site-a/dgs-01/status")
    box = tmp_path / "persist.sqlite"
    pub = make_publisher(mosquitto.url, box)
    pub.start(status={"mode": "service"})
    assert pub.wait_connected(10)
    first = wait_for(lambda: col.docs("/status"), 10, "birth")[-1]
    assert first["state"] == "online" and first["bdSeq"] >= 1
    pub.set_status({"clip": {"state": "open"}})
    pub.set_alarm("disk_low", True)
    pub.set_alarm("disk_low", True)  # no change: not re-published
    pub.set_status({"clip": {"state": "reconnecting"}})
    docs = wait_for(lambda: (d := col.docs("/status")) and len(d) >= 4 and d, 10, "changes")
    assert [d.get("clip", {}).get("state") for d in docs[1:4]] == ["open", "open", "reconnecting"]
    assert docs[2]["alarms"] == ["disk_low"] and len(docs) == 4
    assert {d["bdSeq"] for d in docs} == {first["bdSeq"]}
    snap = pub.status_snapshot()  # what a health endpoint serves
    assert snap["alarms"] == ["disk_low"] and snap["clip"] == {"state": "reconnecting"}
    pub.stop()
    # A restart (same outbox file) gets a higher birth id, kept across processes.
    again = make_publisher(mosquitto.url, box)
    again.start()
    assert again.wait_connected(10)
    births = wait_for(
        lambda: [d for d in col.docs("/status") if d["bdSeq"] > first["bdSeq"]], 10, "rebirth"
    )
    assert births[0]["state"] == "online" and births[0]["bdSeq"] == first["bdSeq"] + 1
    with pytest.raises(InputError):
        again.set_alarm("no_such_alarm")
    for d in col.docs():
        validate(d)
