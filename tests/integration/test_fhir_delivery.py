"""FHIR delivery against a real FHIR R4 server (tools/fhir: Medplum's FHIR router, started
on loopback): the transaction files as-is, a correction updates what was filed (amended, no
second report), a replay creates nothing new, and down / timeout / 5xx / 4xx / 401 are
retried or parked with the server's reason, through the durable forward queue."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_service.dicomnet.settings import DicomSettings
from edge_service.integration.corrections import supersede
from edge_service.integration.delivery import HospitalDelivery, fhir_key
from edge_service.integration.fhirnet import post_transaction
from edge_service.integration.fhirsettings import FhirSettings
from edge_service.mqtt.broker import free_port
from tests.harness.fhirserver import FhirServer, have_fhir_server, start_fhir_server
from tests.harness.hospital import ORDER, record_session

pytestmark = [
    pytest.mark.sim,
    pytest.mark.skipif(not have_fhir_server(), reason="scripts/setup installs tools/fhir"),
]
SITE, DEVICE = "site-a", "dgs-01"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One analysed session under ORDER, recorded once; tests copy it."""
    rec = tmp_path_factory.mktemp("fhirdel") / "rec"
    record_session(rec)
    return rec


@pytest.fixture
def rec(recorded: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "rec"
    shutil.copytree(recorded, out)
    return out


@pytest.fixture
def server() -> Iterator[FhirServer]:
    s = start_fhir_server()
    yield s
    s.stop()


def _delivery(tmp_path: Path, **fhir: Any) -> HospitalDelivery:
    return HospitalDelivery(DicomSettings(), FhirSettings(**fhir), tmp_path / "state",
                            site=SITE, device=DEVICE)  # fmt: skip


def _row(d: HospitalDelivery, sid: str, version: int) -> dict[str, Any]:
    assert d.fhir_queue is not None
    rows = [r for r in d.fhir_queue.items(sid) if r["sop_uid"] == fhir_key(sid, version)]
    assert len(rows) == 1
    return rows[0]


def test_filed_then_amended_in_place(server: FhirServer, rec: Path, tmp_path: Path) -> None:
    d = _delivery(tmp_path, url=server.url)
    try:
        v1, view = d.export(rec)
        assert view["order"] == {"accession_number": ORDER.accession_number}  # MQTT view
        assert d.drain(30)
        sid = v1["session_id"]
        assert _row(d, sid, 1)["state"] == "sent"
        reps = server.resources("DiagnosticReport")
        assert len(reps) == 1 and reps[0]["status"] == "final"
        pats = server.resources("Patient")
        assert len(pats) == 1 and pats[0]["identifier"][0]["value"] == ORDER.patient_id
        # References were rewritten by the server from urn:uuid to the stored resources.
        assert reps[0]["subject"]["reference"] == f"Patient/{pats[0]['id']}"
        assert reps[0]["basedOn"][0]["identifier"]["value"] == ORDER.accession_number
        study = server.resources("ImagingStudy")
        assert (
            len(study) == 1
            and reps[0]["imagingStudy"][0]["reference"] == f"ImagingStudy/{study[0]['id']}"
        )
        n_obs = len(server.resources("Observation"))
        assert n_obs >= 3 and len(reps[0]["result"]) == n_obs
        first_version = reps[0]["meta"]["versionId"]

        # A replay of version 1 (an answer lost after the server committed) adds nothing.
        post_transaction(d.fhir, (rec / "fhir-v1.json").read_bytes(), None)
        assert len(server.resources("DiagnosticReport")) == 1
        assert len(server.resources("Observation")) == n_obs
        assert len(server.resources("Patient")) == 1

        # The correction: version 2 updates the same report (amended), nothing is added.
        fixed = dict(v1, findings=["corrected: restricted sciatic nerve gliding"])
        v2 = supersede(rec, fixed, site=SITE, device=DEVICE, settings=d.dicom, delivery=d)
        assert v2["version"] == 2
        assert d.drain(30)
        assert _row(d, sid, 2)["state"] == "sent"
        reps = server.resources("DiagnosticReport")
        assert len(reps) == 1 and reps[0]["status"] == "amended"
        assert reps[0]["conclusion"] == "corrected: restricted sciatic nerve gliding"
        assert reps[0]["meta"]["versionId"] != first_version
        obs = server.resources("Observation")
        assert len(obs) == n_obs and {o["status"] for o in obs} == {"amended"}
        for t in ("Patient", "Device", "Organization", "ImagingStudy"):
            assert len(server.resources(t)) == 1, t
        hist = server.get(f"/DiagnosticReport/{reps[0]['id']}/_history")
        # One resource, its versions: filed, replayed (an update, not a new report), amended.
        assert [e["resource"]["status"] for e in hist["entry"]] == ["amended", "final", "final"]
    finally:
        d.close()


def test_down_then_up_is_retried_and_an_older_version_never_overtakes(
    rec: Path, tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}/fhir"
    d = _delivery(tmp_path, url=url, retry_min_s=0.2, retry_max_s=0.4, timeout_s=5)
    srv = None
    try:
        v1, _ = d.export(rec)
        sid = v1["session_id"]
        assert d.fhir_queue is not None
        t0 = time.time()
        assert d.fhir_queue.process_due() == 0
        row = _row(d, sid, 1)
        assert row["state"] == "pending" and row["attempts"] == 1
        assert "Connection refused" in row["last_error"]
        # The correction is made while the server is down: version 1 must not be sent
        # after version 2 (it would undo it), so it is superseded.
        v2 = supersede(rec, dict(v1, findings=["v2"]), site=SITE, device=DEVICE,
                       settings=d.dicom, delivery=d)  # fmt: skip
        assert _row(d, sid, 1)["state"] == "superseded"
        with d.fhir_queue._lock:  # back-off honours retry_min_s
            nt = d.fhir_queue._db.execute("SELECT MAX(next_try) FROM items WHERE state = 'pending' AND attempts = 1").fetchone()[0]  # fmt: skip
        assert nt is None or 0.15 <= nt - t0 <= 1.5
        srv = start_fhir_server(port=port)
        assert d.drain(30)
        assert _row(d, sid, 2)["state"] == "sent" and v2["version"] == 2
        reps = srv.resources("DiagnosticReport")
        assert len(reps) == 1 and reps[0]["status"] == "amended" and reps[0]["conclusion"] == "v2"
        assert d.status()[url]["superseded"] == 1 and d.status()[url]["sent"] == 1
    finally:
        d.close()
        if srv is not None:
            srv.stop()


def test_max_attempts_parks_with_the_reason(rec: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}/fhir"
    d = _delivery(tmp_path, url=url, retry_min_s=0.05, retry_max_s=0.05, max_attempts=2)
    try:
        v1, _ = d.export(rec)
        assert d.drain(10)  # nothing pending any more: parked after 2 attempts
        row = _row(d, v1["session_id"], 1)
        assert row["state"] == "parked" and row["attempts"] == 2
        assert "refused" in row["last_error"]
    finally:
        d.close()


def test_timeout_is_transient(rec: Path, tmp_path: Path) -> None:
    """A server that accepts the connection and never answers (a real socket)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    url = f"http://127.0.0.1:{lsock.getsockname()[1]}/fhir"
    d = _delivery(tmp_path, url=url, timeout_s=0.5, retry_min_s=30)
    try:
        v1, _ = d.export(rec)
        assert d.fhir_queue is not None
        t = time.monotonic()
        d.fhir_queue.process_due()
        assert time.monotonic() - t < 5  # timeout_s honoured
        row = _row(d, v1["session_id"], 1)
        assert row["state"] == "pending" and "timed out" in row["last_error"]
    finally:
        d.close()
        lsock.close()


class _Status503(http.server.BaseHTTPRequestHandler):
    """Fault injection (a server answering 503 cannot be caused with the real one)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "transient", "diagnostics": "maintenance"}]}).encode()  # fmt: skip
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: Any) -> None:
        pass


def test_5xx_is_retried(rec: Path, tmp_path: Path) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status503)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    d = _delivery(tmp_path, url=f"http://127.0.0.1:{httpd.server_address[1]}/fhir",
                  retry_min_s=30)  # fmt: skip
    try:
        v1, _ = d.export(rec)
        assert d.fhir_queue is not None
        d.fhir_queue.process_due()
        row = _row(d, v1["session_id"], 1)
        assert row["state"] == "pending" and "HTTP 503 maintenance" in row["last_error"]
    finally:
        d.close()
        httpd.shutdown()


def test_rejected_bundle_is_parked_with_the_servers_reason(
    server: FhirServer, rec: Path, tmp_path: Path
) -> None:
    d = _delivery(tmp_path, url=server.url)
    try:
        assert d.fhir_queue is not None
        bad = tmp_path / "bad.json"
        b = json.loads(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Observation", "status": "final"},
             "request": {"method": "POST", "url": "Observation"}}]}))  # fmt: skip
        bad.write_text(json.dumps(b))
        d.fhir_queue.enqueue("s-bad", "fhir", "fhir:s-bad:v1", bad)
        assert d.drain(10)
        row = d.fhir_queue.items("s-bad")[0]
        assert row["state"] == "parked"
        assert "HTTP 400" in row["last_error"] and "Observation.code" in row["last_error"]
        assert d.status()[server.url]["last_error"] == row["last_error"]
        assert server.resources("Observation") == []
    finally:
        d.close()


def test_token_from_file_and_environment(rec: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    srv = start_fhir_server(token="s3cr3t-token")
    tok = tmp_path / "token"
    tok.write_text("wrong-token\n")
    os.chmod(tok, 0o600)
    monkeypatch.delenv("DGS_TEST_FHIR_TOKEN", raising=False)
    d = _delivery(tmp_path, url=srv.url, token_file=tok, token_env="DGS_TEST_FHIR_TOKEN")
    try:
        v1, _ = d.export(rec)
        assert d.drain(10)
        row = _row(d, v1["session_id"], 1)
        assert row["state"] == "parked" and "HTTP 401" in row["last_error"]
        assert "bearer token" in row["last_error"]
        tok.write_text("s3cr3t-token\n")  # fixed file: read again at the retry
        assert d.retry_parked() == 1 and d.drain(10)
        assert _row(d, v1["session_id"], 1)["state"] == "sent"
        assert len(srv.resources("DiagnosticReport")) == 1
        # The environment wins over the file (a wrong env token is refused).
        monkeypatch.setenv("DGS_TEST_FHIR_TOKEN", "not-it")
        v2 = supersede(rec, dict(v1, findings=["x"]), site=SITE, device=DEVICE,
                       settings=d.dicom, delivery=d)  # fmt: skip
        assert d.drain(10) and _row(d, v2["session_id"], 2)["state"] == "parked"
        monkeypatch.setenv("DGS_TEST_FHIR_TOKEN", "s3cr3t-token")
        assert d.retry_parked() == 1 and d.drain(10)
        assert _row(d, v2["session_id"], 2)["state"] == "sent"
        assert srv.resources("DiagnosticReport")[0]["status"] == "amended"
    finally:
        d.close()
        srv.stop()
