"""PhantomSimulator: B-mode frames + ground-truth masks of the deep gluteal space over time.

Motion model (documented in docs/model.md):
- Nerve gliding: the sciatic nerve moves laterally (and a little anteriorly = deeper in this
  posterior view) relative to the sacrospinous ligament as the hip internally rotates:
  d_lat = k_ir * IR + k_add * ADD + k_flex * FLEX (mm, degrees). Free gliding draws k_ir in
  0.10-0.20 mm/deg; restricted (tethered at the calcified ligament) 0.02-0.04 mm/deg, with the
  other coefficients scaled by the same ratio. d_ap = 0.25 * d_lat.
- Tissue moves coherently: every scatterer keeps its strength and is displaced by a smooth
  field (nerve + its fat sleeve with the nerve, gluteus maximus a little with flexion), so the
  speckle pattern moves and deforms with the tissue instead of being redrawn.
- The hand-held probe wanders (slow translation + rotation), the sonographer's gain drifts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.phantom.acoustics import EchoModel, envelope_db
from edge_service.phantom.anatomy import Anatomy, Ellipse, fill_poly
from edge_service.phantom.geometry import FanGeometry
from edge_service.phantom.settings import PhantomConfig
from edge_service.sim.motion import HipMotion

N_LINES = 256
SAMPLE_MM = 0.1
NERVE_SLEEVE_MM = 3.5


@dataclass
class PhantomFrame:
    frame: Frame
    masks: dict[str, np.ndarray]
    truth: dict[str, Any] = field(default_factory=dict)


def _wander(rng: np.random.Generator, n: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random smooth unit-amplitude signal as a sum of slow sinusoids (freq, phase, weight)."""
    f = rng.uniform(0.05, 0.4, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    w = rng.uniform(0.5, 1.0, n)
    return f, ph, w / w.sum()


def _eval(p: tuple[np.ndarray, np.ndarray, np.ndarray], t: float) -> float:
    f, ph, w = p
    return float(np.sum(w * np.sin(2 * np.pi * f * t + ph)))


def ellipse_edge_distance_mm(a: Ellipse, b: Ellipse) -> float:
    """Shortest distance between two ellipse outlines (0 if they overlap)."""
    pa, pb = a.points(180), b.points(180)
    if np.any(b.rho(pa[:, 0], pa[:, 1]) <= 1.0) or np.any(a.rho(pb[:, 0], pb[:, 1]) <= 1.0):
        return 0.0
    d = np.hypot(pa[:, None, 0] - pb[None, :, 0], pa[:, None, 1] - pb[None, :, 1])
    return float(d.min())


class SceneOverlay(Protocol):
    """Something added to the scene (a needle, a bolus, a reflector: phantom/needle.py).

    modify_tissue: displace/add scatterers (tissue mm, before the probe pose);
    add_echoes: deposit echoes on the polar grid before attenuation and the PSF;
    truth: per-frame truth merged into PhantomFrame.truth."""

    def modify_tissue(
        self, x: np.ndarray, y: np.ndarray, amp: np.ndarray, t: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def add_echoes(self, grid: np.ndarray, pose: tuple[float, float, float], t: float) -> None: ...

    def truth(self, pose: tuple[float, float, float], t: float) -> dict[str, Any]: ...


class PhantomSimulator:
    """One simulated patient and probe; `run()` yields frames as the hip moves."""

    def __init__(self, config: PhantomConfig | None = None, seed: int = 0) -> None:
        self.config = cfg = config or PhantomConfig()
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.geom = FanGeometry(
            cfg.radius_mm,
            cfg.depth_mm,
            math.radians(cfg.fan_half_angle_deg),
            cfg.width_px,
            cfg.height_px,
            N_LINES,
            round(cfg.depth_mm / SAMPLE_MM),
        )
        g = self.geom
        half_w = (g.radius_mm + g.depth_mm) * math.sin(g.half_angle_rad) + 8.0
        extent = (-half_w, half_w, g.y_top_mm - 6.0, g.depth_mm + 6.0)
        self.anatomy = an = Anatomy(cfg, rng, extent)
        self.echo = EchoModel(g, cfg.frequency_mhz, focus_mm=an.nerve.cy)
        # Scatterers: uniform over the tissue extent, strength ~ N(0, echogenicity^2).
        area = (extent[1] - extent[0]) * (extent[3] - extent[2])
        n = int(area * cfg.scatterers_per_mm2)
        self.sx = rng.uniform(extent[0], extent[1], n).astype(np.float32)
        self.sy = rng.uniform(extent[2], extent[3], n).astype(np.float32)
        self.amp = (an.echo_at(self.sx, self.sy) * rng.normal(0, 1, n)).astype(np.float32)
        # Displacement weights: the nerve and a thin fat sleeve move with the nerve; gluteus
        # maximus moves with the muscle; ligament and bone stay with the pelvis.
        rho = an.nerve.rho(self.sx, self.sy)
        edge = (rho - 1.0) * math.sqrt(an.nerve.a * an.nerve.b)
        self.w_nerve = np.clip(1.0 - edge / NERVE_SLEEVE_MM, 0.0, 1.0).astype(np.float32)
        self.w_muscle = np.clip((an.gmax_bottom + 1.0 - self.sy) / 2.0, 0.0, 1.0).astype(np.float32)
        # Gliding coefficients (mm per degree of IR / adduction / flexion).
        if cfg.gliding == "free":
            k_ir = float(rng.uniform(0.10, 0.20))
        else:
            k_ir = float(rng.uniform(0.02, 0.04))
        ratio = k_ir / 0.15
        self.k_glide = (0.01 * ratio, 0.03 * ratio, k_ir)  # (flex, add, ir)
        self.k_muscle = float(rng.uniform(0.01, 0.03))
        self._jit = (_wander(rng), _wander(rng), _wander(rng))
        self._gain = _wander(rng, 2)
        self.noise_rng = np.random.default_rng(seed + 1_000_003)
        self._ref_db: float | None = None
        self._noise_std: float | None = None
        self.overlays: list[SceneOverlay] = []

    # -- motion ---------------------------------------------------------------------------
    def nerve_displacement(self, angles: np.ndarray) -> tuple[float, float]:
        """(lateral, anterior) nerve displacement in mm relative to the ligament."""
        flex, add, rot = (float(v) for v in angles)
        kf, ka, ki = self.k_glide
        d_lat = kf * flex + ka * add + ki * rot
        return d_lat, 0.25 * d_lat

    def _pose(self, t_rel: float) -> tuple[float, float, float]:
        c = self.config
        return (
            c.jitter_mm * _eval(self._jit[0], t_rel),
            c.jitter_mm * 0.5 * _eval(self._jit[1], t_rel),
            math.radians(c.jitter_deg * _eval(self._jit[2], t_rel)),
        )

    def _to_probe(
        self, x: np.ndarray, y: np.ndarray, pose: tuple[float, float, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        tx, ty, phi = pose
        cy = self.config.depth_mm / 2.0
        c, s = math.cos(phi), math.sin(phi)
        yy = y - cy
        return c * x - s * yy + tx, s * x + c * yy + cy + ty

    def _ellipse_mask(self, e: Ellipse, pose: tuple[float, float, float]) -> np.ndarray:
        """Exact raster of an ellipse: a pixel belongs when its centre is inside.

        (Polygon filling would add the boundary pixels and bias sizes by ~1 px.)
        """
        g = self.geom
        out = np.zeros((g.height_px, g.width_px), np.uint8)
        box = self._shape_px(e.points(32), pose)
        pad = 2
        c0 = max(int(box[:, 0].min()) - pad, 0)
        c1 = min(int(box[:, 0].max()) + pad + 1, g.width_px)
        r0 = max(int(box[:, 1].min()) - pad, 0)
        r1 = min(int(box[:, 1].max()) + pad + 1, g.height_px)
        if c1 <= c0 or r1 <= r0:
            return out
        rows, cols = np.mgrid[r0:r1, c0:c1].astype(np.float64)
        x, y = g.px_to_mm(cols, rows)
        tx, ty, phi = pose
        cy = self.config.depth_mm / 2.0
        c, s = math.cos(phi), math.sin(phi)
        xx, yy = x - tx, y - ty - cy
        qx, qy = c * xx + s * yy, -s * xx + c * yy + cy  # inverse of _to_probe
        out[r0:r1, c0:c1] = e.rho(qx, qy) <= 1.0
        return out

    def _shape_px(self, pts: np.ndarray, pose: tuple[float, float, float]) -> np.ndarray:
        x, y = self._to_probe(pts[:, 0], pts[:, 1], pose)
        col, row = self.geom.mm_to_px(x, y)
        return np.stack([col, row], 1)

    # -- rendering ------------------------------------------------------------------------
    def render(
        self, angles: np.ndarray, t_rel: float = 0.0, index: int = 0, t_abs: float = 0.0
    ) -> PhantomFrame:
        """One frame with the hip at `angles` [flex, add, rot] deg, `t_rel` s into the session."""
        g, an, cfg = self.geom, self.anatomy, self.config
        lat = an.lat
        d_lat, d_ap = self.nerve_displacement(angles)
        m_lat = self.k_muscle * float(angles[0])
        pose = self._pose(t_rel)
        x = (
            self.sx
            + self.w_nerve * np.float32(lat * d_lat)
            + self.w_muscle * np.float32(lat * m_lat)
        )
        y = self.sy + self.w_nerve * np.float32(d_ap)
        amp = self.amp
        for ov in self.overlays:
            x, y, amp = ov.modify_tissue(x, y, amp, t_rel)
        x, y = self._to_probe(x, y, pose)
        s, line = g.mm_to_polar(x, y)
        r_mm = s * g.dr_mm + g.radius_mm
        grid = self.echo.deposit(s, line, r_mm, amp)
        for ov in self.overlays:
            ov.add_echoes(grid, pose, t_rel)

        # Label maps at the current geometry (display pixels), then along the beams.
        h, w = g.height_px, g.width_px
        nerve_now = Ellipse(
            an.nerve.cx + lat * d_lat,
            an.nerve.cy + d_ap,
            an.nerve.a,
            an.nerve.b,
            an.nerve.angle_rad,
        )
        nerve_m = self._ellipse_mask(nerve_now, pose)
        bone_m = np.zeros((h, w), np.uint8)
        fill_poly(bone_m, self._shape_px(an.bone, pose), 1)
        calc_m = (
            self._ellipse_mask(an.calc, pose) if an.calc is not None else np.zeros((h, w), np.uint8)
        )
        bone_p = g.to_polar(bone_m)
        calc_p = g.to_polar(calc_m)
        loss = self.echo.attenuation_db(bone_p, calc_p)
        grid *= (10.0 ** (-loss / 20.0))[..., None]
        grid = self.echo.psf(grid)
        if self._noise_std is None:
            mid = slice(g.n_samples // 3, 2 * g.n_samples // 3)
            self._noise_std = float(np.median(np.hypot(grid[mid, :, 0], grid[mid, :, 1])))
        std = self._noise_std * 10.0 ** (cfg.noise_db / 20.0)
        grid += self.noise_rng.normal(0.0, std, grid.shape).astype(np.float32)
        gain = cfg.gain_db + cfg.gain_wander_db * _eval(self._gain, t_rel)
        env = envelope_db(grid, self.echo.tgc_db(cfg.tgc_error))
        if self._ref_db is None:
            # Fixed display reference from the first frame: later gain changes show up.
            self._ref_db = float(np.median(env)) - 0.3 * cfg.dynamic_range_db
        img = (env + np.float32(gain - self._ref_db)) * np.float32(255.0 / cfg.dynamic_range_db)
        disp = g.to_display(img)
        pixels = np.clip(disp, 0, 255).astype(np.uint8)

        fan = g.fan_mask
        shadow_p = (np.maximum.accumulate(calc_p, axis=0) > 0) & (calc_p == 0)
        shadow_m = (g.to_display(shadow_p.astype(np.uint8), nearest=True) > 0) & fan & (calc_m == 0)
        masks = {
            "nerve": (nerve_m > 0) & fan,
            "calcification": (calc_m > 0) & fan,
            "shadow": shadow_m,
        }
        frame = Frame(
            pixels,
            t=t_abs,
            index=index,
            spacing_mm=(g.spacing_mm, g.spacing_mm),
            roi=g.roi,
            meta={
                "source": "phantom",
                "probe": "curvilinear",
                "frequency_mhz": cfg.frequency_mhz,
                "depth_mm": cfg.depth_mm,
            },
        )
        col, row = g.mm_to_px(
            *self._to_probe(np.array([nerve_now.cx]), np.array([nerve_now.cy]), pose)
        )
        truth: dict[str, Any] = {
            "index": index,
            "t": t_abs,
            "t_rel_s": t_rel,
            "angles_deg": [float(v) for v in angles],
            "nerve_displacement_mm": d_lat,
            "nerve_displacement_ap_mm": d_ap,
            "nerve_center_px": [float(col[0]), float(row[0])],
            "probe_jitter": {"dx_mm": pose[0], "dy_mm": pose[1], "rot_deg": math.degrees(pose[2])},
            "gain_db": gain,
            "nerve_visible": bool(masks["nerve"].any()),
        }
        if an.calc is not None:
            truth["calcification_nerve_distance_mm"] = ellipse_edge_distance_mm(nerve_now, an.calc)
        for ov in self.overlays:
            truth.update(ov.truth(pose, t_rel))
        return PhantomFrame(frame, masks, truth)

    def run(self, motion: HipMotion, fps: float = 20.0, t0: float = 0.0) -> Iterator[PhantomFrame]:
        """Frames at `fps` over the whole hip motion; frame times are t0 + i / fps."""
        t, angles = motion.sample(fps)
        for i, (tt, ang) in enumerate(zip(t, angles, strict=True)):
            yield self.render(ang, float(tt), i, t0 + float(tt))

    def truth(self) -> dict[str, Any]:
        """Session ground truth: sizes at rest, the gliding model and the probe geometry."""
        an, cfg, g = self.anatomy, self.config, self.geom
        e = an.nerve
        out: dict[str, Any] = {
            "seed": self.seed,
            "config": cfg.model_dump(),
            "spacing_mm": [g.spacing_mm, g.spacing_mm],
            "roi": [g.roi.x0, g.roi.y0, g.roi.x1, g.roi.y1],
            "nerve": {
                "ap_mm": 2 * e.b,
                "width_mm": 2 * e.a,
                "csa_mm2": math.pi * e.a * e.b,
                "flattening": e.a / e.b,
                "depth_mm": e.cy,
                "swollen": cfg.nerve == "swollen",
            },
            "ischial_spine_mm": list(an.spine),
            "gliding": {
                "model": "d_lat = k_flex*flexion + k_add*adduction + k_ir*rotation; d_ap = 0.25*d_lat",
                "restricted": cfg.gliding == "restricted",
                "k_flex_mm_per_deg": self.k_glide[0],
                "k_add_mm_per_deg": self.k_glide[1],
                "k_ir_mm_per_deg": self.k_glide[2],
                "per_10deg_ir_mm": 10.0 * self.k_glide[2],
            },
            "calcification": {"present": an.calc is not None},
        }
        if an.calc is not None:
            out["calcification"].update(
                {
                    "long_axis_mm": 2 * an.calc.a,
                    "thickness_mm": 2 * an.calc.b,
                    "nerve_distance_mm": ellipse_edge_distance_mm(e, an.calc),
                }
            )
        return out


def polar_debug_size(sim: PhantomSimulator) -> tuple[int, int]:
    """(n_samples, n_lines) of the echo grid (for benchmarks and docs)."""
    return sim.geom.n_samples, sim.geom.n_lines


_ = cv2  # cv2 is used via helpers; keep the import explicit for readers of this module
