"""The retained status document of the publisher (docs/mqtt.md "Status document"):
fields merged from the service, alarms, link counters and the birth id (`bdSeq`)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from edge_service import __version__
from edge_service.errors import InputError
from edge_service.mqtt import payloads as pl
from edge_service.mqtt import topics
from edge_service.mqtt.outbox import Outbox
from edge_service.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

_RESERVED_STATUS = {"schema", "state", "ts", "site", "device", "link", "alarms", "bdSeq"}
# Alarms the publisher raises itself; others come from the service via set_alarm().
ALARMS = ("outbox_full", "rejected", "broker_tls", "broker_auth", "disk_low", "disk_full",
          "clip_lost", "probe_frozen", "recording_failed")  # fmt: skip


class StatusMixin:
    """Status part of `Publisher` (which provides the attributes declared here)."""

    s: MqttSettings
    outbox: Outbox
    bd_seq: int
    stats: dict[str, int]
    last_error: str | None
    _lock: threading.Lock
    _status: dict[str, Any]
    _alarms: set[str]
    _started: bool
    _connected: threading.Event
    _client: mqtt.Client

    def _props(self, schema: str, msg_id: str | None = None) -> Properties | None:
        raise NotImplementedError

    def _untracked(self, mid: int) -> bool:
        raise NotImplementedError

    def _status_payload(self, state: str) -> tuple[bytes, Properties | None]:
        doc: dict[str, Any] = {
            "schema": pl.SCHEMA_STATUS,
            "state": state,
            "ts": time.time(),
            "site": self.s.site,
            "device": self.s.device,
            "versions": {"software": __version__, **self.s.versions},
            "bdSeq": self.bd_seq,
        }
        with self._lock:
            for k, v in self._status.items():
                if k == "versions" and isinstance(v, Mapping):
                    doc["versions"].update(v)
                else:
                    doc[k] = v
            doc["link"] = {**self.stats, "outbox_pending": self._pending_safe(),
                           "last_error": self.last_error}  # fmt: skip
            doc["alarms"] = sorted(self._alarms)
        return pl.dumps(doc), self._props(pl.SCHEMA_STATUS)

    def _pending_safe(self) -> int:
        try:
            return self.outbox.count()
        except Exception:  # closed during shutdown: status must still go out
            return -1

    def _publish_status(self, state: str) -> tuple[int, bool]:
        payload, props = self._status_payload(state)
        info = self._client.publish(
            topics.status(self.s.site, self.s.device), payload, 1, True, props
        )
        return info.mid, self._untracked(info.mid)

    def set_status(self, status: Mapping[str, Any]) -> None:
        """Merge clip/probe/version fields into the retained status and re-publish it."""
        pl.check_no_pii(status, "status")
        with self._lock:
            for k, v in status.items():
                if k in _RESERVED_STATUS:
                    raise InputError(f"status field {k!r} is managed by the publisher")
                self._status[k] = v
        if self._started and self._connected.is_set():
            self._publish_status("online")

    def set_alarm(self, name: str, on: bool = True) -> None:
        """Raise or clear a named alarm; the retained status is re-published on a change."""
        if name not in ALARMS:
            raise InputError(f"alarm must be one of {ALARMS}, not {name!r}")
        with self._lock:
            changed = (name in self._alarms) != on
            if on:
                self._alarms.add(name)
            else:
                self._alarms.discard(name)
        if changed and self._started and self._connected.is_set():
            self._publish_status("online")

    @property
    def alarms(self) -> list[str]:
        with self._lock:
            return sorted(self._alarms)

    def status_snapshot(self) -> dict[str, Any]:
        """The status document as it would be published now (for a health endpoint)."""
        payload, _ = self._status_payload("online" if self._connected.is_set() else "offline")
        doc: dict[str, Any] = json.loads(payload)
        return doc

    def _next_birth(self) -> None:
        """A new bdSeq for the next connection; its will must carry it too."""
        try:
            self.bd_seq = self.outbox.next_counter("bdseq")
        except Exception as exc:  # disk full: keep counting in memory
            log.warning("cannot persist the status birth id: %s", exc)
            self.bd_seq += 1
        payload, props = self._status_payload("offline")
        self._client.will_set(topics.status(self.s.site, self.s.device), payload, 1, True, props)
