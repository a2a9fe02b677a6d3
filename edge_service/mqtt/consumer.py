"""Reference consumer logic: validate, de-duplicate by message id, detect sequence gaps.

Kept free of networking so the same rules can be reused by hospital integrators and tested
on recorded traffic; `dgs-edge subscribe` wires it to a paho client."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from edge_service.errors import InputError
from edge_service.mqtt import topics
from edge_service.mqtt.validation import validate

log = logging.getLogger(__name__)


@dataclass
class Received:
    topic: str
    kind: str
    device: str
    payload: dict[str, Any] | None
    valid: bool
    error: str | None = None
    duplicate: bool = False
    gap: tuple[int, int] | None = None  # missing seq range, inclusive
    received_ts: float = field(default_factory=time.time)

    def record(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "kind": self.kind,
            "device": self.device,
            "received_ts": self.received_ts,
            "valid": self.valid,
            "error": self.error,
            "gap": list(self.gap) if self.gap else None,
            "payload": self.payload,
        }


class Consumer:
    def __init__(self, dedup_window: int = 100_000, detect_gaps: bool = True) -> None:
        # In a shared-subscription group each consumer sees only part of every device's
        # sequence: gaps are then computed over the group's shared store (mqtt/store.py).
        self.detect_gaps = detect_gaps
        self._seen: OrderedDict[str, None] = OrderedDict()  # bounded LRU of message ids
        self._window = dedup_window
        self._last_seq: dict[str, int] = {}  # "site/device" -> highest seq seen
        self.counts = {"received": 0, "valid": 0, "invalid": 0, "duplicates": 0, "gaps": 0,
                       "missing": 0}  # fmt: skip

    def handle(self, topic: str, payload: bytes) -> Received:
        self.counts["received"] += 1
        parts = topics.parse(topic)
        kind = parts["kind"] if parts else "unknown"
        device = f"{parts['site']}/{parts['device']}" if parts else "?"
        try:
            doc = json.loads(payload) if payload else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._invalid(topic, kind, device, None, f"not JSON: {exc}")
        if doc is None:
            # An empty retained message clears a status topic: legal, nothing to validate.
            return Received(topic, kind, device, None, True)
        if parts is None:
            return self._invalid(topic, kind, device, doc, "topic is not part of dgs/v1")
        try:
            validate(doc)
        except InputError as exc:
            return self._invalid(topic, kind, device, doc, str(exc))
        if isinstance(doc, dict) and (doc.get("site"), doc.get("device")) != (
            parts["site"],
            parts["device"],
        ):
            return self._invalid(topic, kind, device, doc, "payload site/device differ from topic")
        self.counts["valid"] += 1
        rec = Received(topic, kind, device, doc, True)
        msg_id = doc.get("msg_id")
        if msg_id is None:
            return rec  # status and live data carry no id: they are state, not history
        if msg_id in self._seen:
            self._seen.move_to_end(msg_id)
            self.counts["duplicates"] += 1
            rec.duplicate = True
            return rec
        self._seen[msg_id] = None
        if len(self._seen) > self._window:
            self._seen.popitem(last=False)
        seq = int(doc["seq"])
        last = self._last_seq.get(device)
        if self.detect_gaps and last is not None and seq > last + 1:
            rec.gap = (last + 1, seq - 1)
            self.counts["gaps"] += 1
            self.counts["missing"] += seq - last - 1
            log.warning("sequence gap from %s: missing %d..%d", device, last + 1, seq - 1)
        if last is None or seq > last:
            self._last_seq[device] = seq
        return rec

    def _invalid(self, topic: str, kind: str, device: str, doc: Any, error: str) -> Received:
        self.counts["invalid"] += 1
        log.warning("invalid message on %s: %s", topic, error)
        return Received(topic, kind, device, doc if isinstance(doc, dict) else None, False, error)
