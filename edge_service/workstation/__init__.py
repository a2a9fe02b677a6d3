"""The clinic workstation: a web page and an HTTP API on top of the live session service."""

from __future__ import annotations

from edge_service.workstation.settings import WorkstationSettings

__all__ = ["WorkstationSettings"]
