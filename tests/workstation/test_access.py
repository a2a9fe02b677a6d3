"""LAN access control: a hashed token, login cookie, bearer token, and TLS on a real uvicorn."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import connect

from edge_service.config import AppConfig
from edge_service.workstation.auth import hash_token, verify_token
from edge_service.workstation.settings import WorkstationSettings
from tests.harness.broker import make_tls_material

TOKEN = "correct horse battery staple"


def test_token_hash_roundtrip_and_format() -> None:
    h = hash_token(TOKEN)
    assert h.startswith("scrypt$") and TOKEN not in h
    assert verify_token(TOKEN, h)
    assert not verify_token(TOKEN + "x", h)
    assert not verify_token(TOKEN, "scrypt$garbage")
    assert hash_token(TOKEN) != h  # salted


def test_lan_binding_requires_a_token() -> None:
    with pytest.raises(ValidationError, match="not loopback"):
        WorkstationSettings(host="0.0.0.0")
    with pytest.raises(ValidationError, match="token_hash must be"):
        WorkstationSettings(host="192.168.1.20", token_hash="plain-text-password")
    with pytest.raises(ValidationError, match="go together"):
        WorkstationSettings(tls_certfile=Path("cert.pem"))
    ok = WorkstationSettings(host="0.0.0.0", token_hash=hash_token(TOKEN))
    assert ok.host == "0.0.0.0"
    with pytest.raises(ValidationError, match=r"unknown|extra"):
        AppConfig.model_validate({"workstation": {"prot": 1}})


@pytest.mark.sim
def test_token_guards_api_page_and_stream(make_workstation: Any) -> None:
    ws = WorkstationSettings(port=0, token_hash=hash_token(TOKEN))
    w = make_workstation(ws=ws, follow_redirects=False)
    c = w.client
    assert c.get("/healthz").status_code == 200  # health probes need no token
    assert c.get("/api/v1/sessions").status_code == 401
    assert c.get("/metrics").status_code == 401
    assert c.get("/").status_code == 303  # the page sends you to the login form
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    assert c.get("/api/v1/sessions", headers=hdr).status_code == 200
    assert c.get("/api/v1/sessions", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/login", data={"token": "wrong"}).status_code == 401
    r = c.post("/login", data={"token": TOKEN})
    assert r.status_code == 303 and "dgs_ws" in r.cookies
    cookie = r.cookies["dgs_ws"]
    assert TOKEN not in cookie
    with httpx.Client(base_url=w.url, cookies={"dgs_ws": cookie}) as c2:
        assert c2.get("/api/v1/sessions").status_code == 200
    with httpx.Client(base_url=w.url, cookies={"dgs_ws": "forged"}) as c3:
        assert c3.get("/api/v1/sessions").status_code == 401
    url = w.url.replace("http", "ws") + "/api/v1/live"
    with pytest.raises((InvalidStatus, WebSocketException)), connect(url) as s:
        s.recv(timeout=5)
    with connect(url, additional_headers=hdr) as s:
        assert '"type": "status"' in str(s.recv(timeout=10))


@pytest.mark.sim
def test_tls(make_workstation: Any, tmp_path: Path) -> None:
    tls = make_tls_material(tmp_path / "tls")
    ws = WorkstationSettings(port=0, tls_certfile=tls.server_cert, tls_keyfile=tls.server_key)
    w = make_workstation(ws=ws, verify=ssl.create_default_context(cafile=str(tls.ca)))
    assert w.url.startswith("https://")
    assert w.client.get("/healthz").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(w.url + "/healthz", verify=ssl.create_default_context(cafile=str(tls.other_ca)))


def test_committed_openapi_matches_the_app() -> None:
    import json

    from edge_service.workstation.openapi import openapi_doc

    committed = json.loads(
        (Path(__file__).parents[2] / "docs/workstation-openapi.json").read_text()
    )
    assert committed == json.loads(json.dumps(openapi_doc())), (
        "regenerate: python -m edge_service.workstation.openapi > docs/workstation-openapi.json"
    )
    for p in ("/healthz", "/metrics", "/api/v1/sessions", "/api/v1/sessions/{sid}/stop"):
        assert p in committed["paths"]
