"""The foreign B-mode simulator: scatterers -> pymust PSF convolution -> scanner display.

Image formation (see psf.py for the kernels): every scatterer deposits A * exp(-2j k0 r)
bilinearly onto a polar grid (0.1 mm x 320 lines over 70 deg), shadowing strong reflectors
attenuate everything behind them along the beam, the grid is convolved with the
depth-blended pymust PSFs (focused transmit, DAS receive), electronic noise is added, and
the scanner chain follows: envelope, focal-zone gain, tissue attenuation with an imperfect
TGC, log compression with the preset's gain and dynamic range, scan conversion to an
800x600 display with a text header, optional speckle-reduction filter and frame
persistence, and burned-in annotations (depth ticks, focus marker). Nothing here comes from
edge_service/phantom.

Motion is this module's own: a hip trajectory of minimum-jerk ramps (`trajectory`), a
nerve that glides laterally with a saturating response to internal rotation and a little
with adduction (restricted: the same shape, 4-8x smaller), a gluteus maximus that slides
with flexion, and a hand-held probe that wanders as an Ornstein-Uhlenbeck process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import fftconvolve

from benchmarks.foreign.anatomy import ForeignAnatomy, Shape
from benchmarks.foreign.psf import PSF_DEPTHS_MM, ProbePreset, psf_bank, radius_mm

DISPLAY_W, DISPLAY_H, HEADER_PX = 800, 600, 40
DEPTH_PRESETS_MM = (85.0, 100.0, 115.0)
FREQ_PRESETS_MHZ = (3.0, 3.6, 4.2)


@dataclass
class ForeignConfig:
    side: str = "left"
    swollen: bool = False
    calcification: bool = False
    restricted: bool = False
    depth_mm: float = 100.0
    fc_mhz: float = 3.6
    nerve_depth_mm: float = 60.0
    gain_db: float = 0.0
    dynamic_range_db: float = 60.0
    tgc_error_db_per_cm: float = 0.0
    persistence: float = 0.2
    despeckle: bool = False
    density_per_mm2: float = 9.0
    noise_db: float = -50.0

    @classmethod
    def draw(cls, rng: np.random.Generator, **fixed: Any) -> ForeignConfig:
        d: dict[str, Any] = {
            "side": str(rng.choice(["left", "right"])),
            "swollen": bool(rng.random() < 0.5),
            "calcification": bool(rng.random() < 0.5),
            "restricted": bool(rng.random() < 0.5),
            "depth_mm": float(rng.choice(DEPTH_PRESETS_MM)),
            "fc_mhz": float(rng.choice(FREQ_PRESETS_MHZ)),
            "gain_db": float(rng.uniform(-4.0, 4.0)),
            "dynamic_range_db": float(rng.choice([50.0, 60.0, 70.0])),
            "tgc_error_db_per_cm": float(rng.uniform(-0.25, 0.25)),
            "persistence": float(rng.choice([0.0, 0.2, 0.35])),
            "despeckle": bool(rng.random() < 0.4),
            "density_per_mm2": float(rng.uniform(6.0, 12.0)),
            "noise_db": float(rng.uniform(-60.0, -40.0)),
        }
        d.update(fixed)
        if "nerve_depth_mm" not in fixed:
            d["nerve_depth_mm"] = float(rng.uniform(45.0, min(75.0, d["depth_mm"] - 25.0)))
        return cls(**d)


# -- hip motion (this module's own trajectory generator) ----------------------------------
def _minjerk(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u**3 * (10 - 15 * u + 6 * u * u)


@dataclass
class Trajectory:
    t: np.ndarray  # (N,) s from the start
    angles: np.ndarray  # (N, 3) flexion, adduction, internal rotation (deg)

    def at(self, tt: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(tt, self.t, self.angles[:, k]) for k in range(3)], 1)

    @property
    def duration_s(self) -> float:
        return float(self.t[-1])


def trajectory(kind: str, rng: np.random.Generator, reps: int = 2) -> Trajectory:
    """FAIR (from neutral) or seated piriformis stretch (from 90 deg flexion): rest, then
    `reps` x (ramp, hold, release, rest) with peaks drawn per session and hand tremor."""
    if kind == "fair":
        base = np.array([0.0, 0.0, 0.0])
        peak = np.array([rng.uniform(65, 85), rng.uniform(10, 20), rng.uniform(30, 40)])
    elif kind == "piriformis":
        base = np.array([rng.uniform(85, 95), 0.0, 0.0])
        peak = base + np.array([rng.uniform(-3, 3), rng.uniform(12, 22), rng.uniform(32, 42)])
    else:
        raise ValueError(f"unknown manoeuvre {kind!r}")
    dt = 0.01
    pieces: list[np.ndarray] = [np.repeat(base[None], int(rng.uniform(3.0, 4.0) / dt), 0)]
    for _ in range(reps):
        ramp, hold, rel, rest = (
            rng.uniform(2.2, 3.2),
            rng.uniform(2.8, 3.5),
            rng.uniform(2.0, 3.0),
            rng.uniform(2.5, 3.5),
        )
        u = _minjerk(np.arange(int(ramp / dt)) / (ramp / dt))[:, None]
        pieces.append(base + u * (peak - base))
        pieces.append(np.repeat(peak[None], int(hold / dt), 0))
        u = _minjerk(np.arange(int(rel / dt)) / (rel / dt))[:, None]
        pieces.append(peak + u * (base - peak))
        pieces.append(np.repeat(base[None], int(rest / dt), 0))
    ang = np.vstack(pieces)
    t = np.arange(len(ang)) * dt
    # Hand tremor / uneven passive movement: a smoothed random walk, ~0.5 deg.
    tremor = np.cumsum(rng.normal(0, 0.08, ang.shape), 0)
    tremor = gaussian_filter1d(tremor, 40.0, axis=0)
    tremor -= tremor.mean(0)
    return Trajectory(t, ang + 0.5 * tremor / max(float(np.abs(tremor).max()), 1e-6))


@dataclass
class ForeignFrame:
    pixels: np.ndarray
    masks: dict[str, np.ndarray]
    truth: dict[str, Any] = field(default_factory=dict)


class ForeignSimulator:
    def __init__(self, cfg: ForeignConfig, seed: int, cache_dir: Path) -> None:
        self.cfg = cfg
        self.seed = seed
        rng = np.random.default_rng([seed, 7919])
        self.rng = rng
        self.R = radius_mm()
        # The sonographer puts the focus near the target: one of two focal presets.
        focus = 50.0 if cfg.nerve_depth_mm < 60.0 else 70.0
        self.preset = ProbePreset(fc_mhz=cfg.fc_mhz, focus_mm=focus)
        self.psf = psf_bank(self.preset, cache_dir)
        self.an = an = ForeignAnatomy(
            rng, cfg.side, cfg.swollen, cfg.calcification, cfg.nerve_depth_mm
        )
        p = self.preset
        self.half = math.radians(p.sector_deg) / 2
        self.n_r = round((cfg.depth_mm + 3.0) / p.dr_mm)
        # Scatterers over the sector's bounding box plus a margin for motion.
        xmax = (self.R + cfg.depth_mm) * math.sin(self.half) + 12.0
        zmin, zmax = self.R * (math.cos(self.half) - 1) - 4.0, cfg.depth_mm + 6.0
        n = int(2 * xmax * (zmax - zmin) * cfg.density_per_mm2)
        self.sx = rng.uniform(-xmax, xmax, n)
        self.sz = rng.uniform(zmin, zmax, n)
        self.amp = an.echo(self.sx, self.sz, rng) * rng.choice([-1.0, 1.0], n)
        # Motion weights.
        ncx, ncz = an.nerve_truth["cx"], an.nerve_truth["cz"]
        in_n = an.nerve.contains(self.sx, self.sz)
        d = np.hypot(
            (self.sx - ncx) / (0.5 * an.nerve_truth["width_mm"]),
            (self.sz - ncz) / (0.5 * an.nerve_truth["ap_mm"]),
        )
        sleeve = np.exp(-(((d - 1.0).clip(0) * 0.5 * an.nerve_truth["ap_mm"]) ** 2) / 2.5**2)
        self.w_nerve = np.where(in_n, 1.0, sleeve)
        # Pelvis-bound structures never follow the nerve.
        fixed = an.ligament.contains(self.sx, self.sz) | an.bone.contains(self.sx, self.sz)
        if an.calc is not None:
            fixed |= an.calc.contains(self.sx, self.sz)
        self.w_nerve[fixed] = 0.0
        gm = an.gmax[0] + an.gmax[1] * self.sx + an.gmax[2] * self.sx**2
        self.w_sup = np.clip((gm - self.sz) / 2.0 + 0.5, 0.0, 1.0)
        # Gliding response: saturating in IR (mm), restricted = same shape, much smaller.
        if cfg.restricted:
            self.g_ir = float(rng.uniform(1.0, 1.9))
        else:
            self.g_ir = float(rng.uniform(5.0, 9.0))
        self.tau_ir = float(rng.uniform(45.0, 70.0))
        self.g_add = self.g_ir * float(rng.uniform(0.01, 0.02))
        self.k_sup = float(rng.uniform(0.01, 0.03))
        self._persist: np.ndarray | None = None
        self._ou = np.zeros(3)
        self._ou_t = 0.0
        self._ref_db: float | None = None
        self.noise_rng = np.random.default_rng([seed, 104729])
        self._build_display()

    # -- geometry ---------------------------------------------------------------------------
    def _build_display(self) -> None:
        cfg, R = self.cfg, self.R
        z_top = R * (math.cos(self.half) - 1)
        w_mm = 2 * (R + cfg.depth_mm) * math.sin(self.half)
        h_mm = cfg.depth_mm - z_top
        self.spacing = max(w_mm / (DISPLAY_W - 24), h_mm / (DISPLAY_H - HEADER_PX - 12))
        self.col0 = DISPLAY_W / 2 - 0.5
        self.row_top = HEADER_PX + 4
        rows, cols = np.mgrid[0:DISPLAY_H, 0:DISPLAY_W].astype(np.float64)
        x = (cols - self.col0) * self.spacing
        z = z_top + (rows - self.row_top) * self.spacing
        r = np.hypot(x, z + R)
        th = np.arctan2(x, z + R)
        p = self.preset
        self.map_r = ((r - R) / p.dr_mm).astype(np.float32)
        self.map_l = ((th + self.half) / p.dtheta_rad).astype(np.float32)
        self.fan = (r >= R) & (r <= R + cfg.depth_mm) & (np.abs(th) <= self.half)
        self.disp_x, self.disp_z = x, z
        ys, xs = np.nonzero(self.fan)
        self.roi = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)

    # -- motion -----------------------------------------------------------------------------
    def glide(self, ang: np.ndarray) -> float:
        """Lateral nerve displacement (mm) relative to the pelvis at hip angles `ang`."""
        ir = max(float(ang[2]), 0.0)
        return self.g_ir * (1 - math.exp(-ir / self.tau_ir)) / (
            1 - math.exp(-40.0 / self.tau_ir)
        ) + self.g_add * float(ang[1])

    def _pose(self, t: float) -> np.ndarray:
        """Probe wander (dx mm, dz mm, rotation rad): Ornstein-Uhlenbeck, tau 1.5 s."""
        dt = max(t - self._ou_t, 0.0)
        self._ou_t = t
        a = math.exp(-dt / 1.5)
        sig = np.array([0.35, 0.2, math.radians(0.5)])
        self._ou = a * self._ou + math.sqrt(1 - a * a) * sig * self.rng.normal(size=3)
        return self._ou.copy()

    # -- rendering --------------------------------------------------------------------------
    def render(self, ang: np.ndarray, t: float) -> ForeignFrame:
        cfg, an, p, R = self.cfg, self.an, self.preset, self.R
        g = self.glide(ang)
        lat = an.lat
        dxn, dzn = lat * g, 0.2 * g
        x = self.sx + self.w_nerve * dxn + self.w_sup * lat * self.k_sup * float(ang[0])
        z = self.sz + self.w_nerve * dzn
        pose = self._pose(t)
        c, s = math.cos(pose[2]), math.sin(pose[2])
        zc = cfg.depth_mm / 2
        xp = c * x - s * (z - zc) + pose[0]
        zp = s * x + c * (z - zc) + zc + pose[1]
        r = np.hypot(xp, zp + R)
        th = np.arctan2(xp, zp + R)
        fr = (r - R) / p.dr_mm
        fl = (th + self.half) / p.dtheta_rad
        ok = (fr >= 0) & (fr < self.n_r - 1) & (fl >= 0) & (fl < p.n_lines - 1)
        fr, fl, rr = fr[ok], fl[ok], r[ok] - R
        val = self.amp[ok] * np.exp(-2j * p.k0_per_mm * rr)
        grid = self._deposit(fr, fl, val)

        def to_probe(sh: Shape, dx: float = 0.0, dz: float = 0.0) -> Shape:
            q = sh.poly + np.array([dx, dz])
            return Shape(
                np.stack(
                    [
                        c * q[:, 0] - s * (q[:, 1] - zc) + pose[0],
                        s * q[:, 0] + c * (q[:, 1] - zc) + zc + pose[1],
                    ],
                    1,
                )
            )

        # Shadows: one-way loss accumulated along each beam through the strong reflectors.
        rr_grid = np.arange(self.n_r) * p.dr_mm + R
        th_grid = np.arange(p.n_lines) * p.dtheta_rad - self.half
        gx = rr_grid[:, None] * np.sin(th_grid)[None, :]
        gz = rr_grid[:, None] * np.cos(th_grid)[None, :] - R
        loss = np.zeros(grid.shape)
        calc_polar = np.zeros(grid.shape, bool)
        for sh, db_per_mm in an.absorbers():
            ps = to_probe(sh)
            m = ps.contains(gx, gz)
            loss += m * db_per_mm * p.dr_mm
            if an.calc is not None and sh is an.calc:
                calc_polar = m
        cum = 2.0 * (np.cumsum(loss, 0) - loss)  # two-way, behind (not at) the reflector
        grid *= 10.0 ** (-np.minimum(cum, 80.0) / 20.0)
        iq = self._convolve(grid)
        if not hasattr(self, "_noise_ref"):
            self._noise_ref = float(
                np.sqrt(np.mean(np.abs(iq[self.n_r // 4 : self.n_r // 2]) ** 2))
            )
        nstd = self._noise_ref * 10 ** (cfg.noise_db / 20) / math.sqrt(2)
        iq += nstd * (
            self.noise_rng.normal(size=iq.shape) + 1j * self.noise_rng.normal(size=iq.shape)
        )
        env = np.abs(iq)
        depth = np.arange(self.n_r) * p.dr_mm
        att = 0.55 * cfg.fc_mhz * 2 * depth / 10.0  # dB, two-way, 0.55 dB/cm/MHz
        tgc = att + cfg.tgc_error_db_per_cm * depth / 10.0
        focal = 3.0 * np.exp(-(((depth - p.focus_mm) / 22.0) ** 2))
        db = 20 * np.log10(env + 1e-12) + (tgc - att + focal)[:, None]
        if self._ref_db is None:
            self._ref_db = float(np.percentile(db[self.n_r // 5 :], 70))
        top = self._ref_db + 0.35 * cfg.dynamic_range_db - cfg.gain_db
        u = (db - (top - cfg.dynamic_range_db)) / cfg.dynamic_range_db
        polar = (255.0 * np.clip(u, 0, 1) ** 1.15).astype(np.float32)
        img = cv2.remap(polar, self.map_l, self.map_r, cv2.INTER_LINEAR, borderValue=0.0)
        img[~self.fan] = 0.0
        if cfg.despeckle:
            img = cv2.bilateralFilter(img, 5, 18.0, 2.0)
        if cfg.persistence > 0 and self._persist is not None:
            img = (1 - cfg.persistence) * img + cfg.persistence * self._persist
        self._persist = img
        pixels = np.clip(img, 0, 255).astype(np.uint8)
        self._annotate(pixels)

        # Masks at display resolution: pixel centres tested against the moved outlines.
        nerve_p = to_probe(an.nerve, dxn, dzn)
        masks = {"nerve": nerve_p.contains(self.disp_x, self.disp_z) & self.fan}
        if an.calc is not None:
            masks["calcification"] = to_probe(an.calc).contains(self.disp_x, self.disp_z) & self.fan
            shadow_p = (np.cumsum(calc_polar, 0) > 0) & ~calc_polar
            shadow = cv2.remap(
                shadow_p.astype(np.uint8), self.map_l, self.map_r, cv2.INTER_NEAREST
            ).astype(bool)
            masks["shadow"] = shadow & self.fan & ~masks["calcification"]
        else:
            masks["calcification"] = np.zeros_like(masks["nerve"])
            masks["shadow"] = np.zeros_like(masks["nerve"])
        ncx = an.nerve_truth["cx"] + dxn
        ncz = an.nerve_truth["cz"] + dzn
        px = c * ncx - s * (ncz - zc) + pose[0]
        pz = s * ncx + c * (ncz - zc) + zc + pose[1]
        z_top = R * (math.cos(self.half) - 1)
        truth = {
            "angles_deg": [float(v) for v in ang],
            "nerve_displacement_mm": g,
            "nerve_displacement_ap_mm": 0.2 * g,
            "nerve_center_px": [
                float(px / self.spacing + self.col0),
                float((pz - z_top) / self.spacing + self.row_top),
            ],
            "probe_jitter": {
                "dx_mm": float(pose[0]),
                "dy_mm": float(pose[1]),
                "rot_deg": math.degrees(pose[2]),
            },
            "nerve_visible": bool(masks["nerve"].any()),
        }
        return ForeignFrame(pixels, masks, truth)

    def _deposit(self, fr: np.ndarray, fl: np.ndarray, val: np.ndarray) -> np.ndarray:
        n_l = self.preset.n_lines
        r0 = np.floor(fr).astype(np.intp)
        l0 = np.floor(fl).astype(np.intp)
        ar, al = fr - r0, fl - l0
        size = self.n_r * n_l
        out = np.zeros(size, np.complex128)
        for dr, dl, w in (
            (0, 0, (1 - ar) * (1 - al)),
            (1, 0, ar * (1 - al)),
            (0, 1, (1 - ar) * al),
            (1, 1, ar * al),
        ):
            idx = (r0 + dr) * n_l + (l0 + dl)
            out.real += np.bincount(idx, w * val.real, size)
            out.imag += np.bincount(idx, w * val.imag, size)
        return out.reshape(self.n_r, n_l)

    def _convolve(self, grid: np.ndarray) -> np.ndarray:
        """Depth-varying PSF: sources weighted by linear interpolation between kernel depths."""
        depth = np.arange(self.n_r) * self.preset.dr_mm
        ds = np.array(PSF_DEPTHS_MM)
        out = np.zeros(grid.shape, np.complex128)
        for k, h in enumerate(self.psf):
            w = np.interp(depth, ds, (np.arange(len(ds)) == k).astype(float))
            if not w.any():
                continue
            rows = np.nonzero(w)[0]
            a, b = rows[0], rows[-1] + 1
            pad = h.shape[0]
            lo, hi = max(a - pad, 0), min(b + pad, self.n_r)
            src = np.zeros((hi - lo, grid.shape[1]), np.complex128)
            src[a - lo : b - lo] = grid[a:b] * w[a:b, None]
            out[lo:hi] += fftconvolve(src, h, mode="same")
        return out

    def _annotate(self, px: np.ndarray) -> None:
        """What a captured scanner screen carries: header text, depth ticks, focus marker."""
        cfg = self.cfg
        cv2.putText(
            px,
            f"FSIM C5  {cfg.fc_mhz:.1f}MHz  D{cfg.depth_mm / 10:.1f}cm  G{50 + cfg.gain_db:.0f}"
            f"  DR{cfg.dynamic_range_db:.0f}",
            (10, 26),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (220,),
            1,
            cv2.LINE_AA,
        )
        x0, y0, x1, y1 = self.roi
        z_top = self.R * (math.cos(self.half) - 1)
        for cm in range(0, int(cfg.depth_mm // 10) + 1):
            row = round((cm * 10.0 - z_top) / self.spacing + self.row_top)
            if y0 <= row < y1:
                px[row, x1 - 8 : x1 - 1] = 200
        frow = round((self.preset.focus_mm - z_top) / self.spacing + self.row_top)
        tri = np.array([[x0 + 2, frow - 5], [x0 + 9, frow], [x0 + 2, frow + 5]], np.int32)
        cv2.fillPoly(px, [tri], (230,))

    def truth(self) -> dict[str, Any]:
        an, cfg = self.an, self.cfg
        nt = an.nerve_truth
        out: dict[str, Any] = {
            "seed": self.seed,
            "config": {**cfg.__dict__, "probe_focus_mm": self.preset.focus_mm},
            "spacing_mm": [self.spacing, self.spacing],
            "roi": list(self.roi),
            "nerve": {
                "ap_mm": nt["ap_mm"],
                "width_mm": nt["width_mm"],
                "csa_mm2": nt["csa_mm2"],
                "depth_mm": nt["cz"],
                "swollen": cfg.swollen,
            },
            "ischial_spine_mm": list(an.spine),
            "gliding": {
                "model": "d_lat = g_ir*(1-exp(-IR/tau))/(1-exp(-40/tau)) + g_add*ADD; d_ap = 0.2*d_lat",
                "restricted": cfg.restricted,
                "g_ir_mm": self.g_ir,
                "tau_ir_deg": self.tau_ir,
            },
            "calcification": {"present": an.calc is not None},
        }
        if an.calc is not None:
            out["calcification"].update(an.calc_truth)
        return out
