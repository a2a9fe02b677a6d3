"""`dgs-edge subscribe`: reference consumer of the MQTT API (validate, de-duplicate, detect
sequence gaps; JSON Lines or a live table)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from edge_service.errors import BrokerError, ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "subscribe",
        help="consume the MQTT API: validate, de-duplicate, detect gaps",
        description="Subscribe to dgs/v1/{site}/{device}/#. Credentials come from "
        "DGS_MQTT_USERNAME/DGS_MQTT_PASSWORD or DGS_MQTT_SECRETS_FILE, never from arguments.",
    )
    p.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--site", help="only this site (default: all)")
    p.add_argument("--device", help="only this device (default: all)")
    p.add_argument("--jsonl", type=Path, help="append one JSON object per message to this file")
    p.add_argument("--table", action="store_true", help="show a live table (rich)")
    p.add_argument("--count", type=int, help="exit after this many new (non-duplicate) messages")
    p.add_argument("--duration-s", type=float, help="exit after this many seconds")
    p.add_argument("--share", metavar="GROUP", help="join shared subscription $share/GROUP/...")
    p.add_argument("--client-id", help="persistent session id (the broker queues while away)")
    p.add_argument("--ca-file", type=Path, help="CA bundle for mqtts:// brokers")
    p.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    p.add_argument("--store", metavar="URL",
                   help="durable registry: sqlite:///PATH (one machine) or postgresql://... "
                   "(shared by a --share group); idempotent by msg_id, latest version per "
                   "session, gaps computed across the group")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge_service.mqtt import topics
    from edge_service.mqtt.consumer import Consumer, Received
    from edge_service.mqtt.credentials import load_credentials
    from edge_service.mqtt.settings import MqttSettings, TlsSettings

    try:
        s = MqttSettings(url=args.broker, protocol=args.protocol,
                         tls=TlsSettings(ca_file=args.ca_file) if args.ca_file else None)  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"bad --broker: {exc}") from exc
    topic = topics.subscription(args.site, args.device)
    if args.share:
        topic = f"$share/{args.share}/{topic}"
    consumer = Consumer(detect_gaps=not args.share)
    from edge_service.mqtt.store import open_store

    store = open_store(args.store) if args.store else None
    out: IO[str] | None = args.jsonl.open("a") if args.jsonl else None
    v5 = args.protocol == "5"
    persistent = bool(args.client_id)
    kw: dict[str, Any] = {} if v5 else {"clean_session": not persistent}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, args.client_id or "",
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, **kw)  # fmt: skip
    creds = load_credentials()
    if creds:
        client.username_pw_set(*creds)
    if s.use_tls:
        client.tls_set(ca_certs=str(args.ca_file) if args.ca_file else None)
    done = threading.Event()
    new = 0
    refused: list[str] = []
    rows: list[Received] = []
    lock = threading.Lock()

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        if rc.is_failure:
            refused.append(str(rc))
            done.set()
            return
        c.subscribe(topic, 1)

    def on_message(c: Any, u: Any, msg: Any) -> None:
        nonlocal new
        rec = consumer.handle(msg.topic, msg.payload)
        if rec.duplicate:
            return
        stored = store is not None and rec.valid and bool(rec.payload and rec.payload.get("msg_id"))
        if stored and not store.add(rec.device, rec.kind, rec.payload, rec.received_ts):  # type: ignore[union-attr,arg-type]
            consumer.counts["duplicates"] += 1  # stored already (by the group or earlier)
            return
        with lock:
            rows.append(rec)
            del rows[:-20]
        if out is not None:
            out.write(json.dumps(rec.record(), separators=(",", ":")) + "\n")
            out.flush()
        elif not args.table:
            print(json.dumps(rec.record(), separators=(",", ":")), flush=True)
        new += 1
        if args.count and new >= args.count:
            done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    conn_kw: dict[str, Any] = {}
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 86400 if persistent else 0
        conn_kw = {"clean_start": not persistent, "properties": props}
    try:
        client.connect(s.host, s.port, 30, **conn_kw)
    except OSError as exc:
        raise BrokerError(f"cannot reach broker {args.broker}: {exc}") from exc
    client.loop_start()
    deadline = time.monotonic() + args.duration_s if args.duration_s else None
    try:
        if args.table:
            _live_table(done, deadline, rows, lock, consumer)
        else:
            while not done.wait(0.1):
                if deadline and time.monotonic() >= deadline:
                    break
    except KeyboardInterrupt:
        pass  # Ctrl-C is the normal way to end a live consumer: still print the summary
    finally:
        client.disconnect()
        client.loop_stop()
        if out is not None:
            out.close()
    if refused:
        raise BrokerError(f"broker {args.broker} refused the connection: {refused[0]}")
    if store is not None:
        # Across everything the store holds (all consumers of the group), per device.
        group_gaps = store.gaps()
        consumer.counts["gaps"] = sum(len(g) for g in group_gaps.values())
        consumer.counts["missing"] = sum(b - a + 1 for g in group_gaps.values() for a, b in g)
        consumer.counts["sessions"] = len(store.sessions())
        store.close()
    print("summary: " + ", ".join(f"{k}={v}" for k, v in consumer.counts.items()),
          file=sys.stderr)  # fmt: skip
    return 1 if consumer.counts["invalid"] or consumer.counts["gaps"] else 0


def _live_table(done: threading.Event, deadline: float | None, rows: list[Any],
                lock: threading.Lock, consumer: Any) -> None:  # fmt: skip
    from rich.live import Live
    from rich.table import Table

    def render() -> Table:
        t = Table(title="dgs/v1 " + " ".join(f"{k}={v}" for k, v in consumer.counts.items()))
        for col in ("device", "kind", "session", "seq", "valid", "note"):
            t.add_column(col)
        with lock:
            snapshot = list(rows)
        for r in snapshot:
            p = r.payload or {}
            note = r.error or (
                f"gap {r.gap[0]}..{r.gap[1]}" if r.gap else p.get("event") or p.get("state", "")
            )
            t.add_row(r.device, r.kind, str(p.get("session_id", "")), str(p.get("seq", "")),
                      "yes" if r.valid else "NO", str(note))  # fmt: skip
        return t

    with Live(render(), refresh_per_second=4) as live:
        while not done.wait(0.25):
            live.update(render())
            if deadline and time.monotonic() >= deadline:
                break
