"""Real MQTT brokers for tests: Mosquitto (plain, password, TLS, ACL) on ephemeral loopback
ports, the amqtt broker for interoperability, and a subscriber that collects messages.

Everything waits by polling against a deadline; brokers are torn down with the test."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_service.mqtt.broker import AmqttBroker, Mosquitto, find_mosquitto, free_port
from tests.harness.paths import REPO

HOST = "127.0.0.1"
DEVICE_USER = "dgs-01"
CONSUMER_USER = "hospital"


def wait_for(pred: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll `pred` until truthy; fail the test with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class TlsMaterial:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that did NOT sign the broker: verification must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tls_material(d: Path) -> TlsMaterial:
    """CA, a broker certificate for 127.0.0.1/localhost and a client certificate."""
    d.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN=dgs test {ca}",
                 cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "localhost"), ("client", DEVICE_USER)):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)  # fmt: skip
        ext = ["-extfile", "san.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext, cwd=d)  # fmt: skip
    return TlsMaterial(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
                       d / "client.key", d / "other-ca.pem")  # fmt: skip


def make_password_file(path: Path, users: dict[str, str]) -> Path:
    path.write_text("")
    for user, pw in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(path), user, pw], check=True,
                       capture_output=True)  # fmt: skip
    path.chmod(0o600)
    return path


# The shipped production ACL: a device writes only under its own {device} (username ==
# device slug), the hospital consumer only reads.
ACL_FILE = REPO / "deploy" / "mosquitto" / "acl"


@dataclass
class BrokerFactory:
    root: Path
    tls_dir: Path
    started: list[Mosquitto] = field(default_factory=list)
    _tls: TlsMaterial | None = None
    passwords: dict[str, str] = field(
        default_factory=lambda: {DEVICE_USER: "device-secret", CONSUMER_USER: "reader-secret"}
    )

    @property
    def tls(self) -> TlsMaterial:
        if self._tls is None:
            req = getattr(self, "_request", None)
            self._tls = (
                req.getfixturevalue("tls_material") if req else make_tls_material(self.tls_dir)
            )
        return self._tls

    def __call__(self, kind: str = "plain", *, require_client_cert: bool = False) -> Mosquitto:
        wd = self.root / f"{kind}-{len(self.started)}"
        wd.mkdir(parents=True)
        conf: list[str] = []
        if kind in ("password", "acl"):
            conf += ["allow_anonymous false",
                     f"password_file {make_password_file(wd / 'passwd', self.passwords)}"]  # fmt: skip
        if kind == "acl":
            conf.append(f"acl_file {ACL_FILE}")
        if kind == "tls":
            t = self.tls
            conf += [f"cafile {t.ca}", f"certfile {t.server_cert}", f"keyfile {t.server_key}",
                     f"require_certificate {'true' if require_client_cert else 'false'}"]  # fmt: skip
        if kind == "deploy":
            return self._deploy(wd)
        if kind not in ("plain", "password", "acl", "tls"):
            raise ValueError(kind)
        m = Mosquitto(wd, extra_conf=conf)
        m.start()
        self.started.append(m)
        return m

    def _deploy(self, wd: Path) -> Mosquitto:
        """The shipped deploy/mosquitto/mosquitto.conf with only paths and port rewritten."""
        t = self.tls
        port = free_port(HOST)
        text = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
        for old, new in {
            "listener 8883": f"listener {port} {HOST}",
            "/etc/mosquitto/passwd": str(make_password_file(wd / "passwd", self.passwords)),
            "/etc/mosquitto/dgs.acl": str(ACL_FILE),
            "/etc/mosquitto/certs/ca.pem": str(t.ca),
            "/etc/mosquitto/certs/broker.pem": str(t.server_cert),
            "/etc/mosquitto/certs/broker.key": str(t.server_key),
            "/var/lib/mosquitto/": f"{wd}/",
            "log_dest syslog": "log_dest stderr",
        }.items():
            assert old in text, f"deploy config no longer contains {old!r}"
            text = text.replace(old, new)
        m = Mosquitto(wd, port=port, raw_conf=text)
        m.start()
        self.started.append(m)
        return m

    def close(self) -> None:
        for m in self.started:
            m.stop()


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """CA + broker + client certificates, generated once per test session (RSA keygen is
    the slow part)."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def mosquitto_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[BrokerFactory]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (scripts/setup installs it)")
    f = BrokerFactory(tmp_path_factory.mktemp("mosquitto"), tmp_path_factory.mktemp("tls"))
    f._request = request  # TLS material is pulled from the session fixture on first use
    yield f
    f.close()


@pytest.fixture
def mosquitto(mosquitto_factory: BrokerFactory) -> Mosquitto:
    """A plain anonymous Mosquitto; stop()/start()/restart() keep its port."""
    return mosquitto_factory("plain")


@pytest.fixture
def amqtt_broker() -> Iterator[AmqttBroker]:
    b = AmqttBroker()
    b.start()
    yield b
    b.stop()


class Collector:
    """A subscriber (MQTT 5 by default) that records every message it receives."""

    def __init__(self, url_host: str, port: int, topic: str = "dgs/#", *, protocol: int = mqtt.MQTTv5,
                 username: str | None = None, password: str | None = None,
                 tls_ca: Path | None = None) -> None:  # fmt: skip
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        # A persistent session (like a real consumer): the broker queues QoS 1 messages for
        # it across its own reconnects and broker restarts.
        cid = f"collector-{uuid.uuid4().hex[:12]}"
        if protocol == mqtt.MQTTv5:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, cid, protocol=protocol)
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            connect_kw: dict[str, Any] = {"clean_start": False, "properties": props}
        else:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2, cid, clean_session=False, protocol=protocol
            )
            connect_kw = {}
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.topic = topic
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async(url_host, port, 30, **connect_kw)
        self.client.loop_start()
        wait_for(self._subscribed.is_set, 10, "subscription")

    def _on_connect(self, client: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        if not rc.is_failure:
            client.subscribe(self.topic, 1)

    def _on_message(self, client: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def docs(self, suffix: str = "") -> list[dict[str, Any]]:
        with self._lock:
            msgs = list(self.messages)
        return [json.loads(m.payload) for m in msgs if m.topic.endswith(suffix) and m.payload]

    def wait_docs(self, suffix: str, n: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        """Wait until `n` distinct message ids (or docs without ids) arrived on `suffix`."""

        def enough() -> list[dict[str, Any]] | None:
            docs = self.docs(suffix)
            ids = {d.get("msg_id", i) for i, d in enumerate(docs)}
            return docs if len(ids) >= n else None

        return wait_for(enough, timeout_s, f"{n} messages on *{suffix}")  # type: ignore[no-any-return]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(*args: Any, **kw: Any) -> Collector:
        c = Collector(*args, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
