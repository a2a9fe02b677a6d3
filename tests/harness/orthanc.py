"""A real Orthanc (Debian `orthanc` + `orthanc-dicomweb`) for tests: PACS (C-STORE, STOW-RS)
and modality worklist (its ModalityWorklists plugin serving `.wl` files from a folder).

Started in a temp dir on ephemeral ports with its own JSON config; ready when `GET /system`
answers. Orthanc 1.10 cannot bind to one address, so remote access is refused by config
(`RemoteAccessAllowed: false`) and the DICOM port only answers known calling AETs' stores
from loopback in practice of the test machine."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_service.mqtt.broker import free_port

ORTHANC_BIN = Path("/usr/sbin/Orthanc")
PLUGINS = Path("/usr/share/orthanc/plugins")
HOST = "127.0.0.1"
AET = "ORTHANC"


@dataclass
class Orthanc:
    dir: Path
    dicom_port: int
    http_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def worklists(self) -> Path:
        return self.dir / "worklists"

    @property
    def dicom_url(self) -> str:
        return f"dicom://{AET}@{HOST}:{self.dicom_port}"

    @property
    def http(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def stow_url(self) -> str:
        return f"dicomweb+http://{HOST}:{self.http_port}/dicom-web"

    def config(self) -> dict[str, Any]:
        return {
            "Name": "dgs-test-pacs",
            "StorageDirectory": str(self.dir / "db"),
            "IndexDirectory": str(self.dir / "db"),
            "DicomAet": AET,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            # Worklist queries are only answered for known modalities: register the appliance.
            "DicomModalities": {"dgsedge": ["DGSEDGE", HOST, 104]},
            "Plugins": [
                str(PLUGINS / "libModalityWorklists.so"),
                str(PLUGINS / "libOrthancDicomWeb.so"),
            ],
            "Worklists": {"Enable": True, "Database": str(self.worklists)},
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            # Orthanc re-encodes answers to this; Latin-1 (its default) cannot carry e.g. "Ō".
            "DefaultEncoding": "Utf8",
            "SaveJobs": False,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 8,
        }

    def start(self, timeout_s: float = 60.0) -> None:
        self.worklists.mkdir(parents=True, exist_ok=True)
        (self.dir / "db").mkdir(exist_ok=True)
        cfg = self.dir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        log = open(self.dir / "orthanc.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([str(ORTHANC_BIN), str(cfg)], stdout=log, stderr=log,
                                     cwd=self.dir)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited: {(self.dir / 'orthanc.log').read_text()[-2000:]}"
                )
            try:
                self.get("/system")
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not answer /system in time") from None
                time.sleep(0.1)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.http + path, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def find(self, level: str = "Instance", **query: str) -> list[dict[str, Any]]:
        req = urllib.request.Request(
            self.http + "/tools/find",
            data=json.dumps({"Level": level, "Query": query, "Expand": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def have_orthanc() -> bool:
    return ORTHANC_BIN.exists() and (PLUGINS / "libModalityWorklists.so").exists()


@pytest.fixture
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A fresh Orthanc (PACS + worklist + DICOMweb) per test."""
    if not have_orthanc():
        pytest.skip("Orthanc is not installed (scripts/setup installs it)")
    o = Orthanc(tmp_path_factory.mktemp("orthanc"), free_port(HOST), free_port(HOST))
    o.start()
    yield o
    o.stop()
