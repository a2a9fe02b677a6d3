"""The same flows against a second broker implementation (amqtt, MQTT 3.1.1 only)."""

from __future__ import annotations

import pytest

from edge_service.mqtt import EmbeddedBroker
from edge_service.mqtt.validation import validate
from tests.harness.broker import HOST, wait_for
from tests.mqtt.sample_result import sample_result

pytestmark = pytest.mark.sim


def test_mqtt5_publisher_falls_back_to_311_and_delivers(
    amqtt_broker, make_publisher, collector_factory, caplog
):
    col = collector_factory(HOST, amqtt_broker.port, protocol=4)
    pub = make_publisher(amqtt_broker.url, connack_timeout_s=1.0)  # asks for MQTT 5 first
    pub.start(status={"clip": {"state": "streaming"}})
    assert pub.wait_connected(15)
    assert pub.protocol == "3.1.1" and "falling back to MQTT 3.1.1" in caplog.text
    pub.event("sess-a", "started", {})
    pub.result("sess-a", sample_result("sess-a"))
    assert pub.wait_drained(10)
    pub.stop()
    ev, res = col.wait_docs("/events", 1)[0], col.wait_docs("/result", 1)[0]
    assert (ev["seq"], res["seq"]) == (1, 2)
    wait_for(lambda: any(d["state"] == "stopped" for d in col.docs("/status")), 10, "stopped")
    for d in col.docs():
        validate(d)


def test_broker_restart_mid_session(amqtt_broker, make_publisher, collector_factory):
    # reconnect_min_s=3: the fresh subscriber below is in place before the publisher is back
    # (amqtt keeps no sessions across its own restart).
    pub = make_publisher(amqtt_broker.url, protocol="3.1.1", reconnect_min_s=3, reconnect_max_s=3)
    pub.start()
    assert pub.wait_connected(10)
    pub.event("sess-b", "started", {})
    assert pub.wait_drained(10)
    amqtt_broker.stop()
    wait_for(lambda: not pub._connected.is_set(), 10, "outage noticed")
    for i in range(5):
        pub.event("sess-b", "manoeuvre", {"i": i})
    pub.result("sess-b", sample_result("sess-b"))
    assert pub.outbox.count() == 6
    amqtt_broker.start()
    col = collector_factory(HOST, amqtt_broker.port, protocol=4)
    assert pub.wait_drained(20)
    events = col.wait_docs("/events", 5)
    assert [e["data"]["i"] for e in events] == list(range(5))
    assert col.wait_docs("/result", 1)[0]["seq"] == 7


def test_lwt_on_abrupt_loss(amqtt_broker, make_publisher, collector_factory):
    col = collector_factory(HOST, amqtt_broker.port, "dgs/v1/+/+/status", protocol=4)
    pub = make_publisher(amqtt_broker.url, protocol="3.1.1")
    pub.start()
    assert pub.wait_connected(10)
    wait_for(lambda: any(d["state"] == "online" for d in col.docs()), 10, "birth")
    pub._client.socket().close()  # the network thread sees a dead link, no DISCONNECT sent
    pub._client.loop_stop()
    wait_for(lambda: any(d["state"] == "offline" for d in col.docs()), 10, "LWT")


def test_embedded_broker_falls_back_to_amqtt(make_publisher):
    with EmbeddedBroker(prefer="amqtt") as b:
        assert b.kind == "amqtt" and b.protocol == "3.1.1"
        pub = make_publisher(b.url, protocol=b.protocol)
        pub.start()
        pub.result("sess-c", sample_result("sess-c"))
        assert pub.wait_drained(10)
        pub.stop()


def test_kill9_with_pending_messages_then_restart(
    amqtt_broker, tmp_path, make_publisher, collector_factory
):
    import os
    import signal

    from edge_service.mqtt.outbox import Outbox
    from tests.mqtt.test_publisher_mosquitto import _child, _read_until

    ob = tmp_path / "ob.sqlite"
    amqtt_broker.stop()
    proc = _child(amqtt_broker.url, ob, 10, 0)
    try:
        _read_until(proc, "QUEUED")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert Outbox(ob).count() == 10
    amqtt_broker.start()
    col = collector_factory(HOST, amqtt_broker.port, protocol=4)
    pub = make_publisher(amqtt_broker.url, ob, protocol="3.1.1")
    pub.start()
    assert pub.wait_drained(15)
    docs = col.wait_docs("/events", 10)
    assert [d["data"]["i"] for d in docs] == list(range(10))
