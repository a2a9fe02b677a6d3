"""Destination URLs (design.md contract 5): `dicom://AET@HOST:PORT` for DIMSE (worklist
C-FIND, C-STORE) and `dicomweb+http(s)://HOST:PORT/PATH` for STOW-RS."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from edge_service.errors import ConfigError

_AET = re.compile(r"^[\x20-\x7e]{1,16}$")


@dataclass(frozen=True)
class DicomUrl:
    aet: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"dicom://{self.aet}@{self.host}:{self.port}"


@dataclass(frozen=True)
class DicomWebUrl:
    base: str  # http(s)://host:port/path, without a trailing slash

    def __str__(self) -> str:
        return "dicomweb+" + self.base


Destination = DicomUrl | DicomWebUrl


def parse_destination(url: str) -> Destination:
    """Parse one destination URL; a ConfigError names what is wrong."""
    u = url.strip()
    if u.startswith(("dicomweb+http://", "dicomweb+https://")):
        rest = u[len("dicomweb+") :]
        sp = urlsplit(rest)
        if not sp.hostname:
            raise ConfigError(f"{url!r}: a DICOMweb destination needs a host")
        return DicomWebUrl(rest.rstrip("/"))
    if u.startswith("dicom://"):
        sp = urlsplit(u)
        aet = sp.username or ""
        if not aet or not _AET.match(aet) or "\\" in aet:
            raise ConfigError(f"{url!r}: needs an AE title (1-16 ASCII characters) before '@'")
        try:
            port = sp.port
        except ValueError:
            port = None
        if not sp.hostname or port is None:
            raise ConfigError(f"{url!r}: expected dicom://AET@HOST:PORT")
        return DicomUrl(aet, sp.hostname, port)
    raise ConfigError(f"{url!r}: expected dicom://AET@HOST:PORT or dicomweb+http://HOST:PORT/PATH")


def parse_dicom_url(url: str) -> DicomUrl:
    d = parse_destination(url)
    if not isinstance(d, DicomUrl):
        raise ConfigError(f"{url!r}: the worklist is queried over DIMSE: dicom://AET@HOST:PORT")
    return d
