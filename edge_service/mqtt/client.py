"""paho-mqtt client construction: protocol, TLS, credentials, backoff, MQTT 5 properties."""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_service.errors import BrokerError
from edge_service.mqtt.credentials import load_credentials
from edge_service.mqtt.settings import MqttSettings


def make_client(s: MqttSettings, client_id: str, v5: bool) -> mqtt.Client:
    """A configured, not yet connected client (callbacks and will are set by the caller)."""
    kwargs: dict[str, Any] = {} if v5 else {"clean_session": True}
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        **kwargs,
    )
    c.max_inflight_messages_set(s.inflight_max)
    c.max_queued_messages_set(0)  # bounded by the outbox instead
    # paho annotates ints but only multiplies and sleeps: sub-second backoff works.
    c.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
    creds = load_credentials(s.secrets_file)
    if creds is not None:
        c.username_pw_set(*creds)
    if s.use_tls:
        t = s.tls
        try:
            c.tls_set(
                ca_certs=str(t.ca_file) if t and t.ca_file else None,
                certfile=str(t.cert_file) if t and t.cert_file else None,
                keyfile=str(t.key_file) if t and t.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"cannot load TLS files: {exc}") from exc
        c.tls_insecure_set(False)  # verify the broker's hostname, always
    return c


def publish_properties(v5: bool, schema: str, msg_id: str | None = None) -> Properties | None:
    """MQTT 5 metadata so consumers can route without parsing: content type, schema, id."""
    if not v5:
        return None
    p = Properties(PacketTypes.PUBLISH)
    p.ContentType = "application/json"
    p.PayloadFormatIndicator = 1
    user = [("schema", schema), ("schema_version", schema.rsplit("/", 1)[-1])]
    if msg_id:
        user.append(("msg_id", msg_id))
    p.UserProperty = user
    return p
