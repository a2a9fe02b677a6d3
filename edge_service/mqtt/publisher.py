"""The appliance's MQTT publisher: retained availability, durable QoS 1 events/results,
rate-limited QoS 0 live streams. See docs/mqtt.md for the contract."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from edge_service.errors import BrokerError, InputError
from edge_service.mqtt import payloads as pl
from edge_service.mqtt import topics
from edge_service.mqtt.client import make_client, publish_properties
from edge_service.mqtt.outbox import Entry, Outbox, OutboxFull
from edge_service.mqtt.settings import MqttSettings
from edge_service.mqtt.status import StatusMixin
from edge_service.mqtt.tlsprobe import classify_tls
from edge_service.mqtt.validation import validate

log = logging.getLogger(__name__)

# CONNACK reasons that retrying will not fix without an operator (v5 codes and v3 rc 4/5).
_AUTH_REFUSED = {"Bad user name or password", "Not authorized", "Banned"}


class Publisher(StatusMixin):
    """Publishes one device's API. Thread-safe; all QoS 1 traffic goes through the outbox."""

    def __init__(self, settings: MqttSettings, outbox_path: Path | str) -> None:
        self.s = settings
        self.outbox = Outbox(outbox_path, settings.outbox_max_messages, settings.fsync)
        # Unique per site/device, and slugs only: client ids appear in broker logs.
        self.client_id = f"dgs-{settings.site}-{settings.device}"
        self._lock = threading.Lock()  # guards the maps and counters below
        self._send_lock = threading.Lock()  # keeps outbox order == wire order
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._early: dict[int, Any] = {}  # PUBACKs that beat publish() returning
        self._other_mids: set[int] = set()  # status/live mids: not outbox entries
        self._connected = threading.Event()
        self._status_acked = threading.Event()
        self._status_mid: int | None = None
        self._auth_refused: str | None = None
        # TLS failures (untrusted broker certificate, our client certificate refused) do not
        # heal by retrying: reported as what they are, and wait_connected() raises.
        self._permanent: str | None = None
        self._probing = threading.Lock()
        self.last_error: str | None = None
        self._alarms: set[str] = set()
        self._status: dict[str, Any] = {}
        self._live_last: dict[str, float] = {}
        self.stats = {"connects": 0, "disconnects": 0, "published": 0, "acked": 0,
                      "rejected": 0, "live_dropped": 0}  # fmt: skip
        self._started = False
        self._stopping = False
        self._proto = settings.protocol
        self._v5_ok = False  # an MQTT 5 session was accepted at least once
        self._v5_closed = 0  # MQTT 5 connections the broker dropped before CONNACK
        self._fell_back = False
        self._socket_opened = False
        self._connack_seen = False
        try:
            # Birth id (Sparkplug-style bdSeq): persisted in the outbox file, so it keeps
            # increasing across restarts; the will of a connection carries the same id as
            # its birth, so consumers can tell a stale "offline" from the current one.
            self.bd_seq = self.outbox.next_counter("bdseq")
            self._client = self._make_client()
        except BaseException:
            self.outbox.close()
            raise

    # ---------------------------------------------------------------- set-up
    @property
    def v5(self) -> bool:
        return self._proto == "5"

    @property
    def protocol(self) -> str:
        """The MQTT version in use ('5', or '3.1.1' after a fallback)."""
        return self._proto

    def _make_client(self) -> mqtt.Client:
        c = make_client(self.s, self.client_id, self.v5)
        payload, props = self._status_payload("offline")
        c.will_set(topics.status(self.s.site, self.s.device), payload, 1, True, props)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_connect_fail = self._on_connect_fail
        c.on_socket_open = self._on_socket_open
        return c

    def _props(self, schema: str, msg_id: str | None = None) -> Properties | None:
        return publish_properties(self.v5, schema, msg_id)

    # ------------------------------------------- status (see StatusMixin)
    def _untracked(self, mid: int) -> bool:
        """Remember a mid that is not an outbox entry; True when its ack already came."""
        with self._lock:
            if self._early.pop(mid, None) is not None:
                return True
            self._other_mids.add(mid)
            return False

    @property
    def permanent_error(self) -> str | None:
        """Why the broker can never be reached with this configuration (TLS/auth), or None."""
        return self._permanent or (
            f"broker {self.s.url} refused the connection: {self._auth_refused}"
            if self._auth_refused
            else None
        )

    # ------------------------------------------------------------ lifecycle
    def start(self, status: Mapping[str, Any] | None = None) -> None:
        """Connect in the background (a down broker is not an error: the outbox keeps
        everything and the client retries with backoff) and queue the outbox backlog."""
        if status:
            self.set_status(status)
        backlog = self.outbox.pending()
        if backlog:
            log.info("outbox %s holds %d unacknowledged messages; resending in order",
                     self.outbox.path, len(backlog))  # fmt: skip
        with self._send_lock:
            for e in backlog:
                self._send(e)
        self._connect()
        self._started = True

    def _connect(self) -> None:
        try:
            self._client.connect_async(self.s.host, self.s.port, self.s.keepalive_s,
                                       clean_start=True if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY)  # fmt: skip
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to {self.s.url}: {exc}") from exc
        self._client.loop_start()

    def _maybe_fall_back(self, *, definitive: bool) -> None:
        """Brokers that only speak 3.1.1 refuse an MQTT 5 CONNECT (definitive), drop it
        without a CONNACK, or never answer (amqtt). After a refusal, a CONNACK timeout or two
        drops, rebuild the client as 3.1.1 and re-queue the outbox (paho cannot change the
        protocol of a live client)."""
        if self._permanent or not (
            self.v5 and self.s.protocol_fallback and not self._v5_ok and not self._stopping
        ):
            return
        self._v5_closed += 1
        if self._fell_back or (not definitive and self._v5_closed < 2):
            return
        self._fell_back = True
        log.warning("broker %s does not accept MQTT 5; falling back to MQTT 3.1.1", self.s.url)
        threading.Thread(target=self._rebuild_as_311, name="mqtt-fallback", daemon=True).start()

    def _rebuild_as_311(self) -> None:
        old = self._client
        old.loop_stop()
        sock = old.socket()
        if sock is not None:
            sock.close()  # the 3.1.1-only broker never answered; do not leave it hanging
        with self._send_lock:
            self._proto = "3.1.1"
            with self._lock:
                self._inflight.clear()
                self._early.clear()
                self._other_mids.clear()
            self._client = self._make_client()
            for e in self.outbox.pending():
                self._send(e)
            if not self._stopping:
                self._connect()

    def wait_connected(self, timeout_s: float) -> bool:
        """True once connected; raises BrokerError when the broker refused our credentials."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.permanent_error:
                raise BrokerError(self.permanent_error)
            if self._connected.wait(0.05):
                return True
        if self.permanent_error:
            raise BrokerError(self.permanent_error)
        return False

    def wait_drained(self, timeout_s: float) -> bool:
        """True when every event/result has been acknowledged by the broker."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.outbox.count() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Clean shutdown: publish `stopped` (no last will), disconnect, close the outbox.
        Unacknowledged messages stay in the outbox for the next start."""
        if not self._started:
            self.outbox.close()
            return
        if self._connected.is_set():
            self._status_acked.clear()
            with self._lock:
                self._status_mid = None
            mid, acked = self._publish_status("stopped")
            with self._lock:
                self._status_mid = mid
                if acked or mid not in self._other_mids:  # already acknowledged
                    self._status_acked.set()
            self._status_acked.wait(timeout_s)
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False
        self.outbox.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self.stop()

    # ------------------------------------------------------------ QoS1 API
    def event(
        self,
        session_id: str,
        kind: str,
        data: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> str:
        """Queue a session event durably; returns its message id.

        key: makes the message id stable (derived from site/device/session/kind/key), so an
        event re-published after a crash is the same message for consumers; None gives a
        random id."""
        if kind not in pl.EVENT_KINDS:
            raise InputError(f"event kind must be one of {pl.EVENT_KINDS}, not {kind!r}")
        topic = self._topic(session_id, "events")
        body = dict(data or {})
        pl.check_no_pii(body, "event data")
        msg_id = (
            str(uuid.uuid4())
            if key is None
            else pl.result_msg_id(self.s.site, self.s.device, session_id, f"event/{kind}/{key}")
        )

        def build(seq: int) -> tuple[str, str, bytes, str]:
            doc = pl.envelope(pl.SCHEMA_EVENT, msg_id, seq, self.s.site, self.s.device, session_id)
            doc.update(event=kind, data=body)
            return msg_id, topic, pl.dumps(doc), pl.SCHEMA_EVENT

        self._append(build)
        return msg_id

    def result(self, session_id: str, result_doc: Mapping[str, Any]) -> str:
        """Queue the session's result (dgs.session-result/1) durably. The message id is
        derived from site/device/session, so publishing it twice is idempotent downstream."""
        topic = self._topic(session_id, "result")
        pl.check_result_pii(result_doc, "result")
        if result_doc.get("session_id", session_id) != session_id:
            raise InputError("result session_id differs from the session it is published for")
        # A correction (result version n+1) gets a new msg_id (edge_service/integration).
        version = int(result_doc.get("version") or 1)
        msg_id = pl.result_msg_id(self.s.site, self.s.device, session_id, version=version)
        doc_copy = dict(result_doc)

        def build(seq: int) -> tuple[str, str, bytes, str]:
            doc = pl.envelope(pl.SCHEMA_RESULT, msg_id, seq, self.s.site, self.s.device, session_id)
            doc["result"] = doc_copy
            return msg_id, topic, pl.dumps(doc), pl.SCHEMA_RESULT

        try:
            validate(pl.envelope(pl.SCHEMA_RESULT, msg_id, 1, self.s.site, self.s.device,
                                 session_id) | {"result": doc_copy})  # fmt: skip
        except InputError as exc:
            # Published anyway (a result is never dropped), but integrators will see it
            # flagged: say so here first.
            log.warning("result of session %s does not match its schema: %s", session_id, exc)
        self._append(build)
        if self.s.fhir:
            self.fhir(session_id, result_doc)
        return msg_id

    def fhir(self, session_id: str, result_doc: Mapping[str, Any]) -> str:
        """Queue a FHIR R4 transaction Bundle (DiagnosticReport + Observations + Device)."""
        from edge_service.mqtt.fhir import bundle

        topic = self._topic(session_id, "fhir")
        version = int(result_doc.get("version") or 1)
        msg_id = pl.result_msg_id(self.s.site, self.s.device, session_id, "fhir", version=version)
        b = bundle(self.s.site, self.s.device, session_id, result_doc)

        def build(seq: int) -> tuple[str, str, bytes, str]:
            doc = pl.envelope(pl.SCHEMA_FHIR, msg_id, seq, self.s.site, self.s.device, session_id)
            doc["bundle"] = b
            return msg_id, topic, pl.dumps(doc), pl.SCHEMA_FHIR

        self._append(build)
        return msg_id

    def procedure_result(self, session_id: str, doc: Mapping[str, Any]) -> str:
        """Queue an injection procedure's result (dgs.procedure-result/1) durably on
        .../sessions/{id}/procedure; idempotent like `result`. With [mqtt] fhir, a FHIR
        Procedure bundle follows on the fhir topic (edge_service/procedure/fhir.py)."""
        topic = self._topic(session_id, "procedure")
        pl.check_result_pii(doc, "procedure result")
        if doc.get("session_id", session_id) != session_id:
            raise InputError("procedure result session_id differs from its session")
        version = int(doc.get("version") or 1)
        msg_id = pl.result_msg_id(self.s.site, self.s.device, session_id, "procedure", version)
        doc_copy = dict(doc)

        def build(seq: int) -> tuple[str, str, bytes, str]:
            env = pl.envelope(
                pl.SCHEMA_PROCEDURE, msg_id, seq, self.s.site, self.s.device, session_id
            )
            env["procedure"] = doc_copy
            return msg_id, topic, pl.dumps(env), pl.SCHEMA_PROCEDURE

        try:
            validate(pl.envelope(pl.SCHEMA_PROCEDURE, msg_id, 1, self.s.site, self.s.device,
                                 session_id) | {"procedure": doc_copy})  # fmt: skip
        except InputError as exc:
            log.warning("procedure result of %s does not match its schema: %s", session_id, exc)
        self._append(build)
        if self.s.fhir:
            from edge_service.procedure.fhir import procedure_bundle

            fmsg = pl.result_msg_id(
                self.s.site, self.s.device, session_id, "fhir-procedure", version
            )
            b = procedure_bundle(self.s.site, self.s.device, session_id, doc)
            ftopic = self._topic(session_id, "fhir")

            def fbuild(seq: int) -> tuple[str, str, bytes, str]:
                env = pl.envelope(pl.SCHEMA_FHIR, fmsg, seq, self.s.site, self.s.device, session_id)
                env["bundle"] = b
                return fmsg, ftopic, pl.dumps(env), pl.SCHEMA_FHIR

            self._append(fbuild)
        return msg_id

    def _topic(self, session_id: str, leaf: str) -> str:
        try:
            return topics.session(self.s.site, self.s.device, session_id, leaf)
        except ValueError as exc:
            raise InputError(str(exc)) from exc

    def _append(self, build: Any) -> None:
        with self._send_lock:
            try:
                entry = self.outbox.append(build)
            except OutboxFull:
                first = "outbox_full" not in self._alarms
                with self._lock:
                    self._alarms.add("outbox_full")
                log.error("MQTT outbox full (%d messages): new messages are refused until the "
                          "broker acknowledges the backlog", self.outbox.max_messages)  # fmt: skip
                if first and self._connected.is_set():
                    self._publish_status("online")
                raise
            if entry is None:
                log.info("message already pending in the outbox; not queued twice")
                return
            self._send(entry)

    def _send(self, e: Entry) -> None:
        info = self._client.publish(e.topic, e.payload, 1, False, self._props(e.schema, e.msg_id))
        with self._lock:
            self.stats["published"] += 1
            early = self._early.pop(info.mid, None)
            if early is None:
                self._inflight[info.mid] = e.seq
        if early is not None:
            self._acked(e.seq, early)

    def _acked(self, seq: int, reason: Any) -> None:
        if getattr(reason, "is_failure", False):
            # e.g. ACL denial (MQTT 5 PUBACK 0x87): keep the message, raise the alarm.
            msg = f"broker rejected message seq {seq}: {reason}"
            self.outbox.mark_rejected(seq, str(reason))
            with self._lock:
                self.stats["rejected"] += 1
                self.last_error = msg
                self._alarms.add("rejected")
            log.error("%s; kept in the outbox %s", msg, self.outbox.path)
            return
        self.outbox.ack(seq)
        with self._lock:
            self.stats["acked"] += 1
            if "outbox_full" in self._alarms and self.outbox.count() < self.outbox.max_messages:
                self._alarms.discard("outbox_full")

    # ------------------------------------------------------------ QoS0 API
    def live_angles(self, sample: Mapping[str, Any]) -> bool:
        return self._live("angles", pl.SCHEMA_LIVE_ANGLES, sample)

    def live_measurements(self, sample: Mapping[str, Any]) -> bool:
        return self._live("measurements", pl.SCHEMA_LIVE_MEASUREMENTS, sample)

    def _live(self, stream: str, schema: str, sample: Mapping[str, Any]) -> bool:
        """Fire-and-forget: dropped (False) when offline or over the rate limit, because
        live data is not history and must not pile up behind results."""
        now = time.monotonic()
        with self._lock:
            last = self._live_last.get(stream)
            if not self._connected.is_set() or (
                last is not None and now - last < 1.0 / self.s.live_rate_hz
            ):
                self.stats["live_dropped"] += 1
                return False
            self._live_last[stream] = now
        # A NaN from a frame without a nerve must not break the live view (JSON has no NaN):
        # the field is left out, like any value that was not measured.
        doc = {k: v for k, v in sample.items()
               if not (isinstance(v, float) and not math.isfinite(v))}  # fmt: skip
        doc.update(schema=schema, site=self.s.site, device=self.s.device, ts=time.time())
        pl.check_no_pii(doc, "live sample")
        try:
            payload = pl.dumps(doc)
        except InputError as exc:
            with self._lock:
                self.stats["live_dropped"] += 1
            log.warning("live %s sample dropped: %s", stream, exc)
            return False
        info = self._client.publish(
            topics.live(self.s.site, self.s.device, stream), payload, 0, False, self._props(schema)
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # Not sent (the link dropped a moment ago): no callback will ever come for this
            # mid, so it must not be remembered (the set would grow over months).
            return False
        self._untracked(info.mid)
        return True

    # ------------------------------------------------------------ callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connack_seen = True
        if reason.is_failure:
            text = str(reason)
            self.last_error = f"connection refused: {text}"
            if text in _AUTH_REFUSED:
                self._auth_refused = text
                with self._lock:
                    self._alarms.add("broker_auth")
            if text == "Unsupported protocol version":
                self._maybe_fall_back(definitive=True)
            log.error("broker %s refused the connection: %s (outbox keeps %d messages)",
                      self.s.url, text, self._pending_safe())  # fmt: skip
            return
        self._auth_refused = None
        self._permanent = None
        with self._lock:
            for a in ("broker_tls", "broker_auth"):
                self._alarms.discard(a)
        self._v5_ok = self._v5_ok or self.v5
        with self._lock:
            self.stats["connects"] += 1
        self._connected.set()
        log.info("connected to %s as %s", self.s.url, self.client_id)
        self._publish_status("online")  # birth: retained, replaces the last will

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            with self._lock:
                self.stats["disconnects"] += 1
            if not self._stopping:  # the next process takes the next id itself
                self._next_birth()
        elif self._socket_opened and not self._connack_seen:
            if self.s.use_tls:
                # A refused client certificate (TLS 1.3) also looks like a dropped CONNECT:
                # find out which before concluding the broker does not speak MQTT 5.
                self._probe_tls(then_fall_back=True)
            else:
                self._maybe_fall_back(definitive=False)  # TCP worked, MQTT 5 CONNECT dropped
        if was and not self._stopping:
            log.warning("disconnected from %s (%s); %d messages kept in the outbox",
                        self.s.url, reason, self._pending_safe())  # fmt: skip

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        self._socket_opened = True
        self._connack_seen = False
        if not (self.v5 and self.s.protocol_fallback and not self._v5_ok):
            return

        def check() -> None:
            # Some 3.1.1-only brokers (amqtt) neither answer nor close an MQTT 5 CONNECT:
            # only this very socket, still open and still without any CONNACK, counts.
            if client is self._client and client.socket() is sock and not self._connack_seen:
                self._maybe_fall_back(definitive=True)

        t = threading.Timer(self.s.connack_timeout_s, check)
        t.daemon = True
        t.start()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        if self._permanent:
            return  # already said what is wrong; paho keeps retrying in case it is fixed
        if self.s.use_tls:
            self._probe_tls(then_fall_back=False)
        self.last_error = f"broker {self.s.url} unreachable"
        log.warning("broker %s unreachable; retrying with backoff, %d messages kept in the "
                    "outbox", self.s.url, self._pending_safe())  # fmt: skip

    def _probe_tls(self, *, then_fall_back: bool) -> None:
        if not self._probing.acquire(blocking=False):
            return

        def work() -> None:
            try:
                why = classify_tls(self._client, self.s.host, self.s.port)
            finally:
                self._probing.release()
            if why is not None:
                first = self._permanent != why
                self._permanent = why
                self.last_error = why
                with self._lock:
                    self._alarms.add("broker_tls")
                if first:
                    log.error("%s; results are kept in the outbox %s", why, self.outbox.path)
            elif then_fall_back:
                self._maybe_fall_back(definitive=False)

        threading.Thread(target=work, name="mqtt-tls-probe", daemon=True).start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if mid in self._other_mids:
                self._other_mids.discard(mid)
                if mid == self._status_mid:
                    self._status_acked.set()
                return
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early[mid] = reason
                return
        self._acked(seq, reason)
