"""Publish an analysed session's result like a live session's (`dgs-edge analyze --broker`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge_service.errors import BrokerError, ConfigError

log = logging.getLogger(__name__)

OUTBOX_NAME = ".outbox.sqlite"


def publish_result(
    result: dict[str, Any],
    session_dir: Path,
    url: str,
    site: str | None = None,
    device: str | None = None,
    timeout_s: float = 15.0,
    kind: str = "result",
) -> str:
    """Queue the result durably (outbox in the session directory) and wait for the broker's
    acknowledgement. Returns the message id. A broker that cannot be reached within
    `timeout_s` is a BrokerError; the result stays in the outbox and goes out on the next
    run against the same session, so nothing is lost."""
    from pydantic import ValidationError

    from edge_service.mqtt.publisher import Publisher
    from edge_service.mqtt.settings import MqttSettings

    fields: dict[str, Any] = {"url": url}
    if site:
        fields["site"] = site
    if device:
        fields["device"] = device
    try:
        settings = MqttSettings(**fields)
    except ValidationError as exc:
        raise ConfigError(f"bad broker settings: {exc.errors()[0]['msg']}") from exc
    outbox = Path(session_dir) / OUTBOX_NAME
    pub = Publisher(settings, outbox)
    try:
        pub.start()
        sid = str(result["session_id"])
        # kind "procedure": an injection session's dgs.procedure-result/1 on its own topic.
        msg_id = (
            pub.procedure_result(sid, result) if kind == "procedure" else pub.result(sid, result)
        )
        if not pub.wait_drained(timeout_s):
            raise BrokerError(
                f"broker {url} did not acknowledge within {timeout_s:g} s "
                f"({pub.last_error or 'unreachable'}); the result is kept in {outbox} "
                "and is sent by the next `dgs-edge analyze --broker` run"
            )
        log.info("result %s acknowledged by %s", msg_id, url)
        return msg_id
    finally:
        pub.stop()
