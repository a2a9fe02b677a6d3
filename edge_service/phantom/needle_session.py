"""Scripted needle sessions in the phantom: a whole injection procedure (case report 2.4),
an intraneural approach (for the proximity alarm), a needle-like distractor, no needle.

Kinds:
- "procedure": in-plane lateral-to-medial pass to the calcification in the sacrospinous
  ligament, with a pause and a small withdraw-readvance on the way, 3-5 aliquots of
  ~0.2 mL with the tip withdrawn and redirected between them, episodes of out-of-plane
  drift, then withdrawal. The path is chosen to clear the nerve by >= 5 mm.
- "intraneural": the path heads into the nerve; the tip advances steadily until ~2 mm
  past the epineurium (truth: `epineurium_cross_t`), then stops.
- "reflector": no needle, a static needle-like line (fascia, or a bone edge with shadow).
- "none": no needle at all (still probe, normal scanning wander).
- "faint": a pass held partly out of the scan plane (the shaft 1-2 elevation beam widths
  off the plane, the tip 0.8-1.4): the shaft echoes over less than half its length or not
  at all and the tip shows mostly by its motion; advance, pause, a short withdraw, readvance.
  The path stays clear of the nerve (a benchmark of faint shafts, not of the alarm).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_service.phantom.needle import (
    GENERATORS,
    GeneratorRanges,
    Injection,
    Keyframe,
    LineReflector,
    NeedlePlan,
    NeedleScene,
    _unit,
    draw_needle_config,
)
from edge_service.phantom.settings import PhantomConfig
from edge_service.phantom.simulator import PhantomFrame, PhantomSimulator

log = logging.getLogger(__name__)

Kind = Literal["procedure", "intraneural", "reflector", "none", "faint"]
# appended kinds keep the earlier kinds' seeds (the rng is seeded with the kind's index)
KINDS: tuple[str, ...] = ("procedure", "intraneural", "reflector", "none", "faint")
NERVE_CLEARANCE_MM = 5.0
ALIQUOT_ML = 0.2


@dataclass
class NeedleSession:
    sim: PhantomSimulator
    scene: NeedleScene
    kind: str
    generator: str
    duration_s: float
    info: dict[str, Any]

    def frames(self, fps: float, t0: float = 0.0) -> Iterator[PhantomFrame]:
        n = math.floor(self.duration_s * fps + 1e-9) + 1
        still = np.zeros(3)
        self.scene._prev_tip = None
        for i in range(n):
            tr = i / fps
            yield self.sim.render(still, tr, i, t0 + tr)


def _nerve_clearance(sim: PhantomSimulator, p0: np.ndarray, p1: np.ndarray) -> float:
    """Smallest distance (mm, ~) from the segment p0-p1 to the nerve outline; <0 if it
    crosses the nerve."""
    e = sim.anatomy.nerve
    f = np.linspace(0, 1, 300)
    x = p0[0] + f * (p1[0] - p0[0])
    y = p0[1] + f * (p1[1] - p0[1])
    rho = e.rho(x, y)
    if np.any(rho <= 1.0):
        return -1.0
    pts = e.points(180)
    d = np.hypot(x[:, None] - pts[None, :, 0], y[:, None] - pts[None, :, 1])
    return float(d.min())


def _entry_for(target: tuple[float, float], lat: float, angle_deg: float) -> tuple[float, float]:
    ux, uy = _unit(lat, angle_deg)
    length = target[1] / uy
    return target[0] - ux * length, 0.0


def _length_to(entry: tuple[float, float], target: tuple[float, float]) -> float:
    return math.hypot(target[0] - entry[0], target[1] - entry[1])


def _drift(rng: np.random.Generator, ranges: GeneratorRanges) -> float:
    """Out-of-plane tip offset for one keyframe: mostly in plane, sometimes drifted."""
    if rng.random() < 0.3:
        return float(rng.uniform(*ranges.drift_mm)) * float(rng.choice([-1.0, 1.0]))
    return float(rng.normal(0.0, 0.25))


def _procedure_plan(
    sim: PhantomSimulator, rng: np.random.Generator, ranges: GeneratorRanges
) -> tuple[NeedlePlan, dict[str, Any]]:
    an = sim.anatomy
    lat = an.lat
    calc = an.calc
    assert calc is not None
    # Tip target: on the calcification's superficial surface, in the ligament; its lateral
    # part first, then further medially (away from the nerve) until the path clears it.
    best = None
    angles = list(rng.uniform(*ranges.angle_deg, 12)) + list(np.linspace(*ranges.angle_deg, 9))
    for along in (0.3, 0.0, -0.4, -0.8):
        tgt = (calc.cx + lat * along * calc.a, calc.cy - calc.b + 0.3)
        for a in angles:
            entry = _entry_for(tgt, lat, float(a))
            c = _nerve_clearance(sim, np.array(entry), np.array(tgt))
            if best is None or (c > best[2] and best[2] < NERVE_CLEARANCE_MM):
                best = (float(a), entry, c, tgt)
            if c >= NERVE_CLEARANCE_MM:
                break
        if best is not None and best[2] >= NERVE_CLEARANCE_MM:
            break
    assert best is not None
    target = best[3]
    angle, entry, clearance = best[:3]
    speed = float(rng.uniform(*ranges.speed_mm_s))
    total = _length_to(entry, target)
    t = float(rng.uniform(0.5, 1.5))
    t_insert = t
    ks = [Keyframe(t, 3.0, angle, 0.0, _drift(rng, ranges) * 0.3)]

    def move(length: float, ang: float, pause: float = 0.0) -> None:
        nonlocal t
        prev = ks[-1]
        dt = abs(length - prev.length_mm) / speed + abs(ang - prev.angle_deg) / 4.0
        t += max(dt, 0.3)
        e_tip = _drift(rng, ranges)
        ks.append(Keyframe(t, length, ang, 0.2 * e_tip, e_tip))
        if pause > 0:
            t += pause
            ks.append(Keyframe(t, length, ang, 0.2 * e_tip, e_tip))

    # Advance with a pause; a small withdraw-readvance ("jab") on the way.
    move(total * float(rng.uniform(0.35, 0.55)), angle, float(rng.uniform(0.5, 2.0)))
    mid = total * float(rng.uniform(0.6, 0.8))
    move(mid, angle)
    move(mid - float(rng.uniform(3.0, 6.0)), angle, float(rng.uniform(0.2, 0.8)))
    move(total, angle, 0.5)
    # The tip is on target: in plane for the injections (the operator fixes it).
    ks[-1].elev_tip_mm = ks[-2].elev_tip_mm = 0.0
    ks[-1].elev_entry_mm = ks[-2].elev_entry_mm = 0.0
    injections: list[Injection] = []
    n_aliquots = int(rng.integers(3, 6))
    cur_len, cur_ang = total, angle
    for k in range(n_aliquots):
        dur = float(rng.uniform(4.0, 7.0))
        injections.append(Injection(t, dur, ALIQUOT_ML))
        t += dur
        ks.append(Keyframe(t, cur_len, cur_ang, 0.0, float(rng.normal(0, 0.2))))
        t += float(rng.uniform(0.5, 1.5))
        ks.append(Keyframe(t, cur_len, cur_ang, 0.0, ks[-1].elev_tip_mm))
        if k == n_aliquots - 1:
            break
        # Withdraw a little, redirect by a few degrees, readvance to a nearby spot.
        back = cur_len - float(rng.uniform(3.0, 6.0))
        move(back, cur_ang)
        new_ang = float(np.clip(angle + rng.uniform(-4.0, 4.0), 15.0, 60.0))
        # New tip spot: same depth band of the ligament at the new angle.
        _, uy = _unit(lat, new_ang)
        new_len = (target[1] + float(rng.uniform(-1.5, 1.5)) - entry[1]) / uy
        move(back, new_ang)
        move(new_len, new_ang, 0.3)
        ks[-1].elev_tip_mm = ks[-2].elev_tip_mm = 0.0
        cur_len, cur_ang = new_len, new_ang
    # Withdraw completely.
    move(0.0, cur_ang)
    t_end = t + float(rng.uniform(0.5, 1.5))
    plan = NeedlePlan(entry, ks, injections, t_insert)
    info = {
        "angle_from_skin_deg": angle,
        "speed_mm_s": speed,
        "target_tissue_mm": list(target),
        "path_nerve_clearance_mm": clearance,
        "n_aliquots": n_aliquots,
        "duration_s": t_end,
    }
    return plan, info


def _intraneural_plan(
    sim: PhantomSimulator, rng: np.random.Generator, ranges: GeneratorRanges
) -> tuple[NeedlePlan, dict[str, Any]]:
    an = sim.anatomy
    e = an.nerve
    angle = float(rng.uniform(*ranges.angle_deg))
    target = (
        e.cx + float(rng.uniform(-0.3, 0.3)) * e.a,
        e.cy + float(rng.uniform(-0.2, 0.2)) * e.b,
    )
    entry = _entry_for(target, an.lat, angle)
    ux, uy = _unit(an.lat, angle)
    total = _length_to(entry, target)
    # Where the path crosses the epineurium (outline): first length with rho <= 1.
    ls = np.linspace(0.0, total, 4000)
    rho = e.rho(entry[0] + ux * ls, entry[1] + uy * ls)
    l_cross = float(ls[int(np.argmax(rho <= 1.0))])
    stop = l_cross + 2.0
    speed = float(rng.uniform(*ranges.speed_mm_s))
    t0 = float(rng.uniform(0.5, 1.5))
    ks = [Keyframe(t0, 3.0, angle, 0.0, 0.0)]
    t = t0
    # Approach with one pause well before the nerve, then steadily in.
    l1 = max(5.0, l_cross - float(rng.uniform(12.0, 20.0)))
    t += (l1 - 3.0) / speed
    e1 = _drift(rng, ranges) * 0.5
    ks.append(Keyframe(t, l1, angle, 0.1 * e1, e1))
    t += float(rng.uniform(0.5, 1.5))
    ks.append(Keyframe(t, l1, angle, 0.1 * e1, e1))
    t += (stop - l1) / speed
    ks.append(Keyframe(t, stop, angle, 0.0, float(rng.normal(0.0, 0.3))))
    t_cross = ks[-2].t + (l_cross - l1) / speed
    t_end = t + 2.0
    plan = NeedlePlan(entry, ks, [], t0)
    info = {
        "angle_from_skin_deg": angle,
        "speed_mm_s": speed,
        "epineurium_cross_t": t_cross,
        "epineurium_cross_length_mm": l_cross,
        "duration_s": t_end,
    }
    return plan, info


def _faint_plan(
    sim: PhantomSimulator, rng: np.random.Generator, ranges: GeneratorRanges, beam_mm: float
) -> tuple[NeedlePlan, dict[str, Any]]:
    an = sim.anatomy
    e = an.nerve
    angle = float(rng.uniform(*ranges.angle_deg))
    # a target in the muscle lateral to the nerve, at about its depth
    target = (e.cx + an.lat * float(rng.uniform(14.0, 22.0)), e.cy - float(rng.uniform(4.0, 10.0)))
    entry = _entry_for(target, an.lat, angle)
    total = _length_to(entry, target)
    speed = float(rng.uniform(*ranges.speed_mm_s))
    side = float(rng.choice([-1.0, 1.0]))
    e_entry = side * beam_mm * float(rng.uniform(1.2, 2.0))
    e_tip = side * beam_mm * float(rng.uniform(0.8, 1.4))
    t = float(rng.uniform(0.5, 1.0))
    t0 = t
    l1 = max(8.0, total * float(rng.uniform(0.5, 0.7)))
    ks = [Keyframe(t, 3.0, angle, e_entry, e_tip)]
    t += (l1 - 3.0) / speed
    ks.append(Keyframe(t, l1, angle, e_entry, e_tip))
    t += float(rng.uniform(0.5, 1.5))
    ks.append(Keyframe(t, l1, angle, e_entry, e_tip))
    l2 = l1 - float(rng.uniform(3.0, 6.0))
    t += (l1 - l2) / speed
    ks.append(Keyframe(t, l2, angle, e_entry, e_tip))
    e_tip2 = side * beam_mm * float(rng.uniform(0.8, 1.4))
    t += (total - l2) / speed
    ks.append(Keyframe(t, total, angle, e_entry, e_tip2))
    t_end = t + 1.0
    plan = NeedlePlan(entry, ks, [], t0)
    info = {
        "angle_from_skin_deg": angle,
        "speed_mm_s": speed,
        "elevation_entry_mm": e_entry,
        "elevation_tip_mm": [e_tip, e_tip2],
        "duration_s": t_end,
    }
    return plan, info


def _reflector(sim: PhantomSimulator, rng: np.random.Generator) -> tuple[LineReflector, dict]:
    an = sim.anatomy
    lat = an.lat
    kind = "bone_edge" if rng.random() < 0.4 else "fascia"
    angle = float(rng.uniform(15.0, 45.0))
    length = float(rng.uniform(18.0, 35.0))
    cy = float(rng.uniform(an.fat_mm + 4.0, max(an.fat_mm + 6.0, an.gmax_bottom - 2.0)))
    cx = an.nerve.cx + lat * float(rng.uniform(-10.0, 15.0))
    ux, uy = _unit(lat, angle) if rng.random() < 0.5 else _unit(-lat, angle)
    p0 = (cx - ux * length / 2, cy - uy * length / 2)
    p1 = (cx + ux * length / 2, cy + uy * length / 2)
    rf = LineReflector(
        p0,
        p1,
        brightness_db=float(rng.uniform(22.0, 34.0)),
        specular_width_deg=float(rng.uniform(10.0, 25.0)),
        diffuse=float(rng.uniform(0.1, 0.4)),
        shadow_db=float(rng.uniform(15.0, 30.0)) if kind == "bone_edge" else 0.0,
        kind=kind,
    )
    return rf, {"reflector": kind, "p0_tissue_mm": list(p0), "p1_tissue_mm": list(p1)}


def make_session(
    kind: str, seed: int, generator: str = "train", duration_s: float | None = None
) -> NeedleSession:
    """One simulated patient + needle session of `kind` from the `generator` ranges."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {sorted(GENERATORS)}, got {generator!r}")
    ranges = GENERATORS[generator]
    rng = np.random.default_rng([seed, KINDS.index(kind), list(GENERATORS).index(generator)])
    fixed: dict[str, object] = {
        "calcification": kind == "procedure" or bool(rng.random() < 0.6),
        "frequency_mhz": float(rng.uniform(*ranges.frequency_mhz)),
        "scatterers_per_mm2": float(rng.uniform(*ranges.scatterers_per_mm2)),
        "gain_db": float(rng.uniform(*ranges.gain_db)),
        "depth_mm": float(rng.uniform(65.0, 95.0)),
    }
    if kind == "procedure":
        fixed["nerve"] = "swollen"
    cfg = PhantomConfig.randomized(rng, **fixed)
    sim = PhantomSimulator(cfg, seed=int(rng.integers(0, 2**31)))
    ncfg = draw_needle_config(rng, ranges)
    plan: NeedlePlan | None = None
    reflector: LineReflector | None = None
    info: dict[str, Any] = {}
    if kind == "procedure":
        plan, info = _procedure_plan(sim, rng, ranges)
    elif kind == "intraneural":
        plan, info = _intraneural_plan(sim, rng, ranges)
    elif kind == "reflector":
        reflector, info = _reflector(sim, rng)
    elif kind == "faint":
        plan, info = _faint_plan(sim, rng, ranges, ncfg.elevation_beam_mm)
    scene = NeedleScene(sim, plan, ncfg, reflector, seed=seed)
    sim.overlays.append(scene)
    dur = duration_s if duration_s is not None else float(info.get("duration_s", 20.0))
    info.update({"kind": kind, "generator": generator, "needle_config": ncfg.model_dump()})
    return NeedleSession(sim, scene, kind, generator, dur, info)


def simulate_needle_session(
    out_dir: str | os.PathLike[str],
    kind: str = "procedure",
    seed: int = 0,
    generator: str = "train",
    fps: float = 15.0,
    t0: float | None = None,
    duration_s: float | None = None,
) -> Path:
    """Write a needle session as a recording (protocol "injection") + truth.json
    (format dgs.phantom-needle-truth/1: session info, per-frame truth incl. the needle,
    the injections with time, position and volume)."""
    from edge_service.recording import RecordingWriter, SessionMeta

    ses = make_session(kind, seed, generator, duration_s)
    sim, g = ses.sim, ses.sim.geom
    t_start = time.time() if t0 is None else float(t0)
    meta = SessionMeta(
        side=sim.config.side,
        protocol="injection",
        probe={
            "type": "curvilinear",
            "model": "phantom-C3-5",
            "frequency_mhz": sim.config.frequency_mhz,
            "depth_mm": sim.config.depth_mm,
            "radius_mm": sim.config.radius_mm,
        },
        clip={"kind": "none"},
        spacing_mm=(g.spacing_mm, g.spacing_mm),
        roi=g.roi,
        fps_hz=fps,
        source={"kind": "phantom-needle", "seed": seed, "needle_kind": kind},
        started_t=t_start,
    )
    out = Path(out_dir)
    frames: list[dict[str, Any]] = []
    with RecordingWriter(out, meta) as writer:
        for pf in ses.frames(fps, t_start):
            writer.add_frame(pf.frame)
            frames.append(pf.truth)
    truth = sim.truth()
    injections = []
    plan = ses.scene.plan
    if plan is not None:
        for i, inj in enumerate(plan.injections):
            row = next((b for f in frames for b in f.get("boluses", []) if b["index"] == i), None)
            injections.append(
                {
                    "index": i,
                    "t_start": t_start + inj.t_start,
                    "t_rel_s": inj.t_start,
                    "duration_s": inj.duration_s,
                    "volume_ml": inj.volume_ml,
                    "center_tissue_mm": None if inj.center_mm is None else list(inj.center_mm),
                    "center_px": None if row is None else row["center_px"],
                }
            )
    truth.update(
        {
            "format": "dgs.phantom-needle-truth/1",
            "needle_session": ses.info,
            "injections": injections,
            "fps_hz": fps,
            "t0": t_start,
            "frames": frames,
        }
    )
    tmp = out / "truth.json.tmp"
    tmp.write_text(json.dumps(truth, indent=1, sort_keys=True))
    os.replace(tmp, out / "truth.json")
    log.info("needle session %s: %d frames -> %s", kind, len(frames), out)
    return out
