"""Session analysis on phantom sequences: gliding vs truth, restricted/free, result schema."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from edge_service.analysis.result import validate
from edge_service.errors import InputError
from tests.analysis.phantom_runs import phantom_session

CASES = {
    # seed, config: one of each gliding class, both sides, with and without calcification
    "free-left-ligament": (101, {"gliding": "free", "nerve": "normal", "calcification": False}),
    "restricted-left-calc": (
        102,
        {"gliding": "restricted", "nerve": "swollen", "calcification": True},
    ),
    "free-right-calc": (
        103,
        {"gliding": "free", "nerve": "normal", "calcification": True, "side": "right"},
    ),
}


def _run(name: str):  # type: ignore[no-untyped-def]
    seed, cfg = CASES[name]
    return phantom_session(seed, **cfg)


@pytest.mark.sim
@pytest.mark.parametrize("name", sorted(CASES))
def test_excursion_matches_phantom_truth_and_class_is_right(name: str) -> None:
    an, truth, disp = _run(name)
    res = an.finish()
    validate(res)
    g = res["gliding"]
    true_exc = max(disp) - min(disp)

    # Issue goal: <= 0.1 mm or 5 % (benchmarked on full-length sessions). These 1.5 s holds at
    # 5 fps leave few frames to average the phantom's lateral speckle quantisation (scatterers
    # snap to beam lines ~0.37 mm apart), so the unit check allows 0.2 mm or 8 %.
    assert g["excursion_mm"] == pytest.approx(true_exc, abs=max(0.2, 0.08 * true_exc))
    assert g["restricted"] is truth["gliding"]["restricted"]
    assert g["landmark"] == ("calcification" if truth["calcification"]["present"] else "ligament")
    # The apparent slope against IR includes the flexion/adduction share of the glide;
    # compare with the same regression on the true displacement.
    ir = np.array([v for v in res["series"]["internal_rotation_deg"]], dtype=float)
    lab = res["series"]["label"]
    sel = np.array([x == "fair" for x in lab])
    true_slope = 10 * np.polyfit(ir[sel], np.array(disp)[sel], 1)[0]
    assert g["per_10deg_ir_mm"] == pytest.approx(true_slope, rel=0.1, abs=0.05)
    assert g["fit"]["r2"] > 0.9
    [m] = [m for m in res["maneuvers"] if m["name"] == "fair"]
    assert m["peak_internal_rotation_deg"] == pytest.approx(35.0, abs=0.5)
    assert res["data_quality"]["tracked_fraction"] > 0.95
    assert res["calcification"]["present"] is truth["calcification"]["present"]


@pytest.mark.sim
def test_nerve_size_from_neutral_frames_and_calcification_figures() -> None:
    an, truth, _ = _run("restricted-left-calc")
    res = an.finish()
    assert res["nerve"]["from_neutral_frames"]
    assert res["nerve"]["ap_diameter_mm"] == pytest.approx(truth["nerve"]["ap_mm"], abs=1e-3)
    assert (
        res["nerve"]["spread"]["ap_diameter_mm"]["n"]
        == res["data_quality"]["frames_by_label"]["neutral"]
    )
    c = res["calcification"]
    assert c["long_axis_mm"] == pytest.approx(truth["calcification"]["long_axis_mm"], abs=1e-3)
    assert any("RESTRICTED" in f for f in res["findings"])


@pytest.mark.sim
def test_without_clip_data_no_manoeuvre_and_gliding_not_judged() -> None:
    an, _, _ = phantom_session(
        101, angles=False, gliding="free", nerve="normal", calcification=False
    )
    res = an.finish()
    validate(res)
    assert res["angles"]["available"] is False and res["angles"]["coverage"] == 0
    assert res["maneuvers"] == []
    assert res["gliding"]["restricted"] is None and "no clip data" in res["gliding"]["rule"]
    assert (
        res["nerve"]["from_neutral_frames"] is False and res["nerve"]["ap_diameter_mm"] is not None
    )
    assert any("No clip data" in f for f in res["findings"])


def test_schema_rejects_broken_documents() -> None:
    an, _, _ = _run("free-left-ligament")
    good = an.finish()
    for path, value in (
        (("nerve", "ap_diameter_mm"), "12"),
        (("gliding", "restricted"), "yes"),
        (("side",), "up"),
        (("session_id",), "Jane Doe"),
        (("calcification", "present"), "maybe"),
        (("gliding", "excursion_mm"), -0.3),  # 1.1: a magnitude, never negative
        (("gliding", "reason"), "looked odd"),  # reasons are a closed list of codes
    ):
        bad = copy.deepcopy(good)
        node = bad
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        with pytest.raises(InputError, match="/".join(path)):
            validate(bad)
    bad = copy.deepcopy(good)
    del bad["maneuvers"]
    with pytest.raises(InputError, match="maneuvers"):
        validate(bad)


def test_frames_without_detection_are_counted_not_measured() -> None:
    from edge_service.analysis.session import SessionAnalyzer
    from edge_service.phantom import PhantomConfig, PhantomSimulator

    sim = PhantomSimulator(PhantomConfig(width_px=320, height_px=240), seed=5)
    an = SessionAnalyzer("left")
    for i in range(4):
        pf = sim.render(np.zeros(3), t_rel=i * 0.2, index=i, t_abs=100.0 + i * 0.2)
        an.add_frame(pf.frame, None, (0.0, 0.0, 0.0))
    res = an.finish()
    validate(res)
    assert res["data_quality"]["nerve_found_fraction"] == 0
    assert res["nerve"]["ap_diameter_mm"] is None and res["gliding"]["excursion_mm"] is None
    # Four frames are too few to analyse at all, and nothing was tracked: both reasons given.
    assert res["status"]["analysable"] is False
    assert res["gliding"]["reasons"][:1] == ["not_analysable"]
    assert "nerve_not_tracked" in res["gliding"]["reasons"]
    assert res["nerve"]["state"] == "undetermined" and res["calcification"]["present"] is None
    assert math.isclose(res["data_quality"]["duration_s"], 0.6, abs_tol=1e-6)
    with pytest.raises(InputError, match="side"):
        SessionAnalyzer("middle")
