"""The procedure logic on scripted NeedleResult sequences (tests/procedure/script.py)."""

from __future__ import annotations

import math

from edge_service.needle.types import NeedleResult
from edge_service.procedure import Observation, ProcedureSettings, ProcedureTracker
from edge_service.procedure.observation import FrameState
from edge_service.procedure.result import build_result, validate
from tests.procedure.script import Script, needle


def run(
    sc: Script, s: ProcedureSettings | None = None
) -> tuple[ProcedureTracker, list[FrameState]]:
    tr = ProcedureTracker(s)
    states = [tr.update(o) for o in sc.obs]
    tr.finish()
    return tr, states


def raised(states: list[FrameState], kind: str) -> list[FrameState]:
    return [st for st in states if any(a.kind == kind for a in st.raised)]


def normal_procedure() -> Script:
    """Case report 2.4: advance in plane to the calcification, two aliquots with a redirect."""
    sc = Script()
    sc.aim_at((37.5, 47.0))
    sc.advance(math.dist(sc.tip, (37.5, 47.0)) - 0.5)
    sc.hold(6.0, spread_to_mm2=88.0)
    sc.advance(-4.0)
    sc.angle += 6.0
    sc.advance(4.0)
    sc.hold(6.0, spread_to_mm2=88.0)
    return sc


def test_normal_procedure_two_aliquots_on_target_no_nerve_alarm() -> None:
    tr, states = run(normal_procedure())
    inj = tr.inj.injections
    assert len(inj) == 2
    for i in inj:
        assert 0.15 <= i.volume_ml <= 0.25  # 88 mm2 changed ~ 0.2 mL (bolus + pushed ring)
        assert i.on_target
        assert not i.reached_epineurium
    assert not any(a.kind.startswith("nerve") for a in tr.alarms.history)
    assert any(st.on_target for st in states)
    assert tr.motion.advances == 2 and tr.motion.withdrawals == 1 and tr.motion.redirects == 1
    assert tr.min_nerve is not None and tr.min_nerve[0] > 3.0


def test_result_validates_and_carries_every_block() -> None:
    tr, _ = run(normal_procedure())
    doc = build_result(
        tr, {"session_id": "s-1", "side": "left", "started_t": 1000.0}, locator="scripted"
    )
    validate(doc)
    assert len(doc["injections"]) == 2
    assert doc["injections"][0]["offset_from_calcification_mm"] is not None
    assert doc["passes"]["advances"] == 2
    assert 0.3 <= doc["total_volume_ml_est"] <= 0.5
    assert doc["findings"]["injections_on_target"] == 2
    assert doc["data_quality"]["frames"] == len(normal_procedure().obs)


def intraneural(
    s: ProcedureSettings | None = None,
) -> tuple[Script, ProcedureTracker, list[FrameState]]:
    sc = Script()
    sc.aim_at(sc.sc.nerve_c)
    sc.advance(math.dist(sc.tip, sc.sc.nerve_c) - 2.0, speed_mm_s=10.0)  # 4 mm inside the outline
    tr, states = run(sc, s)
    return sc, tr, states


def test_intraneural_approach_alarms_before_the_tip_crosses_the_epineurium() -> None:
    _sc, tr, states = intraneural()
    cross = next(
        st for st in states if st.nerve_distance_mm is not None and st.nerve_distance_mm <= 0
    )
    path = raised(states, "path_caution")
    caution = raised(states, "nerve_caution")
    stop = raised(states, "nerve_stop")
    assert path and caution and stop
    assert path[0].t < caution[0].t < stop[0].t < cross.t
    # 10 mm/s closing speed x lead_s 0.3 s: stop is raised 3 mm before the 1 mm line
    assert stop[0].nerve_distance_mm is not None and 3.5 < stop[0].nerve_distance_mm <= 4.0
    assert tr.entered_nerve
    doc = build_result(tr, {"session_id": "s-2", "side": "left"}, locator="scripted")
    validate(doc)
    assert doc["findings"]["intraneural_risk"]
    assert doc["needle"]["min_nerve_distance_mm"] <= 0


def test_caution_and_stop_settings_are_honoured() -> None:
    _, _, st_default = intraneural(ProcedureSettings(lead_s=0.0))
    _, _, st_wide = intraneural(ProcedureSettings(caution_mm=6.0, stop_mm=2.0, lead_s=0.0))
    c0 = raised(st_default, "nerve_caution")[0].nerve_distance_mm
    c1 = raised(st_wide, "nerve_caution")[0].nerve_distance_mm
    s1 = raised(st_wide, "nerve_stop")[0].nerve_distance_mm
    assert c0 is not None and c1 is not None and s1 is not None
    assert 2.5 < c0 <= 3.0 and 5.5 < c1 <= 6.0 and 1.5 < s1 <= 2.0
    _, _, st_nopath = intraneural(ProcedureSettings(path_alarm=False))
    assert not raised(st_nopath, "path_caution")
    # lead_s: the look-ahead at the closing speed (10 mm/s here) moves the alarm earlier
    _, _, st_lead = intraneural(ProcedureSettings(lead_s=0.1))
    s_lead = raised(st_lead, "nerve_stop")[0].nerve_distance_mm
    assert s_lead is not None and 1.5 < s_lead <= 2.0
    assert "closing 10.0 mm/s" in raised(st_lead, "nerve_stop")[0].raised[-1].message


def test_no_needle_no_alarm_no_target() -> None:
    sc = Script()
    sc.lost(20.0)
    tr, states = run(sc)
    assert not tr.alarms.history
    assert not any(st.on_target for st in states)
    doc = build_result(tr, {"session_id": "s-3"}, locator="scripted")
    validate(doc)
    assert "no needle was seen in this session" in doc["data_quality"]["notes"]


def test_needle_lost_while_advancing_alarm_and_clears_when_found() -> None:
    sc = Script()
    sc.aim_at((37.5, 47.0))
    sc.advance(15.0)
    sc.lost(1.0)
    sc.advance(3.0)
    tr, states = run(sc)
    lost = raised(states, "needle_lost")
    assert len(lost) == 1
    first_unseen = next(st for st in states if not st.needle_found)
    assert 0.45 <= lost[0].t - first_unseen.t <= 0.6
    a = tr.alarms.history[-1] if tr.alarms.history[-1].kind == "needle_lost" else None
    hist = [a for a in tr.alarms.history if a.kind == "needle_lost"]
    assert hist[0].t_cleared is not None and hist[0].t_cleared < states[-1].t
    assert a is None or a.level == "stop"


def test_needle_lost_while_still_is_not_an_alarm() -> None:
    sc = Script()
    sc.aim_at((37.5, 47.0))
    sc.advance(15.0)
    sc.hold(1.0)
    sc.lost(2.0)
    tr, _ = run(sc)
    assert not [a for a in tr.alarms.history if a.kind == "needle_lost"]
    assert tr.q["needle_unseen_s"] > 1.5


def test_out_of_plane_tip_is_never_on_target() -> None:
    sc = Script()
    sc.aim_at((37.5, 47.0))
    sc.advance(math.dist(sc.tip, (37.5, 47.0)) - 0.5, cue="motion", frac=0.1)
    sc.hold(2.0, cue="motion", frac=0.1)
    _, states = run(sc)
    assert not any(st.on_target for st in states)
    assert "shaft not in plane" in states[-1].on_target_reason


def test_frozen_probe_no_target_and_says_so() -> None:
    sc = Script()
    sc.aim_at((37.5, 47.0))
    sc.advance(math.dist(sc.tip, (37.5, 47.0)) - 0.5)
    n0 = len(sc.obs)
    sc.hold(2.0)
    for o in sc.obs[n0:]:
        o.frozen = True
    tr, states = run(sc)
    assert not any(st.on_target for st in states[n0:])
    fr = raised(states, "probe_frozen")
    assert fr and "frozen" in fr[0].raised[0].message
    assert tr.q["frames_frozen"] == len(sc.obs) - n0


def test_still_reflector_at_the_calcification_is_not_on_target() -> None:
    """A bone edge or fascia line the locator takes for a needle: it never advances."""
    sc = Script()
    sc.tip = (37.5, 47.0)
    sc.hold(5.0)
    _, states = run(sc)
    assert not any(st.on_target for st in states)
    assert "still reflector" in states[-1].on_target_reason


def test_jump_to_a_second_reflector_rearms_the_guard() -> None:
    sc = Script()
    sc.angle = 20.0
    sc.advance(15.0)  # a real needle, far from the target
    sc.tip = (37.5, 47.0)  # the locator jumps to a reflector at the calcification
    sc.hold(3.0)
    tr, states = run(sc)
    assert tr.q["track_resets"] == 1
    assert not any(st.on_target for st in states)


def test_distance_hysteresis_raises_once() -> None:
    sc = Script()
    s = ProcedureSettings(alarm_track_mm=0.0)  # a still tip here, on purpose
    tr = ProcedureTracker(s)
    raised_n = 0
    for k in range(120):
        d = 3.0 + 0.2 * math.sin(k / 3)  # wobbles 2.8..3.2 mm around the caution line
        n = needle((30.0, 40.0), 30.0, sc.sc)
        n.nerve_distance_mm, n.path_nerve_distance_mm = d, 10.0
        st = tr.update(Observation(1000 + k / 30, k, n, nerve_found=True, calc_present=True))
        raised_n += sum(1 for a in st.raised if a.kind == "nerve_caution")
    assert raised_n == 1


def test_spread_reaching_the_epineurium_is_flagged() -> None:
    sc = Script()
    sc.aim_at((37.5, 47.0))
    sc.advance(math.dist(sc.tip, (37.5, 47.0)) - 0.5)
    sc.hold(6.0, spread_to_mm2=41.0, spread_nerve_mm=0.2)
    tr, states = run(sc)
    assert raised(states, "spread_at_nerve")
    assert tr.inj.injections[0].reached_epineurium
    doc = build_result(tr, {"session_id": "s-4"}, locator="scripted")
    assert doc["findings"]["spread_reached_epineurium"]


def test_low_confidence_counts_as_not_found() -> None:
    sc = Script()
    sc.aim_at((37.5, 47.0))
    sc.advance(20.0, conf=0.1)
    tr, states = run(sc)
    assert not any(st.needle_found for st in states)
    assert tr.q["frames_low_confidence"] == len(sc.obs)


def test_nerve_not_seen_says_the_distance_is_unknown() -> None:
    tr = ProcedureTracker()
    n = NeedleResult(
        found=True,
        tip_mm=(20.0, 20.0),
        tip_px=(200, 200),
        angle_deg=30.0,
        confidence=0.9,
        cue="shaft",
    )
    st = tr.update(Observation(1.0, 0, n, nerve_found=False))
    assert st.raised and st.raised[0].kind == "nerve_not_seen"
    assert "unknown" in st.raised[0].message
    assert not st.on_target


def test_direction_comes_from_the_visible_shaft_whatever_the_angle_sign() -> None:
    """A needle descending to the left (lateral decreasing) reported with a positive angle:
    progress along the shaft is still counted as advancing (shaft start -> tip)."""
    tr = ProcedureTracker()
    states = []
    for k in range(90):
        d, lat = 10.0 + 0.2 * k * 0.64, 60.0 - 0.2 * k * 0.77  # 6 mm/s down-left
        n = NeedleResult(
            found=True,
            tip_mm=(d, lat),
            tip_px=(d * 10, lat * 10),
            shaft_start_px=(50.0, 650.0),
            angle_deg=40.0,
            confidence=0.9,
            cue="shaft",
            shaft_visible_fraction=0.9,
            nerve_distance_mm=20.0,
            path_nerve_distance_mm=20.0,
        )
        states.append(tr.update(Observation(1000 + k / 30, k, n, nerve_found=True)))
    assert states[-1].motion == "advancing"
    assert tr.motion.advances == 1 and tr.motion.withdrawals == 0


def test_brief_echo_change_is_not_an_injection_and_one_per_spot() -> None:
    sc = Script()
    sc.aim_at((37.5, 47.0))
    sc.advance(math.dist(sc.tip, (37.5, 47.0)) - 0.5)
    n0 = len(sc.obs)
    sc.hold(8.0)
    # settling tissue: 30 mm2 of change that appears within 0.3 s and never grows again
    for k, o in enumerate(sc.obs[n0 + 20 :]):
        o.spread_mm2 = 30.0 * min(1.0, k / 9)
    tr, _ = run(sc)  # default min_injection_s 1 s
    assert tr.inj.injections == [] and tr.inj.discarded == 1
    tr, _ = run(sc, ProcedureSettings(min_injection_s=0.0))  # counted, once at this spot
    assert len(tr.inj.injections) == 1 and tr.inj.discarded == 0


def test_procedure_config_block_validates_and_refuses_typos() -> None:
    import pytest
    from pydantic import ValidationError

    from edge_service.config import AppConfig

    cfg = AppConfig.model_validate({"procedure": {"caution_mm": 4.0, "stop_mm": 1.5}})
    assert cfg.procedure.caution_mm == 4.0 and cfg.procedure.stop_mm == 1.5
    with pytest.raises(ValidationError):
        AppConfig.model_validate({"procedure": {"caution": 4.0}})
    with pytest.raises(ValidationError):  # stop must be below caution
        AppConfig.model_validate({"procedure": {"caution_mm": 1.0, "stop_mm": 2.0}})


def test_every_procedure_setting_changes_behaviour_somewhere() -> None:
    """Each key is read by the logic (a key nobody reads would validate and do nothing)."""
    import inspect

    import edge_service.procedure as pkg

    src = "".join(
        inspect.getsource(m)
        for m in (
            pkg.tracker, pkg.alarms, pkg.motion, pkg.injections,
            __import__("edge_service.procedure.spread", fromlist=["x"]),
            __import__("edge_service.procedure.analyzer", fromlist=["x"]),  # the nerve rate
        )
    )  # fmt: skip
    for key in ProcedureSettings.model_fields:
        assert f".{key}" in src, f"[procedure] {key} is not read by the procedure logic"


def test_a_one_frame_jump_next_to_the_nerve_is_not_an_alarm() -> None:
    """The locator switching to a bright edge by the nerve for one frame (seen with the
    classical locator in the demo): confirmed by the next frame before any distance alarm."""
    sc = Script()
    sc.aim_at((37.5, 47.0))
    sc.advance(15.0)
    n0 = len(sc.obs)
    sc.advance(3.0)
    far = sc.obs[n0 + 3]
    near = needle((sc.sc.nerve_c[0] - 6.5, sc.sc.nerve_c[1]), 30.0, sc.sc)  # 0.5 mm from it
    far.needle = near
    tr, _states = run(sc)
    assert not [a for a in tr.alarms.history if a.kind.startswith("nerve")]
    assert tr.q["track_resets"] == 2  # there and back
    # a tip that stays there: a still reflector by the nerve raises nothing (it never moves
    # alarm_track_mm) ...
    sc2 = Script()
    sc2.aim_at((37.5, 47.0))
    sc2.advance(15.0)
    sc2.tip = (sc2.sc.nerve_c[0] - 6.5, sc2.sc.nerve_c[1])
    sc2.hold(0.5)
    _tr2, states2 = run(sc2)
    assert not raised(states2, "nerve_stop")
    # ... and without that guard the jump is confirmed on the next frame, not the jump frame
    _tr3, states3 = run(sc2, ProcedureSettings(alarm_track_mm=0.0))
    jump_i = next(i for i, o in enumerate(sc2.obs) if o.needle.tip_mm == sc2.tip)
    assert raised(states3, "nerve_stop")[0].index == sc2.obs[jump_i + 1].index
