"""Every session reaches an end: the REAL `dgs-edge` process is killed (SIGKILL) while
acquiring, analysing and publishing, and the next `demo` / `recover` delivers every session's
result exactly once (a consumer de-duplicating by msg_id counts 1 per session).

Stages are detected by polling the session folder (journal rows, cine.dcm, delivery.json);
the publishing stage is held open by pausing the real Mosquitto (SIGSTOP) so the result sits
in the outbox unacknowledged when the process dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.harness.broker import Collector, wait_for

DGS_EDGE = [sys.executable, "-m", "edge_service.cli.edge"]
TOPIC = "dgs/v1/demo-site/demo-01/#"


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg"), PYTHONUNBUFFERED="1")


def _frames_written(out: Path) -> int:
    try:
        return max(0, sum(1 for _ in (out / "frames.csv").open()) - 1)
    except OSError:
        return 0


def results_by_session(col: Collector) -> dict[str, set[str]]:
    """session id -> distinct result msg_ids received (what a de-duplicating consumer keeps)."""
    out: dict[str, set[str]] = defaultdict(set)
    for d in col.docs("/result"):
        out[d["session_id"]].add(d["msg_id"])
    return out


def wait_results(col: Collector, sids: set[str], timeout_s: float = 30) -> dict[str, set[str]]:
    def have() -> dict[str, set[str]] | None:
        r = results_by_session(col)
        return r if sids <= r.keys() else None

    got: dict[str, set[str]] = wait_for(have, timeout_s, f"results of {sorted(sids)}")
    return got


def _demo(out: Path, url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*DGS_EDGE, "demo", "--out", str(out), "--broker", url, "--fps", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _sid(out: Path) -> str:
    return str(json.loads((out / "session.json").read_text())["session_id"])


@pytest.mark.sim
@pytest.mark.parametrize("stage", ["acquiring", "analysing", "publishing"])
def test_demo_killed_then_next_run_delivers_once(
    stage: str, tmp_path: Path, mosquitto: Any, collector_factory: Any
) -> None:
    col = collector_factory("127.0.0.1", mosquitto.port, TOPIC)
    env = _env(tmp_path)
    out1 = tmp_path / "first"
    proc = _demo(out1, mosquitto.url, env)
    paused = False
    try:
        if stage == "acquiring":
            wait_for(lambda: _frames_written(out1) >= 8, 90, "8 frames recorded")
        elif stage == "analysing":
            wait_for(lambda: (out1 / "cine.dcm").exists(), 120, "the recording closed")
            assert not (out1 / "result.json").exists()
        else:
            wait_for(lambda: (out1 / "cine.dcm").exists(), 120, "the recording closed")
            os.kill(mosquitto.proc.pid, signal.SIGSTOP)  # PUBACKs cannot come back now
            paused = True
            wait_for(lambda: (out1 / "delivery.json").exists(), 60, "the result queued")
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        if paused:
            os.kill(mosquitto.proc.pid, signal.SIGCONT)
    sid1 = _sid(out1)
    if stage == "acquiring":
        assert not (out1 / "cine.dcm").exists()  # killed mid-recording: only the journal
    # The next demo finishes and delivers the first session, then runs its own.
    out2 = tmp_path / "second"
    second = _demo(out2, mosquitto.url, env)
    _, stderr = second.communicate(timeout=240)
    assert second.returncode == 0, stderr
    assert "Traceback" not in stderr
    sid2 = _sid(out2)
    got = wait_results(col, {sid1, sid2})
    assert {k: len(v) for k, v in got.items()} == {sid1: 1, sid2: 1}
    assert (out1 / "result.json").is_file() and (out1 / "cine.dcm").is_file()
    if stage == "acquiring":
        assert json.loads((out1 / "session.json").read_text())["extra"].get("repaired")
    # Nothing left over: the state folder's list of unfinished sessions is empty.
    assert not list((tmp_path / "xdg" / "dgs-edge" / "demo" / "sessions").iterdir())


@pytest.mark.sim
def test_demo_during_broker_outage_is_delivered_by_recover(
    tmp_path: Path, mosquitto: Any, collector_factory: Any
) -> None:
    col = collector_factory("127.0.0.1", mosquitto.port, TOPIC)
    env = _env(tmp_path)
    out = tmp_path / "outage"
    proc = _demo(out, mosquitto.url, env)
    try:
        wait_for(lambda: _frames_written(out) >= 4, 90, "acquisition")
        mosquitto.stop()  # the broker goes away mid-session
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2
    assert "stay queued" in stderr and "Traceback" not in stderr
    # Log lines (broker unreachable) come before it; the outcome is one error line.
    assert len([ln for ln in stderr.splitlines() if ln.startswith("dgs-edge: error")]) == 1
    sid = _sid(out)
    mosquitto.start()
    rec = subprocess.run(
        [*DGS_EDGE, "recover", "--demo", "--broker", mosquitto.url, "--timeout", "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert rec.returncode == 0, rec.stdout + rec.stderr
    got = wait_results(col, {sid})
    assert len(got[sid]) == 1


def _service_config(tmp_path: Path, url: str, clip_port: str | None, **storage: Any) -> Path:
    cfg = tmp_path / "dgs.toml"
    rec = storage.pop("recordings_dir", tmp_path / "rec")
    lines = [
        "[session]",
        'side = "right"',
        f'recordings_dir = "{rec}"',
        f'state_dir = "{tmp_path / "state"}"',
        f"use_clip = {'true' if clip_port else 'false'}",
        f"max_duration_s = {storage.pop('max_duration_s', 8)}",
        "[source]",
        'kind = "phantom"',
        "fps_hz = 4",
        "[mqtt]",
        f'url = "{url}"',
        'site = "ward-3"',
        'device = "box-1"',
        "reconnect_max_s = 1.0",
        "[storage]",
        *(f"{k} = {v}" for k, v in storage.items()),
    ]
    if clip_port:
        lines += ["[clip]", f'port = "{clip_port}"']
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


@pytest.mark.sim
def test_run_killed_while_acquiring_then_recover_delivers_once(
    tmp_path: Path, mosquitto: Any, collector_factory: Any
) -> None:
    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/ward-3/box-1/#")
    cfg = _service_config(tmp_path, mosquitto.url, None, min_free_mb=1, max_duration_s=30)
    env = _env(tmp_path)
    proc = subprocess.Popen(
        [*DGS_EDGE, "run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def session() -> Path | None:
            dirs = list((tmp_path / "rec").glob("*"))
            return dirs[0] if dirs and _frames_written(dirs[0]) >= 6 else None

        sess = wait_for(session, 90, "acquisition")
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (sess / "cine.dcm").exists()
    for _ in range(2):  # a second recover finds nothing left to do
        rec = subprocess.run(
            [*DGS_EDGE, "recover", "--config", str(cfg), "--timeout", "30"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "Traceback" not in rec.stderr
    sid = _sid(sess)
    got = wait_results(col, {sid})
    assert len(got[sid]) == 1
    # Owner-only files: recordings and the outbox are health data.
    assert oct((sess / "cine.dcm").stat().st_mode & 0o777) == "0o600"
    assert oct(sess.stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "state" / "outbox.sqlite").stat().st_mode & 0o777) == "0o600"


@pytest.mark.sim
def test_recover_publishes_analysed_session_and_parks_empty_one(
    tmp_path: Path, mosquitto: Any, collector_factory: Any
) -> None:
    """Stages a kill rarely hits exactly: result.json written but never queued; a session
    killed before its first frame (parked with the reason, not retried forever)."""
    from edge_service.analysis.session import analyze_session
    from edge_service.phantom import simulate_session
    from edge_service.recording import RecordingWriter, SessionMeta

    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/ward-3/box-1/#")
    rec = tmp_path / "rec"
    done = simulate_session(rec / "a-analysed", seed=4, fps=4.0)
    analyze_session(done)
    assert (done / "result.json").exists() and not (done / "delivery.json").exists()
    empty = rec / "b-empty"
    RecordingWriter(empty, SessionMeta(side="left", protocol="fair"))  # killed: no frame
    cfg = _service_config(tmp_path, mosquitto.url, None, min_free_mb=0)
    env = _env(tmp_path)
    out = subprocess.run(
        [*DGS_EDGE, "recover", "--config", str(cfg), "--timeout", "30"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 finished and queued, 1 parked" in out.stdout
    assert "no frame was recorded" in (empty / "parked.json").read_text()
    sid = _sid(done)
    assert len(wait_results(col, {sid})[sid]) == 1
    # Again: nothing left to do, nothing published twice.
    again = subprocess.run(
        [*DGS_EDGE, "recover", "--config", str(cfg), "--timeout", "30"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert again.returncode == 0 and "0 finished and queued" in again.stdout
    events = [d for d in col.docs("/events") if d["session_id"] == sid]
    assert events[0]["event"] == "started" and events[-1]["event"] == "ended"
    assert len({e["msg_id"] for e in events}) == len(events)


@pytest.mark.sim
def test_workstation_recovery_holds_unpublished_sessions_for_review(
    tmp_path: Path, mosquitto: Any
) -> None:
    """`run` with the workstation (hold_results): a session the clinician has not published
    is repaired and analysed after a crash, never queued; other sessions are delivered."""
    from edge_service.config import load_config
    from edge_service.phantom import simulate_session
    from edge_service.recording.meta import read_meta, write_json_atomic
    from edge_service.service import Service
    from edge_service.workstation.cli import held_for_review

    rec = tmp_path / "rec"
    held = simulate_session(rec / "a-workstation", seed=4, fps=4.0)
    meta = read_meta(held / "session.json")
    meta.extra["workstation"] = {"accession_number": "ACC-1", "published": False}
    write_json_atomic(held / "session.json", meta.to_dict())
    plain = simulate_session(rec / "b-headless", seed=5, fps=4.0)
    svc = Service(load_config(_service_config(tmp_path, mosquitto.url, None, min_free_mb=0)))
    try:
        svc.open()
        report = svc.recover(hold=held_for_review)
        assert report.held == ["a-workstation"] and report.published == ["b-headless"]
        assert (held / "result.json").exists() and not (held / "delivery.json").exists()
        assert (plain / "delivery.json").exists()
        pending = svc.pub.outbox.pending_sessions()
        assert meta.session_id not in pending
        # A second start finds it analysed and still held: nothing is queued behind the page.
        assert svc.recover(hold=held_for_review).held == ["a-workstation"]
    finally:
        svc.close()


@pytest.mark.sim
def test_parked_sessions_tell_the_consumer_why(
    tmp_path: Path, mosquitto: Any, collector_factory: Any
) -> None:
    """A parked session is announced over the real broker, so a consumer that saw `started`
    is not left waiting: a `parked` event with the reason, preceded by the result when one
    exists and can be sent; an unsendable result is named in the event instead."""
    from edge_service.analysis.session import analyze_session
    from edge_service.phantom import simulate_session
    from edge_service.recording import RecordingWriter, SessionMeta

    col = collector_factory("127.0.0.1", mosquitto.port, "dgs/v1/ward-3/box-1/#")
    rec = tmp_path / "rec"
    empty = rec / "a-empty"
    RecordingWriter(empty, SessionMeta(side="left", protocol="fair"))  # killed: no frame
    # Analysed, but a manoeuvre entry is corrupt: its events cannot be built, the result can.
    bad_events = simulate_session(rec / "b-bad-events", seed=5, fps=4.0)
    doc = analyze_session(bad_events)
    doc["maneuvers"] = ["not a manoeuvre"]
    (bad_events / "result.json").write_text(json.dumps(doc))
    # Analysed, but the result carries a patient-identifying field: it must never be sent.
    pii = simulate_session(rec / "c-pii", seed=6, fps=4.0)
    doc = analyze_session(pii)
    doc["patient_name"] = "DOE^JANE"
    (pii / "result.json").write_text(json.dumps(doc))
    cfg = _service_config(tmp_path, mosquitto.url, None, min_free_mb=0)
    out = subprocess.run(
        [*DGS_EDGE, "recover", "--config", str(cfg), "--timeout", "30"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 parked" in out.stdout and "Traceback" not in out.stderr
    sids = {p.name: _sid(p) for p in (empty, bad_events, pii)}

    def parked() -> dict[str, dict[str, Any]] | None:
        got = {d["session_id"]: d for d in col.docs("/events") if d["event"] == "parked"}
        return got if set(sids.values()) <= got.keys() else None

    events = wait_for(parked, 30, "parked events")
    e = events[sids["a-empty"]]["data"]
    assert e["reason"] == "no frame was recorded" and e["result_msg_id"] is None
    e = events[sids["b-bad-events"]]["data"]
    assert "manoeuvre" in e["reason"] or "Error" in e["reason"]
    results = results_by_session(col)
    assert results[sids["b-bad-events"]] == {e["result_msg_id"]}
    e = events[sids["c-pii"]]["data"]
    assert "patient" in e["reason"] and "patient" in e["result_error"]
    assert e["result_msg_id"] is None and sids["c-pii"] not in results
    assert "DOE" not in json.dumps(col.docs(""))
    for p in (empty, bad_events, pii):
        on_disk = json.loads((p / "parked.json").read_text())
        assert on_disk["event_msg_id"] == events[sids[p.name]]["msg_id"]
        assert str(tmp_path) not in on_disk["reason"]
    # Parked is final: a second recover announces nothing again.
    n = len(col.docs("/events"))
    again = subprocess.run(
        [*DGS_EDGE, "recover", "--config", str(cfg), "--timeout", "30"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert again.returncode == 0 and len(col.docs("/events")) == n
