"""`dgs-edge analyze` end to end: phantom recording -> shipped ONNX model -> result + report,
published to a real Mosquitto; missing clip data; broker down keeps the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_service.analysis.publish import OUTBOX_NAME, publish_result
from edge_service.analysis.result import read_result, validate
from edge_service.cli.edge import main
from edge_service.errors import BrokerError
from edge_service.mqtt.broker import free_port
from edge_service.phantom import simulate_session
from tests.harness.broker import Collector

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("analyze") / "s1"
    # Low frame rate keeps it quick; 2 FAIR repetitions of the standard protocol.
    return simulate_session(
        d, seed=201, gliding="free", nerve="normal", calcification="yes", fps=4.0
    )


def test_analyze_cli_writes_valid_result_and_report_and_publishes(
    session_dir: Path,
    mosquitto,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    col = Collector(mosquitto.host, mosquitto.port)
    try:
        rc = main(
            [
                "analyze",
                str(session_dir),
                "--broker",
                mosquitto.url,
                "--quiet",
                "--site",
                "clinic-a",
                "--device",
                "dgs-07",
            ]
        )
        out = capsys.readouterr().out
        assert rc == 0, out
        res = read_result(session_dir)  # validates against dgs.session-result/1
        truth = json.loads((session_dir / "truth.json").read_text())
        assert res["software"]["model"]["name"] == "dgs-seg/1"
        assert res["data_quality"]["n_frames"] == len(truth["frames"])
        assert [m["name"] for m in res["maneuvers"]] == ["fair", "fair"]
        assert res["angles"]["available"] and res["angles"]["coverage"] > 0.95
        # The shipped model's nerve drives the whole chain: size, tracking, gliding class.
        assert res["data_quality"]["nerve_found_fraction"] > 0.9
        assert res["nerve"]["ap_diameter_mm"] == pytest.approx(truth["nerve"]["ap_mm"], abs=1.0)
        true_exc = truth["gliding"]["excursion_mm"]
        assert res["gliding"]["excursion_mm"] == pytest.approx(true_exc, rel=0.1)
        assert res["gliding"]["restricted"] is truth["gliding"]["restricted"] is False
        assert (session_dir / "report.html").read_text().startswith("<!DOCTYPE html>")
        assert res["findings"][0].split()[0] in out
        [doc] = col.wait_docs("/result", 1)
        assert doc["schema"] == "dgs.mqtt-result/1" and doc["site"] == "clinic-a"
        assert doc["result"]["session_id"] == res["session_id"]
        validate(doc["result"])
    finally:
        col.client.loop_stop()


def test_analyze_without_clip_data_reports_it(session_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "noclip"
    shutil.copytree(
        session_dir, d, ignore=shutil.ignore_patterns("result.json", "report.html", OUTBOX_NAME)
    )
    (d / "imu.jsonl").unlink()
    assert main(["analyze", str(d), "--quiet"]) == 0
    res = read_result(d)
    assert res["angles"]["available"] is False and res["maneuvers"] == []
    assert res["gliding"]["restricted"] is None
    assert any("No clip data" in f for f in res["findings"])


def test_bad_session_dir_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a directory" in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_broker_down_keeps_result_and_next_run_delivers(
    session_dir: Path,
    tmp_path: Path,
    mosquitto_factory,  # type: ignore[no-untyped-def]
) -> None:
    res = read_result(session_dir) if (session_dir / "result.json").exists() else None
    if res is None:  # run order independent: analyse once without publishing
        assert main(["analyze", str(session_dir), "--quiet"]) == 0
        res = read_result(session_dir)
    d = tmp_path / "pub"
    d.mkdir()
    dead = f"mqtt://127.0.0.1:{free_port('127.0.0.1')}"
    with pytest.raises(BrokerError, match="kept in"):
        publish_result(res, d, dead, timeout_s=1.0)
    assert (d / OUTBOX_NAME).exists()
    broker = mosquitto_factory()
    col = Collector(broker.host, broker.port)
    try:
        publish_result(res, d, broker.url, timeout_s=10.0)
        docs = col.wait_docs("/result", 1)
        # Queued once while down, re-sent on reconnect: same idempotent message id.
        assert {x["msg_id"] for x in docs} == {docs[0]["msg_id"]}
        assert docs[0]["result"]["session_id"] == res["session_id"]
    finally:
        col.client.loop_stop()


def test_bad_broker_url_is_a_config_error(tmp_path: Path) -> None:
    from edge_service.errors import ConfigError

    with pytest.raises(ConfigError, match="broker settings"):
        publish_result({"session_id": "s1"}, tmp_path, "http://example.invalid", timeout_s=0.5)
    assert not (tmp_path / OUTBOX_NAME).exists()  # nothing queued for a URL that can never work
