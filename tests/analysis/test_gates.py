"""Gates on the phantom analyzer's own records: the still-nerve rule, calcification
ambiguity, too few nerve frames, lag estimation and re-sampling, and consumers (FHIR)
that must not publish an undetermined finding as a value."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_service.analysis.alignment import estimate_lag, shift
from edge_service.analysis.evidence import REASONS, angle_stream, seq_resets, wilson
from edge_service.analysis.result import validate
from tests.analysis.phantom_runs import phantom_session


def _fresh(seed: int = 102, **cfg):  # type: ignore[no-untyped-def]
    """A new analyzer over the (cached) phantom frames: its records may be edited."""
    an, truth, _ = phantom_session(seed, **cfg)
    return an, truth


@pytest.mark.sim
def test_a_nerve_that_does_not_move_is_restricted_without_the_lag_and_fit_gates() -> None:
    an, _ = _fresh(102, gliding="restricted", nerve="swollen", calcification=True)
    rng = np.random.default_rng(1)
    for r in an.records:
        if r.step is not None:
            noise = float(rng.normal(0.0, 0.05))
            r.step = dataclasses.replace(r.step, nerve_vs_landmark_mm=(noise, 0.0))
    res = an.finish()
    validate(res)
    g = res["gliding"]
    assert g["state"] == "measured" and g["restricted"] is True
    assert "did not move" in g["rule"] or "moved less than" in g["rule"]


@pytest.mark.sim
def test_calcification_in_about_half_the_frames_is_undetermined() -> None:
    an, _ = _fresh(102, gliding="restricted", nerve="swollen", calcification=True)
    for i, r in enumerate(an.records):
        r.calc_present = i % 2 == 0
    c = an.finish()["calcification"]
    assert c["present"] is None and c["reason"] == "calcification_ambiguous"
    lo, hi = c["frames_fraction_ci"]
    assert lo < 0.5 < hi and c["confidence"] is None
    for r in an.records:
        r.calc_present = False
    c = an.finish()["calcification"]
    assert c["present"] is False and c["state"] == "measured" and c["confidence"] > 0.8


@pytest.mark.sim
def test_nerve_size_needs_enough_frames() -> None:
    an, _ = _fresh(101, gliding="free", nerve="normal", calcification=False)
    for r in an.records[3:]:
        r.nerve_found = False
    res = an.finish()
    nv = res["nerve"]
    assert nv["state"] == "undetermined" and nv["reason"] == "too_few_nerve_frames"
    assert nv["ap_diameter_mm"] is None and nv["spread"]["ap_diameter_mm"]["n"] == 3
    assert any(f.startswith("Nerve size undetermined") for f in res["findings"])


@pytest.mark.sim
def test_fhir_bundle_leaves_out_undetermined_findings() -> None:
    from edge_service.mqtt.fhir import bundle

    an, _ = _fresh(101, gliding="free", nerve="normal", calcification=False)
    res = an.finish()
    codes = _codes(bundle("site", "dev", res["session_id"], res))
    assert {"gliding-excursion", "gliding-restricted"} <= codes
    res["gliding"].update(state="undetermined", reason="poor_fit", restricted=None)
    codes = _codes(bundle("site", "dev", res["session_id"], res))
    assert "gliding-excursion" not in codes and "gliding-restricted" not in codes
    assert "nerve-ap-diameter" in codes


def _codes(b: dict) -> set[str]:  # type: ignore[type-arg]
    out = set()
    for e in b["entry"]:
        for c in e["resource"].get("code", {}).get("coding", []):
            out.add(c["code"])
    return out


def test_lag_is_found_inside_the_window_and_refused_at_its_edge() -> None:
    t = np.arange(0.0, 30.0, 0.1)
    ir = np.clip(np.sin(2 * np.pi * t / 15.0), 0, None) * 35.0
    disp = 0.15 * shift(t, ir, -0.3)  # the images lead the angles by 0.3 s
    disp = disp + np.random.default_rng(0).normal(0, 0.05, t.size)
    est = estimate_lag(t, ir, disp, 0.5, 0.02)
    assert est.lag_s == pytest.approx(-0.3, abs=0.04) and not est.at_edge
    assert est.correlation is not None and est.correlation > 0.95
    far = estimate_lag(t, ir, 0.15 * shift(t, ir, 3.0), 0.5, 0.02)
    assert far.at_edge and far.lag_s == pytest.approx(0.5)
    flat = estimate_lag(t, np.full(t.size, 5.0), disp, 0.5, 0.02)
    assert flat.lag_s is None and flat.correlation is None


def test_shift_never_bridges_a_gap() -> None:
    t = np.arange(10.0)
    v = np.arange(10.0)
    v[5] = np.nan
    s = shift(t, v, 0.5)
    assert np.isnan(s[4]) and np.isnan(s[5]) and s[3] == pytest.approx(3.5)
    assert np.isnan(s[9])  # beyond the last sample: unknown, not extrapolated


def test_angle_stream_gaps_and_reboots() -> None:
    t = np.arange(0.0, 10.0, 0.2)
    valid = np.ones(t.size, bool)
    valid[:3] = False  # clip started late: coverage only
    s = angle_stream(t, valid, 1.0)
    assert not s.lost and s.coverage == pytest.approx(47 / 50)
    valid[20:25] = False  # 1.0 s without angles
    assert angle_stream(t, valid, 1.0).lost
    valid[20:25] = True
    valid[45:] = False  # stream ends 1.0 s early
    assert angle_stream(t, valid, 1.0).lost
    assert seq_resets([1, 2, 3, 0, 1], [0, 1, 2, 3, 4], 0, 10) == 1
    assert seq_resets([2**32 - 2, 2**32 - 1, 0, 1], [0, 1, 2, 3], 0, 10) == 0  # a wrap


def test_wilson_and_reason_sentences() -> None:
    lo, hi = wilson(50, 100, 0.95)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    assert wilson(0, 0, 0.95) == (0.0, 1.0)
    from edge_service.analysis.evidence import sentence

    for code in REASONS:
        assert sentence(code, {}).endswith(".")  # a sentence even when details are missing
