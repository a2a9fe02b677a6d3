"""Phantom revision 3 realism knobs: bright cortex with a shadow is not a calcification,
fasciae, attenuation under a nominal TGC, beam width; defaults stay revision 2."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_service.phantom import PhantomConfig, PhantomSimulator

STILL: dict[str, Any] = {"jitter_mm": 0.0, "jitter_deg": 0.0, "gain_wander_db": 0.0}
KNOBS = (
    "cortex_echo",
    "cortex_mm",
    "calcification_echo",
    "spine_hump_mm",
    "medial_shelf_mm",
    "fascia_mm",
    "fascia_echo",
    "superficial_fascia_echo",
    "attenuation_db_cm_mhz",
    "beam_width",
    "focus_offset_mm",
)


def _env_db(cfg: PhantomConfig, seed: int = 5) -> tuple[PhantomSimulator, np.ndarray]:
    sim = PhantomSimulator(cfg, seed=seed)
    return sim, sim.render(np.zeros(3)).frame.pixels.astype(np.float32)


def test_realistic_draws_every_knob_and_keeps_explicit_fields() -> None:
    base = PhantomConfig(cortex_echo=5.0)
    seen = {k: set() for k in KNOBS}
    for s in range(20):
        cfg = base.realistic(np.random.default_rng(s))
        assert cfg.cortex_echo == 5.0  # explicitly set: kept
        for k in KNOBS:
            seen[k].add(round(getattr(cfg, k), 6))
        # validated like any config (ranges of the Field definitions)
        PhantomConfig.model_validate(cfg.model_dump())
    assert len(seen["cortex_echo"]) == 1
    for k in KNOBS[1:]:
        assert len(seen[k]) > 1, k
    # cortex and calcification brightness ranges overlap: brightness alone is no cue
    cx = [PhantomConfig().realistic(np.random.default_rng(s)).cortex_echo for s in range(50)]
    ca = [PhantomConfig().realistic(np.random.default_rng(s)).calcification_echo for s in range(50)]
    assert max(cx) > min(ca) and max(ca) > min(cx)


def test_bright_cortex_with_shadow_is_not_labelled_calcification() -> None:
    cfg = PhantomConfig(calcification=False, cortex_echo=24.0, cortex_mm=2.0, **STILL)
    sim, img = _env_db(cfg)
    _, dim = _env_db(PhantomConfig(calcification=False, cortex_echo=4.0, **STILL))
    pf = sim.render(np.zeros(3))
    assert not pf.masks["calcification"].any()
    # the bone surface: first bone pixel down each column inside the fan
    bone = np.zeros(img.shape, np.uint8)
    from edge_service.phantom.anatomy import fill_poly

    fill_poly(bone, sim._shape_px(sim.anatomy.bone, sim._pose(0.0)), 1)
    bone &= sim.geom.fan_mask
    cols = [c for c in range(img.shape[1]) if bone[:, c].any()]
    assert len(cols) > 100
    surf, below = [], []
    surf_dim = []
    for c in cols:
        r = int(np.argmax(bone[:, c]))
        surf.append(img[r : r + 4, c].max())
        surf_dim.append(dim[r : r + 4, c].max())
        deep = img[r + 15 : r + 40, c]
        if deep.size:
            below.append(deep.mean())
    # a bright line ...
    assert np.median(surf) > np.median(surf_dim) + 15
    assert np.median(surf) > 200
    # ... with an acoustic shadow behind it
    assert np.median(below) < 0.35 * np.median(surf)


def test_rounded_spine_changes_the_bone_outline_only() -> None:
    a = PhantomSimulator(PhantomConfig(**STILL), seed=3).anatomy
    b = PhantomSimulator(PhantomConfig(spine_hump_mm=12.0, **STILL), seed=3).anatomy
    assert a.spine == b.spine and a.nerve == b.nerve
    assert len(b.bone) > len(a.bone)
    # the hump top is flat near the apex: the bone at 3 mm lateral is much shallower
    lat = a.lat

    def depth_at(an: Any, x: float) -> float:
        pts = an.bone
        top = [p for p in pts if abs(p[0] - x) < 1.6]
        return float(min(p[1] for p in top))

    sx = a.spine[0]
    assert depth_at(b, sx + lat * 3.0) < depth_at(a, sx + lat * 3.0)


def test_fascia_thickness_and_brightness() -> None:
    thin = PhantomSimulator(PhantomConfig(**STILL), seed=4).anatomy.echo_map
    thick = PhantomSimulator(
        PhantomConfig(fascia_mm=2.5, fascia_echo=2.5, superficial_fascia_echo=1.5, **STILL), seed=4
    ).anatomy.echo_map
    # more of the map is bright fascia (before heterogeneity the values are exact)
    assert (thick > 1.8).sum() > (thin > 1.8).sum()


def test_attenuation_beyond_the_nominal_tgc_darkens_with_depth() -> None:
    def depth_ratio(alpha: float) -> float:
        sim, img = _env_db(PhantomConfig(attenuation_db_cm_mhz=alpha, depth_mm=100.0, **STILL))
        fan = sim.geom.fan_mask
        h = img.shape[0]
        top = img[h // 6 : h // 3][fan[h // 6 : h // 3]].mean()
        deep = img[2 * h // 3 : 5 * h // 6][fan[2 * h // 3 : 5 * h // 6]].mean()
        return float(deep - top)

    assert depth_ratio(0.85) < depth_ratio(0.6) - 10
    assert depth_ratio(0.45) > depth_ratio(0.6) + 5


@pytest.mark.parametrize("wide", [2.5])
def test_wider_beam_blurs_laterally(wide: float) -> None:
    def lateral_grad(bw: float) -> float:
        # Around the transmit focus (the nerve depth), where the waist sets the width; a
        # larger waist diverges less, so far from the focus the beams converge again.
        sim, img = _env_db(PhantomConfig(beam_width=bw, **STILL))
        fy = sim.geom.mm_to_px(np.array([0.0]), np.array([sim.anatomy.nerve.cy]))[1][0]
        band = slice(int(fy) - 25, int(fy) + 25)
        sub, fan = img[band], sim.geom.fan_mask[band]
        gx = np.abs(np.diff(sub, axis=1))[fan[:, 1:] & fan[:, :-1]].mean()
        gy = np.abs(np.diff(sub, axis=0))[fan[1:] & fan[:-1]].mean()
        return float(gx / gy)

    assert lateral_grad(wide) < 0.85 * lateral_grad(1.0)


def test_medial_shelf_runs_under_the_ligament_below_the_calcification() -> None:
    from edge_service.phantom.anatomy import fill_poly

    for seed in range(6):
        cfg = PhantomConfig(calcification=True, medial_shelf_mm=0.8, **STILL)
        sim = PhantomSimulator(cfg, seed=seed)
        an = sim.anatomy
        pose = sim._pose(0.0)
        bone = np.zeros((sim.geom.height_px, sim.geom.width_px), np.uint8)
        fill_poly(bone, sim._shape_px(an.bone, pose), 1)
        calc = sim.render(np.zeros(3)).masks["calcification"]
        assert calc.any() and not (calc & (bone > 0)).any()
        # 10 mm medial of the spine there is bone within ~ligament + 5 mm (steep: none)
        ux, uy = an.lig_dir
        x, y = an.spine[0] + ux * 10.0, an.spine[1] + uy * 10.0 + an.lig_thick + 5.0
        col, row = sim.geom.mm_to_px(*sim._to_probe(np.array([x]), np.array([y]), pose))
        assert bone[int(row[0]), int(col[0])]
        steep = PhantomSimulator(cfg.model_copy(update={"medial_shelf_mm": 0.0}), seed=seed)
        bone0 = np.zeros_like(bone)
        fill_poly(bone0, steep._shape_px(steep.anatomy.bone, pose), 1)
        assert not bone0[int(row[0]), int(col[0])]


def test_training_patients_mix_realism_from_their_own_stream() -> None:
    from models.train.data import _patient

    x0, y0 = _patient((10_003, 1, 64, 96, 0.0))
    x1, y1 = _patient((10_003, 1, 64, 96, 1.0))
    assert x0.shape == x1.shape == (1, 64, 96) and y0.shape == (1, 2, 64, 96)
    # same patient and pose: the nerve label is unchanged (realism changes appearance and
    # the bone outline, never the nerve) ...
    assert np.abs(y0[:, 0].astype(int) - y1[:, 0].astype(int)).max() <= 1
    # ... rendered differently
    assert np.abs(x0.astype(np.float32) - x1.astype(np.float32)).mean() > 0.01
    # realism 0 reproduces the revision-2 draw of the seed exactly
    xa, _ = _patient((10_003, 1, 64, 96, 0.0))
    assert np.array_equal(xa, x0)
