"""MQTT API of the appliance: topic tree, durable outbox, publisher, embedded broker."""

from edge_service.mqtt.broker import EmbeddedBroker
from edge_service.mqtt.outbox import Outbox, OutboxFull
from edge_service.mqtt.publisher import Publisher
from edge_service.mqtt.settings import MqttSettings, TlsSettings

__all__ = ["EmbeddedBroker", "MqttSettings", "Outbox", "OutboxFull", "Publisher", "TlsSettings"]
