"""Say why a TLS connection to the broker fails: paho reports all of them alike."""

from __future__ import annotations

import socket
import ssl
from typing import Any


def classify_tls(client: Any, host: str, port: int, timeout_s: float = 3.0) -> str | None:
    """Handshake with the broker using the client's own TLS context and say why TLS fails
    (a permanent configuration problem), or None when TLS is fine or the network is down
    (transient). paho only reports "connection failed" for all of these."""
    ctx: ssl.SSLContext | None = getattr(client, "_ssl_context", None)
    if ctx is None:
        return None
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:
        return None  # unreachable: transient
    try:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.settimeout(timeout_s)
            try:
                # TLS 1.3 sends the verdict on our certificate after the handshake: a
                # refusal arrives as an alert on the first read. A broker that is happy
                # simply waits for CONNECT (timeout).
                tls.recv(1)
            except TimeoutError:
                return None
            except ssl.SSLError as exc:
                return f"the broker at {host}:{port} rejected the client certificate ({exc.reason})"
            return None
    except ssl.SSLCertVerificationError as exc:
        return (
            f"TLS: the certificate of the broker at {host}:{port} failed verification "
            f"({exc.verify_message}); check [mqtt.tls] ca_file"
        )
    except ssl.SSLError as exc:
        if "ALERT" in str(exc.reason or ""):
            return f"the broker at {host}:{port} rejected the client certificate ({exc.reason})"
        return f"TLS handshake with the broker at {host}:{port} failed ({exc.reason})"
    except OSError:
        return None
    finally:
        raw.close()
