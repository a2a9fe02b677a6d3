"""Whole phantom needle sessions through the offline procedure pass (the same
ProcedureAnalyzer as the live session), with the shipped detector:
- a procedure: injections counted and placed against the phantom's truth (truth locator,
  so the count is about the procedure logic, not locator error);
- bad input with the shipped needle locator: a needle-like reflector and no needle give no
  "on target" and no nerve alarm; a frozen probe says so and is never on target."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from edge_service.acquisition.frame import Frame
from edge_service.live.procedure import default_locator_factory
from edge_service.procedure.analyzer import ProcedureAnalyzer
from edge_service.procedure.offline import analyze_procedure
from edge_service.procedure.result import validate
from edge_service.recording import open_recording
from tests.procedure.conftest import truth
from tests.procedure.oracle import TruthLocator

pytestmark = [pytest.mark.sim]


def _shipped() -> Any:
    f = default_locator_factory()
    assert f is not None, "edge_service.needle ships no needle locator"
    return f()


def test_procedure_injections_counted_against_truth(needle_recordings: Any, detector: Any) -> None:
    rec = needle_recordings("procedure")
    tr = truth(rec)
    res, _, states = analyze_procedure(rec, detector, TruthLocator(rec))
    validate(res)
    want = [tr["t0"] + i["t_rel_s"] for i in tr["injections"]]
    got = [i["t_start"] for i in res["injections"]]
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        assert w - 0.5 <= g <= w + 2.0  # found within 2 s of the aliquot's start
    assert all(i["on_target"] for i in res["injections"])
    assert all(0.05 <= i["volume_ml_est"] <= 1.0 for i in res["injections"])
    assert not res["findings"]["intraneural_risk"]
    assert res["needle"]["min_nerve_distance_mm"] > 3.0
    assert res["passes"]["advances"] >= len(want) and res["passes"]["withdrawals"] >= 1
    assert any(s.on_target for s in states)
    assert (rec / "report.html").exists() and res["key_frames"]


@pytest.mark.parametrize("kind", ["reflector", "none"])
def test_no_needle_or_a_reflector_never_on_target_nor_a_nerve_alarm(
    kind: str, needle_recordings: Any, detector: Any
) -> None:
    rec = needle_recordings(kind)
    res, _, states = analyze_procedure(rec, detector, _shipped(), write=False)
    validate(res)
    assert not any(s.on_target for s in states)
    kinds = set(res["alarm_counts"])
    assert not kinds & {"nerve_stop", "nerve_caution", "spread_at_nerve"}, res["alarms"]
    assert res["injections"] == []


def _frozen(frames: Iterator[Frame], at: int, n: int) -> Iterator[Frame]:
    """The probe freezes at frame `at`: the same image n times (new times and indices)."""
    held: Frame | None = None
    for i, f in enumerate(frames):
        if i == at:
            held = f
        if held is not None and at <= i < at + n:
            yield dataclasses.replace(held, t=f.t, index=f.index)
        else:
            yield f


def test_frozen_probe_is_said_and_never_on_target(needle_recordings: Any, detector: Any) -> None:
    rec = needle_recordings("procedure")
    tr = truth(rec)
    an = ProcedureAnalyzer(detector, TruthLocator(rec), session={"session_id": "frz"})
    # freeze while the tip sits at the target (the first aliquot)
    fps = tr["fps_hz"]
    at = int((tr["injections"][0]["t_rel_s"] - 1.0) * fps)
    states = []
    for f in _frozen(open_recording(rec).frames(), at, int(3 * fps)):
        states.append(an.add_frame(f)[0])
        if len(states) >= at + int(4 * fps):
            break  # the rest of the session adds nothing here
    frozen = states[at + 1 : at + int(3 * fps)]
    assert frozen and not any(s.on_target for s in frozen)
    assert any(a.kind == "probe_frozen" for s in frozen for a in s.raised)
    res = an.finish()
    validate(res)
    assert res["data_quality"]["frames_frozen"] >= int(3 * fps) - 1
    assert any("frozen" in n for n in res["data_quality"]["notes"])
