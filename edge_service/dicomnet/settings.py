"""`[worklist]` and `[dicom]` config sections (hospital integration)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_service.dicomnet.urls import parse_destination, parse_dicom_url
from edge_service.errors import ConfigError


class WorklistSettings(BaseModel):
    """Modality worklist (C-FIND). Without `url` orders are typed in by hand."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, description="dicom://AET@HOST:PORT of the worklist SCP")
    calling_aet: str = Field(default="DGSEDGE", min_length=1, max_length=16)
    station_aet: str | None = Field(
        default=None, description="ScheduledStationAETitle to filter on (None: all stations)"
    )
    modality: str = Field(default="US", description="ScheduledProcedureStep Modality filter")
    poll_interval_s: float = Field(default=60.0, gt=0, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_dicom_url(v)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v


class DicomSettings(BaseModel):
    """UIDs and PACS destinations for the cine, SR and PDF."""

    model_config = ConfigDict(extra="forbid")

    uid_root: str = Field(
        default="2.25",
        pattern=r"^[1-9][0-9]*(\.(0|[1-9][0-9]*))*$",
        max_length=40,
        description="organisation UID root; 2.25 = UUID-derived UIDs (no registered root needed)",
    )
    calling_aet: str = Field(default="DGSEDGE", min_length=1, max_length=16)
    destinations: list[str] = Field(
        default_factory=list,
        description="dicom://AET@HOST:PORT (C-STORE) and/or dicomweb+http://HOST:PORT/PATH",
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    retry_min_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(
        default=0, ge=0, description="park an item after this many failures (0: retry forever)"
    )
    mqtt_identifiers: Literal["accession", "none"] = Field(
        default="accession",
        description="order identifiers allowed in MQTT payloads: the accession number (in the "
        "result's `order` block and the FHIR bundle's basedOn) or none; topics never carry any",
    )

    @field_validator("destinations")
    @classmethod
    def _dests(cls, v: list[str]) -> list[str]:
        for d in v:
            try:
                parse_destination(d)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v
