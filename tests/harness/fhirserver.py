"""A real FHIR R4 server for tests: tools/fhir/server.mjs (Medplum's FHIR router: REST,
search, transactions with conditional create/update, over its in-memory repository; every
written resource validated against the R4 StructureDefinitions), on 127.0.0.1 and an
ephemeral port (or a given one, to bring a "down" server up). See tools/fhir/server.mjs for
what the thin HTTP front adds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tools" / "fhir" / "server.mjs"
ROUTER = ROOT / "tools" / "fhir" / "node_modules" / "@medplum" / "fhir-router"
HOST = "127.0.0.1"


def have_fhir_server() -> bool:
    return shutil.which("node") is not None and ROUTER.is_dir()


def _node_args() -> list[str]:
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    major = int(out.stdout.strip().lstrip("v").split(".")[0])
    # @medplum/core wants Node 22's global WebSocket at import; Node 20 has it behind a flag.
    return ["node", "--experimental-websocket"] if major < 22 else ["node"]


@dataclass
class FhirServer:
    port: int
    proc: subprocess.Popen[str]
    token: str = ""
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/fhir"

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers={"Accept": "application/fhir+json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def resources(self, rtype: str, query: str = "") -> list[dict[str, Any]]:
        doc = self.get(f"/{rtype}?_count=1000{'&' + query if query else ''}")
        return [e["resource"] for e in doc.get("entry") or []]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log is not None:
            self.log.unlink(missing_ok=True)


def start_fhir_server(port: int = 0, token: str = "", timeout_s: float = 60.0) -> FhirServer:
    env = dict(os.environ, PORT=str(port), DGS_FHIR_TEST_TOKEN=token)
    # Output to a file, not a pipe: nobody reads a pipe after start, and a full one blocks.
    log = Path(tempfile.mkstemp(prefix="dgs-fhir-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen([*_node_args(), str(SERVER)], cwd=SERVER.parent, env=env,
                                stdout=out, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = re.search(r"listening (\d+)", log.read_text())
        if m:
            return FhirServer(int(m.group(1)), proc, token, log)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(5)
    raise RuntimeError("FHIR test server did not start: " + log.read_text()[-2000:])


@pytest.fixture
def fhir_server() -> Iterator[FhirServer]:
    if not have_fhir_server():
        pytest.skip("tools/fhir is not installed (scripts/setup installs it)")
    s = start_fhir_server()
    yield s
    s.stop()
