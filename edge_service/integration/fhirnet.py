"""FHIR delivery: `[fhir]` settings, the bearer token, and one POST of a transaction Bundle.

The bundle (edge_service/mqtt/fhir.py) is built to be replayable: Device, Organization and
Patient are conditional creates (`ifNoneExist`), everything of the session a conditional
update by identifier, so sending it again (a retry after a timeout whose answer was lost, a
restart) updates what was filed instead of adding a second report, and version n+1
(`status: amended`) replaces version n. Failures are classified like the DICOM ones
(edge_service/dicomnet/send.py): unreachable, timeout, 5xx, 408 and 429 are transient
(retried with back-off by the forward queue); any other 4xx is permanent (parked with the
server's OperationOutcome text as the reason)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edge_service.dicomnet.send import PermanentSendError, TransientSendError
from edge_service.errors import ConfigError
from edge_service.integration.fhirsettings import FhirSettings
from edge_service.mqtt.credentials import read_private_text

#: A token file holds one line; anything much larger is the wrong file.
MAX_TOKEN_BYTES = 16 * 1024
FHIR_JSON = "application/fhir+json"


def read_token_file(path: Path) -> str:
    """The token from a private one-line file, or ConfigError with one line."""
    where = f"FHIR token file {path}"
    text = read_private_text(path, where, MAX_TOKEN_BYTES, "one line").strip()
    if not text or any(ord(c) < 0x21 or c == "\x7f" for c in text):
        raise ConfigError(f"{where} must hold one token (no spaces or control characters)")
    return text


def load_token(s: FhirSettings) -> str | None:
    """The bearer token: the environment variable `token_env`, else `token_file`, else none."""
    env = os.environ.get(s.token_env, "").strip()
    if env:
        return env
    if s.token_file is not None:
        return read_token_file(s.token_file)
    return None


def _reason(raw: bytes) -> str:
    """The OperationOutcome's issue texts (or the raw body), short enough for one line."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(doc, dict) and doc.get("resourceType") == "OperationOutcome":
        parts = []
        for i in doc.get("issue") or []:
            if not isinstance(i, dict):
                continue
            msg = i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code")
            where = ",".join(str(e) for e in i.get("expression") or i.get("location") or [])
            parts.append(f"{msg} ({where})" if where else str(msg))
        return "; ".join(parts)[:300]
    return text[:300]


def post_transaction(s: FhirSettings, body: bytes, token: str | None) -> str:
    """POST one transaction Bundle to the base URL; a short note on success, else a
    TransientSendError / PermanentSendError naming the server's reason."""
    if not s.url:
        raise PermanentSendError("no [fhir] url configured")
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(s.url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=s.timeout_s) as r:
            code, raw = r.status, r.read()
    except urllib.error.HTTPError as exc:
        msg = f"FHIR {s.url}: HTTP {exc.code} {_reason(exc.read(64 * 1024))}".strip()
        if exc.code >= 500 or exc.code in (408, 429):
            raise TransientSendError(msg) from None
        raise PermanentSendError(msg) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise TransientSendError(f"FHIR {s.url}: {getattr(exc, 'reason', exc)}") from None
    return _check_response(s.url, code, raw)


def _check_response(url: str, code: int, raw: bytes) -> str:
    try:
        doc: Any = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise PermanentSendError(f"FHIR {url}: HTTP {code} without a JSON Bundle") from None
    if not isinstance(doc, dict) or doc.get("type") != "transaction-response":
        raise PermanentSendError(f"FHIR {url}: HTTP {code}, not a transaction-response")
    statuses = [str((e.get("response") or {}).get("status", "")) for e in doc.get("entry") or []]
    bad = [st for st in statuses if st[:1] != "2"]
    if bad:
        raise PermanentSendError(f"FHIR {url}: entries refused ({', '.join(bad[:3])})")
    created = sum(st.startswith("201") for st in statuses)
    return f"FHIR HTTP {code}: {created} created, {len(statuses) - created} updated"


def send_bundle_file(s: FhirSettings, path: Path) -> str:
    """The forward queue's sender for FHIR rows: the token is read at every attempt, so a
    rotated token (or a fixed file after a 401) is used by the next retry."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise PermanentSendError(f"cannot read {path.name}: {exc.strerror}") from None
    try:
        token = load_token(s)
    except ConfigError as exc:
        raise PermanentSendError(str(exc)) from None
    return post_transaction(s, body, token)
