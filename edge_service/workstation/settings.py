"""`[workstation]` settings: where the web workstation listens and who may use it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_service.workstation.auth import check_hash_format


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WorkstationSettings(BaseModel):
    """The web workstation served by `dgs-edge run` (and `dgs-edge demo --serve`).

    enabled: serve the workstation; sessions are then started and stopped from the page
        or the API (not by the [session] timer).
    host / port: bind address. Loopback by default (the appliance's own kiosk screen);
        any other address needs `token_hash` (and should use TLS).
    token_hash: scrypt hash of the shared access token (`dgs-edge workstation-token`).
    tls_certfile / tls_keyfile: serve HTTPS (and WSS) with this certificate.
    hold_results: results are published over MQTT only when the clinician clicks
        "publish" (so a wrong side or order can still be fixed or discarded); false
        publishes as soon as the analysis is done.
    min_free_disk_mb: below this the health is "down" and no session starts.
    view_fps_max: live image rate sent to each browser (the recording keeps every frame).
    jpeg_quality: live image JPEG quality (1-100).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token_hash: str | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    hold_results: bool = True
    max_session_s: float = Field(default=600.0, gt=0, le=3600)
    min_free_disk_mb: float = Field(default=500.0, ge=0)
    view_fps_max: float = Field(default=30.0, gt=0, le=120)
    jpeg_quality: int = Field(default=80, ge=1, le=100)

    @field_validator("token_hash")
    @classmethod
    def _hash(cls, v: str | None) -> str | None:
        if v is not None:
            check_hash_format(v)
        return v

    @model_validator(mode="after")
    def _lan_needs_auth(self) -> WorkstationSettings:
        if not is_loopback(self.host) and self.token_hash is None:
            raise ValueError(
                f"host {self.host!r} is not loopback: set token_hash "
                "(dgs-edge workstation-token) before binding the workstation to the LAN"
            )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together")
        return self
