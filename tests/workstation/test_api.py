"""The workstation HTTP API (contract 6) on a real uvicorn, phantom probe, virtual clip and the
shipped model: every route, the bad requests, the live stream, publish over real Mosquitto."""

from __future__ import annotations

import csv
import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.harness.broker import Collector
from tests.workstation.conftest import Workstation

pytestmark = pytest.mark.sim

ORDER = {"accession_number": "ACC-0001", "patient_id": "PAT-A"}


def _start(w: Workstation, side: str = "left", **over: Any) -> str:
    r = w.client.post("/api/v1/sessions", json={"side": side, "protocol": "exam", **ORDER, **over})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_health_metrics_and_openapi(make_workstation: Any) -> None:
    w = make_workstation()
    h = w.client.get("/healthz")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] in ("ok", "degraded")
    assert {"disk", "probe", "clip", "broker"} <= set(body["checks"])
    m = w.client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    for name in ("dgs_frames_acquired_total", 'dgs_frames_dropped_total{reason="detection"}',
                 "dgs_disk_free_bytes", "dgs_session_acquiring 0"):  # fmt: skip
        assert name in m.text
    paths = w.client.get("/openapi.json").json()["paths"]
    for p in ("/healthz", "/metrics", "/api/v1/sessions", "/api/v1/sessions/{sid}",
              "/api/v1/sessions/{sid}/stop"):  # fmt: skip
        assert p in paths
    assert w.client.get("/").status_code == 200
    assert "app.js" in w.client.get("/").text


def test_healthz_is_503_when_the_disk_is_full(make_workstation: Any) -> None:
    w = make_workstation()
    w.service.s.min_free_disk_mb = 1e12  # more than any disk: nothing could be recorded
    h = w.client.get("/healthz")
    assert h.status_code == 503 and h.json()["status"] == "down"
    r = w.client.post("/api/v1/sessions", json={"side": "left", "protocol": "exam", **ORDER})
    assert r.status_code == 409 and "free" in r.json()["detail"]


def test_session_lifecycle_and_bad_requests(
    make_workstation: Any, mosquitto: Any, tmp_path: Path
) -> None:
    from edge_service.mqtt import MqttSettings, Publisher

    pub = Publisher(MqttSettings(url=mosquitto.url, site="s1", device="d1"), tmp_path / "ob.sqlite")
    pub.start()
    col = Collector("127.0.0.1", mosquitto.port, "dgs/v1/s1/d1/#")
    try:
        assert pub.wait_connected(10)
        w = make_workstation(publisher=pub)
        c = w.client
        # bad requests: a clear 4xx, nothing started
        assert (
            c.post("/api/v1/sessions", json={"side": "up", "protocol": "exam", **ORDER}).status_code
            == 422
        )
        assert (
            c.post("/api/v1/sessions", json={"side": "left", "protocol": "exam"}).status_code == 422
        )
        assert (
            c.post(
                "/api/v1/sessions", json={"side": "left", "protocol": "jog", **ORDER}
            ).status_code
            == 422
        )
        assert c.post("/api/v1/sessions/nope/stop").status_code == 404
        assert c.get("/api/v1/sessions/nope").status_code == 404
        assert c.get("/api/v1/sessions").json()["sessions"] == []

        sid = _start(w)
        # a second start while acquiring: 409, and the first session goes on untouched
        r = c.post("/api/v1/sessions", json={"side": "right", "protocol": "exam", **ORDER})
        assert r.status_code == 409 and sid in r.json()["detail"]
        d = w.wait_frames(sid, 25)
        assert d["state"] == "acquiring" and d["result"] is None and d["report_url"] is None
        assert "dgs_session_acquiring 1" in c.get("/metrics").text
        assert c.get(f"/api/v1/sessions/{sid}/report").status_code == 404  # not yet
        s = c.post(f"/api/v1/sessions/{sid}/stop")
        assert s.status_code == 200 and s.json()["state"] in ("analysing", "done")
        d = w.wait_state(sid, ("done", "failed"))
        assert d["state"] == "done", d["error"]
        assert c.post(f"/api/v1/sessions/{sid}/stop").status_code == 409
        res = d["result"]
        assert res["schema"] == "dgs.session-result/1.1" and res["side"] == "left"
        assert res["nerve"]["ap_diameter_mm"] > 9  # the demo's affected (swollen) side
        dq = res["data_quality"]
        # every frame the probe delivered is recorded; each was analysed or dropped (counted)
        rows = list(csv.DictReader((w.root / "recordings" / _dir(w, sid) / "frames.csv").open()))
        assert dq["frames_recorded"] == len(rows) >= 25
        assert dq["frames_analysed"] + dq["dropped_for_detection"] == dq["frames_recorded"]
        assert dq["n_frames"] == dq["frames_analysed"]
        # the result comes first; cine.dcm and the final session.json right after
        w.wait_for(lambda: w.client.get(f"/api/v1/sessions/{sid}").json()["recording_finalised"])
        meta = json.loads((w.root / "recordings" / _dir(w, sid) / "session.json").read_text())
        assert meta["complete"] is True
        assert meta["extra"]["live"]["frames_recorded"] == len(rows)
        assert meta["extra"]["workstation"]["accession_number"] == ORDER["accession_number"]
        assert meta["patient_id"] == ORDER["patient_id"]
        assert d["report_url"] and c.get(d["report_url"]).status_code == 200
        pdf = c.get(d["report_pdf_url"])
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        listed = c.get("/api/v1/sessions").json()["sessions"]
        assert [x["id"] for x in listed] == [sid] and listed[0]["state"] == "done"
        assert "dgs_frames_acquired_total 0" not in c.get("/metrics").text
        # held for review: nothing published until the clinician says so
        assert col.docs("/result") == []
        assert c.post(f"/api/v1/sessions/{sid}/publish").json()["published"] is True
        docs = col.wait_docs("/result", 1)
        assert docs[0]["session_id"] == sid
        # published: no relabel, no discard any more
        assert c.patch(f"/api/v1/sessions/{sid}", json={"side": "right"}).status_code == 409
        assert c.delete(f"/api/v1/sessions/{sid}").status_code == 409
    finally:
        col.close()
        pub.stop()


def _dir(w: Workstation, sid: str) -> str:
    return next(p.name for p in (w.root / "recordings").iterdir() if p.name.endswith(sid))


def test_live_stream_survives_a_browser_that_goes_away(make_workstation: Any) -> None:
    w = make_workstation()
    sid = _start(w, "right")
    ws_url = w.url.replace("http", "ws") + "/api/v1/live"
    overlays: list[dict[str, Any]] = []
    images = 0
    with connect(ws_url) as ws:
        deadline = time.monotonic() + 30
        while (len(overlays) < 5 or images < 3) and time.monotonic() < deadline:
            m = ws.recv(timeout=10)
            if isinstance(m, bytes):
                _idx, t = struct.unpack_from("<Id", m)
                assert m[12:14] == b"\xff\xd8"  # a JPEG follows the header
                assert abs(t - time.time()) < 5
                images += 1
            else:
                ev = json.loads(m)
                if ev["type"] == "overlay":
                    overlays.append(ev)
    assert images >= 3 and len(overlays) >= 5
    o = overlays[-1]
    assert o["id"] == sid and o["nerve"]["found"] and len(o["nerve"]["contour"]) >= 3
    assert o["nerve"]["ap_mm"] > 0 and o["w"] > 0 and [s["step"] for s in o["steps"]] == [
        "neutral_rest", "fair", "piriformis"]  # fmt: skip
    pts = w.client.get(f"/api/v1/sessions/{sid}/trace").json()["points"]
    assert pts and all(len(p) == 2 for p in pts)  # a page opened now redraws the trace
    # the viewer disconnected: the session goes on recording
    n0 = w.client.get(f"/api/v1/sessions/{sid}").json()["live"]["frames_recorded"]
    d = w.wait_frames(sid, n0 + 5)
    assert d["state"] == "acquiring"
    w.client.post(f"/api/v1/sessions/{sid}/stop")
    assert w.wait_state(sid, ("done", "failed"))["state"] == "done"


def test_relabel_and_discard_before_publishing(make_workstation: Any) -> None:
    w = make_workstation()
    sid = _start(w, "left")
    w.wait_frames(sid, 15)
    w.client.post(f"/api/v1/sessions/{sid}/stop")
    w.wait_state(sid, ("done",))
    r = w.client.patch(
        f"/api/v1/sessions/{sid}", json={"side": "right", "accession_number": "ACC-2"}
    )
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["side"] == "right" and d["accession_number"] == "ACC-2"
    assert d["result"]["side"] == "right"
    on_disk = json.loads((w.root / "recordings" / _dir(w, sid) / "result.json").read_text())
    assert on_disk["side"] == "right"
    assert w.client.patch(f"/api/v1/sessions/{sid}", json={"side": "middle"}).status_code == 422
    assert w.client.delete("/api/v1/sessions/nope").status_code == 404
    assert w.client.delete(f"/api/v1/sessions/{sid}").status_code == 204
    assert w.client.get(f"/api/v1/sessions/{sid}").status_code == 404
    # moved aside, not deleted
    assert any(p.name.endswith(sid) for p in (w.root / "recordings" / ".discarded").iterdir())


def test_broker_away_results_wait_in_the_outbox(
    make_workstation: Any, mosquitto: Any, tmp_path: Path
) -> None:
    from edge_service.mqtt import MqttSettings, Publisher

    pub = Publisher(MqttSettings(url=mosquitto.url, site="s2", device="d2"), tmp_path / "ob.sqlite")
    pub.start()
    try:
        assert pub.wait_connected(10)
        w = make_workstation(publisher=pub)
        sid = _start(w, "left")
        w.wait_frames(sid, 10)
        mosquitto.stop()  # the broker goes away mid-session
        w.wait_for(lambda: w.client.get("/healthz").json()["status"] == "degraded", 30)
        w.client.post(f"/api/v1/sessions/{sid}/stop")
        assert w.wait_state(sid, ("done", "failed"))["state"] == "done"
        assert w.client.post(f"/api/v1/sessions/{sid}/publish").status_code == 200
        h = w.client.get("/healthz").json()
        assert h["checks"]["broker"]["ok"] is False and h["checks"]["broker"]["outbox_pending"] > 0
        assert "dgs_outbox_pending 0" not in w.client.get("/metrics").text
        mosquitto.start()  # back: the outbox drains (every row deleted on PUBACK), nothing lost
        assert pub.wait_drained(30)
        w.wait_for(lambda: w.client.get("/healthz").json()["status"] == "ok", 30)
        assert w.client.get("/healthz").json()["checks"]["broker"]["outbox_pending"] == 0
    finally:
        pub.stop()
