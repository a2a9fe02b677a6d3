"""Settings of the MQTT publisher (pydantic v2, composed into the root config by the lead)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Topic segments must be safe MQTT levels and carry no personal data: a short slug only.
# fullmatch, never match with `$`: `$` also matches before a trailing newline.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TlsSettings(BaseModel):
    """TLS for the broker connection. The server is always verified against `ca_file`
    (or the system store when it is None); a client certificate is optional."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = Field(
        default=None, description="PEM CA bundle that signed the broker cert"
    )
    cert_file: Path | None = Field(default=None, description="optional client certificate (PEM)")
    key_file: Path | None = Field(default=None, description="private key of the client certificate")


class MqttSettings(BaseModel):
    """Where and how results are published. Credentials are never part of this model:
    they come from the environment (`DGS_MQTT_USERNAME`/`DGS_MQTT_PASSWORD`) or from the
    secrets file named here (two lines: username, password)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        default="mqtt://127.0.0.1:1883", description="mqtt://host:port or mqtts://host:port"
    )
    site: str = Field(default="site-a", description="site slug, first topic level under dgs/v1")
    device: str = Field(default="dgs-01", description="device slug; also the MQTT client id stem")
    protocol: str = Field(default="5", description="'5' (MQTT 5, default) or '3.1.1' (fallback)")
    protocol_fallback: bool = Field(
        default=True, description="drop to 3.1.1 when the broker refuses MQTT 5"
    )
    connack_timeout_s: float = Field(
        default=3.0, gt=0, description="wait this long for CONNACK before trying 3.1.1"
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive")
    reconnect_min_s: float = Field(default=0.5, gt=0, description="first reconnect delay")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="reconnect backoff ceiling")
    live_rate_hz: float = Field(
        default=20.0, gt=0, le=200, description="max rate of each live stream"
    )
    outbox_max_messages: int = Field(
        default=100_000, ge=10, description="outbox bound; when full new events are refused loudly"
    )
    inflight_max: int = Field(
        default=20, ge=1, le=65535, description="QoS1 messages in flight at once"
    )
    fsync: bool = Field(
        default=True, description="fsync the outbox on every write (power-loss safe)"
    )
    fhir: bool = Field(default=False, description="also publish a FHIR R4 bundle per result")
    tls: TlsSettings | None = Field(default=None, description="TLS options (mqtts:// implies TLS)")
    secrets_file: Path | None = Field(
        default=None, description="file with username and password lines"
    )
    versions: dict[str, str] = Field(
        default_factory=dict, description="firmware/model versions announced in status"
    )

    @field_validator("site", "device")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SEGMENT.fullmatch(v):
            raise ValueError("must be a short slug [A-Za-z0-9_.-] (no '/', '+', '#', spaces)")
        return v

    @field_validator("protocol")
    @classmethod
    def _proto(cls, v: str) -> str:
        if v not in ("5", "3.1.1"):
            raise ValueError("protocol must be '5' or '3.1.1'")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError("url must look like mqtt://host:port or mqtts://host:port")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"port in {v!r} must be a number 1..65535") from None
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"port {port} outside 1..65535")
        if parts.username or parts.password:
            # Credentials in a URL end up in shell history, process lists and logs.
            raise ValueError("put credentials in the environment or secrets_file, not the URL")
        return v

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if self.use_tls else 1883)

    @property
    def use_tls(self) -> bool:
        return urlsplit(self.url).scheme in ("mqtts", "ssl") or self.tls is not None
