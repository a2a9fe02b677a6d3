"""`[fhir]` config section (light: imported by edge_service.config)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FhirSettings(BaseModel):
    """`[fhir]`: where the transaction Bundle of every result version is POSTed (optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    url: str | None = Field(
        default=None,
        description="FHIR R4 base URL (http(s)://HOST:PORT/PATH); unset: no FHIR delivery",
    )
    token_env: str = Field(
        default="DGS_FHIR_TOKEN",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the bearer token (wins over token_file)",
    )
    token_file: Path | None = Field(
        default=None, description="file holding the bearer token on one line (chmod 600)"
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="per request")
    retry_min_s: float = Field(default=2.0, gt=0, description="first back-off after a failure")
    retry_max_s: float = Field(default=300.0, gt=0, description="longest back-off")
    max_attempts: int = Field(
        default=0, ge=0, description="park a bundle after this many failures (0: retry forever)"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        sp = urlsplit(v.strip())
        if sp.scheme not in ("http", "https") or not sp.hostname:
            raise ValueError(f"{v!r}: expected http(s)://HOST[:PORT]/PATH of a FHIR server")
        try:
            sp.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"{v!r}: {exc}") from None
        return v.strip().rstrip("/")

    @property
    def destinations(self) -> list[str]:
        """The forward queue's view: one destination, the base URL."""
        return [self.url] if self.url else []


def fhir_problems(s: FhirSettings) -> list[tuple[str, str]]:
    """(config key, why) for `--validate-config`/preflight: the token must be readable
    where it will be read (the environment variable wins, as at send time)."""
    import os

    from edge_service.errors import ConfigError

    out: list[tuple[str, str]] = []
    if s.url is None:
        for key in sorted(s.model_fields_set - {"url"}):
            out.append((f"fhir.{key}", "is not used without fhir.url"))
        return out
    if s.token_file is not None and not os.environ.get(s.token_env, "").strip():
        from edge_service.integration.fhirnet import read_token_file

        try:
            read_token_file(s.token_file)
        except ConfigError as exc:
            out.append(("fhir.token_file", str(exc)))
    return out
