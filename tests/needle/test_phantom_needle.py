"""The phantom's needle: truth is where the pixels say, visibility follows the physics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edge_service.phantom import PhantomConfig, PhantomSimulator
from edge_service.phantom.needle import (
    HELD_OUT,
    TRAIN,
    Keyframe,
    NeedleConfig,
    NeedlePlan,
    NeedleScene,
)
from edge_service.phantom.needle_session import make_session, simulate_needle_session
from edge_service.recording import open_recording

STILL = np.zeros(3)


def _line_mean(px: np.ndarray, p0: list[float], p1: list[float], n: int = 60) -> float:
    r = np.linspace(p0[0], p1[0], n).round().astype(int)
    c = np.linspace(p0[1], p1[1], n).round().astype(int)
    ok = (r >= 0) & (r < px.shape[0]) & (c >= 0) & (c < px.shape[1])
    return float(px[r[ok], c[ok]].mean())


def _scene(elev: float, angle: float = 30.0) -> tuple[PhantomSimulator, NeedleScene]:
    sim = PhantomSimulator(PhantomConfig(jitter_mm=0.0, jitter_deg=0.0, gain_wander_db=0.0), 5)
    lat = sim.anatomy.lat
    tgt = (sim.anatomy.nerve.cx - lat * 20.0, 30.0)
    a = math.radians(angle)
    entry = (tgt[0] + lat * tgt[1] / math.tan(a), 0.0)
    plan = NeedlePlan(entry, [Keyframe(0.0, tgt[1] / math.sin(a), angle, elev, elev)])
    scene = NeedleScene(sim, plan, NeedleConfig(specular_width_deg=25.0, diffuse=0.2))
    sim.overlays.append(scene)
    return sim, scene


def test_in_plane_shaft_is_bright_where_the_truth_says_and_fades_out_of_plane() -> None:
    sim, _ = _scene(0.0)
    pf = sim.render(STILL, 0.0)
    nd = pf.truth["needle"]
    assert nd["present"] and nd["tip_in_image"]
    start, tip = nd["shaft_start_px"], nd["tip_px"]
    on = _line_mean(pf.frame.pixels, start, tip)
    # the same line shifted 6 mm deeper is tissue
    off_d = 6.0 / pf.frame.spacing_mm[1]
    off = _line_mean(pf.frame.pixels, [start[0] + off_d, start[1]], [tip[0] + off_d, tip[1]])
    assert on > off + 40, (on, off)
    sim2, _ = _scene(4.0)  # 4 mm out of the scan plane: the shaft is gone
    pf2 = sim2.render(STILL, 0.0)
    on2 = _line_mean(pf2.frame.pixels, start, tip)
    assert on2 < off + 15, (on2, off)
    assert pf2.truth["needle"]["visible_fraction"] < 0.05 < 0.8 < nd["visible_fraction"]


def test_advancing_tip_moves_speckle_even_when_out_of_plane() -> None:
    sim, scene = _scene(5.0)
    assert scene.plan is not None
    k = scene.plan.keyframes[0]
    scene.plan.keyframes = [
        Keyframe(0.0, k.length_mm - 3, k.angle_deg, 5, 5),
        Keyframe(1.0, k.length_mm, k.angle_deg, 5, 5),
    ]
    a, b = sim.render(STILL, 0.5), sim.render(STILL, 0.6)
    tip = np.round(b.truth["needle"]["tip_px"]).astype(int)
    diff = np.abs(a.frame.pixels.astype(int) - b.frame.pixels.astype(int))
    near = diff[tip[0] - 8 : tip[0] + 9, tip[1] - 8 : tip[1] + 9].mean()
    far = diff[tip[0] - 8 + 60 : tip[0] + 9 + 60, tip[1] - 8 : tip[1] + 9].mean()
    assert near > 3 * far + 1, (near, far)


def test_procedure_session_truth() -> None:
    ses = make_session("procedure", 11, "train")
    plan = ses.scene.plan
    assert plan is not None and 3 <= len(plan.injections) <= 5
    assert all(i.volume_ml == pytest.approx(0.2) for i in plan.injections)
    assert ses.info["path_nerve_clearance_mm"] >= 5.0
    # Tip at the first injection is near the calcification (within its size + 3 mm).
    calc = ses.sim.anatomy.calc
    assert calc is not None
    tip = ses.scene.tip_mm(plan.injections[0].t_start)
    assert tip is not None
    assert math.hypot(tip[0] - calc.cx, tip[1] - calc.cy) < calc.a + 3.0
    # Every injection has a bolus once started, growing to ~0.2 mL (r ~ 3.6 mm).
    inj = plan.injections[-1]
    pf = ses.sim.render(STILL, inj.t_start + inj.duration_s + 0.1)
    assert len(pf.truth["boluses"]) == len(plan.injections)
    assert pf.truth["boluses"][-1]["radius_mm"] == pytest.approx(3.63, abs=0.05)


def test_intraneural_crosses_the_epineurium_at_the_truth_time() -> None:
    ses = make_session("intraneural", 3, "held-out")
    e = ses.sim.anatomy.nerve
    tc = ses.info["epineurium_cross_t"]
    before, after = ses.scene.tip_mm(tc - 0.2), ses.scene.tip_mm(tc + 0.2)
    assert before is not None and after is not None
    assert e.rho(np.array(before[0]), np.array(before[1])) > 1.0
    assert e.rho(np.array(after[0]), np.array(after[1])) < 1.0
    assert tc < ses.duration_s


def test_held_out_generator_is_disjoint_from_training() -> None:
    assert TRAIN.angle_deg[1] <= HELD_OUT.angle_deg[0]
    assert not set(TRAIN.gauges) & set(HELD_OUT.gauges)
    assert TRAIN.frequency_mhz[1] <= HELD_OUT.frequency_mhz[0]
    assert TRAIN.specular_width_deg[1] <= HELD_OUT.specular_width_deg[0]


def test_no_needle_and_reflector_sessions_have_no_needle_truth() -> None:
    for kind in ("none", "reflector"):
        ses = make_session(kind, 2, "train", duration_s=0.2)
        pf = next(ses.frames(5.0))
        assert pf.truth["needle"] == {"present": False}


def test_needle_session_recording(tmp_path: Path) -> None:
    out = simulate_needle_session(
        tmp_path / "s", "intraneural", seed=1, fps=4.0, duration_s=1.0, t0=1.7e9
    )
    rec = open_recording(out)
    truth = json.loads((out / "truth.json").read_text())
    assert rec.n_frames == len(truth["frames"]) == 5
    assert truth["format"] == "dgs.phantom-needle-truth/1"
    assert json.loads((out / "session.json").read_text())["protocol"] == "injection"
