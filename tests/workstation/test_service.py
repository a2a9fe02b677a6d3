"""The live session service without the web layer: comparisons by patient and order, a probe
that freezes or is unplugged mid-session, guided steps from the clip angles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_service.acquisition.frame import Frame
from edge_service.errors import DeviceError
from edge_service.live.rig import DemoRig, SessionInputs, exam_motion
from edge_service.live.service import LiveService, ServiceSettings
from edge_service.live.steps import GuidedSteps
from edge_service.recording import SessionMeta
from edge_service.recording.meta import write_json_atomic
from edge_service.sim.motion import manoeuvre
from tests.mqtt.sample_result import sample_result


def _fake_session(root: Path, sid: str, side: str, acc: str, pid: str, t: float,
                  ap: float) -> None:  # fmt: skip
    meta = SessionMeta(side=side, protocol="exam", session_id=sid, patient_id=pid, started_t=t,
                       extra={"workstation": {"accession_number": acc}})  # fmt: skip
    d = root / f"x-{sid}"
    d.mkdir(parents=True)
    meta.complete = True
    write_json_atomic(d / "session.json", meta.to_dict())
    doc = sample_result(sid)
    doc["side"], doc["started_t"] = side, t
    doc["nerve"]["ap_diameter_mm"] = ap
    (d / "result.json").write_text(json.dumps(doc))


def test_comparisons_only_within_one_patient(tmp_path: Path) -> None:
    rec = tmp_path / "recordings"
    _fake_session(rec, "a-old-left", "left", "ACC-0", "PAT-A", 1000.0, 13.0)
    _fake_session(rec, "a-left", "left", "ACC-1", "PAT-A", 2000.0, 12.0)
    _fake_session(rec, "a-right", "right", "ACC-1", "PAT-A", 2100.0, 8.0)
    # another patient under the same accession number (a typing error): never compared
    _fake_session(rec, "b-right", "right", "ACC-1", "PAT-B", 2200.0, 5.0)
    svc = LiveService(DemoRig(), None, ServiceSettings(recordings_dir=rec))
    assert {e.id for e in svc.sessions()} == {"a-old-left", "a-left", "a-right", "b-right"}
    assert all(e.state == "done" for e in svc.sessions())
    cmp = svc.comparisons("a-left")
    modes = [c["mode"] for c in cmp]
    assert modes == ["contralateral", "followup"]
    contra = cmp[0]
    assert contra["sessions"] == {"left": "a-left", "right": "a-right"}
    assert contra["ap_ratio"] == pytest.approx(12.0 / 8.0, abs=1e-3)
    assert any("AP diameter left 12.0 mm vs right 8.0 mm" in s for s in contra["summary"])
    fu = cmp[1]
    assert fu["baseline"]["session_id"] == "a-old-left"
    assert fu["followup"]["session_id"] == "a-left"
    assert svc.comparisons("b-right") == []  # alone: PAT-B has no other session
    assert [c["mode"] for c in svc.comparisons("a-old-left")] == []  # nothing earlier


class _FaultyRig:
    """The demo rig with a probe fault injected after `after` frames (mock only of the fault)."""

    def __init__(self, kind: str, after: int) -> None:
        self.inner = DemoRig(fps=10.0)
        self.kind = kind
        self.after = after

    def open(self, side: str, protocol: str) -> SessionInputs:
        inp = self.inner.open(side, protocol)
        src = inp.frames

        def frames() -> Iterator[Frame]:
            first: Frame | None = None
            for i, f in enumerate(src):
                if i >= self.after:
                    if self.kind == "unplug":
                        raise DeviceError("probe unplugged (USB device gone)")
                    assert first is not None
                    # frozen: the probe repeats one image with fresh times
                    f = Frame(first.pixels.copy(), f.t, f.index, f.spacing_mm, f.roi)
                if i == self.after - 1:
                    first = f
                yield f
                if i >= 2 * self.after:
                    return

        inp.frames = frames()
        return inp

    def status(self) -> dict[str, Any]:
        return self.inner.status()

    def close(self) -> None:
        pass


@pytest.mark.sim
@pytest.mark.parametrize("kind", ["unplug", "freeze"])
def test_probe_fault_mid_session_keeps_what_was_recorded(
    tmp_path: Path, detector: Any, kind: str
) -> None:
    svc = LiveService(_FaultyRig(kind, 12), detector,
                      ServiceSettings(recordings_dir=tmp_path, min_free_disk_mb=1))  # fmt: skip
    sid = svc.start("left", "exam", "ACC-9", "PAT-9")
    e = svc.wait(sid, 60)
    assert e.state == "done", e.error
    rows = (e.path / "frames.csv").read_text().splitlines()[1:]
    res = e.result()
    assert res is not None
    dq = res["data_quality"]
    if kind == "unplug":
        assert len(rows) == 12 and dq["frames_recorded"] == 12
        assert e.ended_reason is not None and "unplugged" in e.ended_reason
        assert dq["frozen_frames"] == 0
    else:
        assert len(rows) == 25 and dq["frames_recorded"] == 25
        assert dq["frozen_frames"] == 13  # every repeat of the frozen image is counted
        assert "stopped delivering" in str(e.ended_reason)
    meta = json.loads((e.path / "session.json").read_text())
    assert meta["complete"] is True and meta["extra"]["live"]["frames_recorded"] == len(rows)


def _feed(motion: Any, rate_hz: float = 10.0) -> GuidedSteps:
    g = GuidedSteps()
    t, ang = motion.sample(rate_hz)
    for ti, a in zip(t, ang, strict=True):
        g.add(float(ti), a)
    return g


def test_guided_steps_from_the_exam_motion() -> None:
    steps = {s["step"]: s["done"] for s in _feed(exam_motion()).to_list()}
    assert steps == {"neutral_rest": True, "fair": True, "piriformis": True}


def test_guided_steps_are_not_done_by_other_motions() -> None:
    fair_once = _feed(manoeuvre("fair", repetitions=1))
    assert fair_once.fair == 1 and fair_once.piriformis == 0
    done = {s["step"]: s["done"] for s in fair_once.to_list()}
    assert done == {"neutral_rest": True, "fair": False, "piriformis": False}
    piri = _feed(manoeuvre("piriformis", repetitions=1))
    assert piri.piriformis == 1 and piri.fair == 0
    # seated rest is not the neutral (lying) rest of the exam
    assert not {s["step"]: s["done"] for s in piri.to_list()}["neutral_rest"]
    still = GuidedSteps()
    for i in range(20):  # 2 s of rest: not yet 3 s
        still.add(i / 10, np.zeros(3))
    assert still.to_list()[0]["done"] is False
