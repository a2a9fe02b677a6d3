"""A second rendering family of our own for training: RF convolution speckle.

The phantom (edge_service/phantom) forms its images from point scatterers on a baseband
grid with a separable Gaussian PSF. A model trained on one image-formation chain learns
its quirks (speckle grain and statistics, PSF shape, log curve), which is why accuracy
dropped on an independent simulator. This module renders the SAME patient anatomy and
labels (so masks stay exact) through a deliberately different chain:

- scatterer map: one random scatterer per RF sample, weighted by the tissue echogenicity,
  with a K-distributed (gamma-modulated) density of random shape per frame, so speckle
  ranges from fully developed to sparse/partially developed;
- real RF lines (not baseband): axial pulse = Gaussian-modulated cosine at the probe
  frequency with a random number of cycles, sampled at 0.04-0.05 mm;
- lateral beam from an aperture of random size and focus: diffraction width lambda*z/D at the
  focus growing geometrically away from it, with a sinc^2 profile (side lobes), blended
  over depth bands (spatially varying PSF);
- frequency-dependent attenuation of random slope, an imperfect TGC, bone/calcification
  shadows with random strength;
- Hilbert envelope detection, optional spatial compounding (averaged independent speckle),
  electronic noise, log compression with a random dynamic range and a random grey map
  (power/sigmoid), scan conversion for the curvilinear geometry on a line count of its own;
- nerve appearance randomised within the anatomy (fascicle contrast, overall echo).

Nothing here is taken from benchmarks/foreign (the test family); the anatomy is the
phantom's, so the two families differ only in how the image is formed.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from scipy.signal import hilbert

from edge_service.phantom import PhantomSimulator
from edge_service.phantom.anatomy import fill_poly
from edge_service.phantom.geometry import FanGeometry
from edge_service.phantom.simulator import PhantomFrame

C_MM_US = 1.54
N_BANDS = 6


def _sinc2_kernel(width_lines: float) -> np.ndarray:
    """Lateral beam profile sinc^2(x / w) (first zero at w), windowed to +-2.5 w."""
    w = max(width_lines, 0.35)
    half = max(1, math.ceil(2.5 * w))
    x = np.arange(-half, half + 1, dtype=np.float32)
    k = np.sinc(x / w) ** 2 * np.hanning(2 * half + 3)[1:-1]
    return (k / k.sum()).astype(np.float32)


def _rf_pulse(freq_mhz: float, dz_mm: float, cycles: float, phase: float) -> np.ndarray:
    """Two-way echo pulse along range: Gaussian envelope x cos at the probe frequency."""
    period_mm = C_MM_US / freq_mhz / 2.0  # range period of the two-way echo
    sigma = cycles * period_mm / 2.355
    half = max(2, math.ceil(3.0 * sigma / dz_mm))
    z = np.arange(-half, half + 1, dtype=np.float32) * dz_mm
    return (np.exp(-0.5 * (z / sigma) ** 2) * np.cos(2 * np.pi * z / period_mm + phase)).astype(
        np.float32
    )


class RfRenderer:
    """Renders a PhantomSimulator's scene through the RF convolution chain."""

    def __init__(self, sim: PhantomSimulator, rng: np.random.Generator) -> None:
        self.sim = sim
        self.rng = rng
        g = sim.geom
        self.n_lines = int(rng.integers(128, 321))
        self.dz = float(rng.uniform(0.04, 0.05))
        n_samples = round(g.depth_mm / self.dz)
        self.geom = FanGeometry(
            g.radius_mm,
            g.depth_mm,
            g.half_angle_rad,
            g.width_px,
            g.height_px,
            self.n_lines,
            n_samples,
        )
        pg = self.geom
        si, li = np.mgrid[0:n_samples, 0 : self.n_lines].astype(np.float32)
        r = pg.radius_mm + (si + 0.5) * pg.dr_mm
        th = li * pg.dtheta - pg.half_angle_rad
        self.px = r * np.sin(th)
        self.py = r * np.cos(th) - pg.radius_mm
        self.freq = float(sim.config.frequency_mhz * rng.uniform(0.85, 1.15))
        self.cycles = float(rng.uniform(1.5, 3.5))
        self.aperture = float(rng.uniform(10.0, 28.0))
        nerve = sim.anatomy.nerve
        self.focus = float(np.clip(nerve.cy + rng.uniform(-25, 20), 15.0, g.depth_mm))
        self.alpha = float(rng.uniform(0.4, 0.9))  # dB/cm/MHz of this patient
        self.tgc_alpha = float(rng.uniform(0.45, 0.75))  # what the scanner compensates
        self.bone_db_mm = float(rng.uniform(2.0, 8.0))
        self.calc_db = float(rng.uniform(15.0, 35.0))
        self.k_shape = float(np.exp(rng.uniform(np.log(0.7), np.log(30.0))))
        self.compound = int(rng.choice([1, 1, 2, 3]))
        self.dr_db = float(rng.uniform(40.0, 75.0))
        self.noise_db = float(rng.uniform(-45.0, -25.0))
        self.gamma = float(rng.uniform(0.7, 1.4))
        self.sigmoid = bool(rng.random() < 0.3)
        self.gain = float(rng.uniform(-0.15, 0.15))
        self.fasc_power = float(rng.uniform(0.6, 1.0))
        self.nerve_scale = float(rng.uniform(0.7, 1.3))
        self._kernels()

    def _kernels(self) -> None:
        pg = self.geom
        lam = C_MM_US / self.freq
        self.ky = _rf_pulse(self.freq, pg.dr_mm, self.cycles, float(self.rng.uniform(0, 6.28)))
        self.band_z = np.linspace(0.0, pg.depth_mm, N_BANDS)
        self.kx = []
        for z in self.band_z:
            zz = max(z, 1.0)
            diffraction = lam * zz / self.aperture
            geometric = self.aperture * abs(zz - self.focus) / self.focus * 0.35
            w_mm = math.hypot(diffraction, geometric)
            line_mm = (pg.radius_mm + zz) * pg.dtheta
            self.kx.append(_sinc2_kernel(w_mm / line_mm))
        z = (np.arange(pg.n_samples) + 0.5) * pg.dr_mm
        pos = np.clip(z / pg.depth_mm * (N_BANDS - 1), 0, N_BANDS - 1 - 1e-6)
        i0 = pos.astype(int)
        frac = (pos - i0).astype(np.float32)
        self.band_w = np.zeros((N_BANDS, pg.n_samples), np.float32)
        self.band_w[i0, np.arange(z.size)] = 1 - frac
        self.band_w[i0 + 1, np.arange(z.size)] += frac
        self.z = z.astype(np.float32)

    def _echo(self, angles: np.ndarray, pose: tuple[float, float, float]) -> np.ndarray:
        """Echogenicity at every polar sample, with the nerve displaced as in the phantom."""
        sim, an = self.sim, self.sim.anatomy
        tx, ty, phi = pose
        cy = sim.config.depth_mm / 2.0
        c, s = math.cos(phi), math.sin(phi)
        xx, yy = self.px - tx, self.py - ty - cy
        x = c * xx + s * yy
        y = -s * xx + c * yy + cy
        d_lat, d_ap = sim.nerve_displacement(angles)
        e = an.nerve
        # Inverse displacement: sample the rest anatomy where the nerve came from.
        rho = e.rho(x - an.lat * d_lat, y - d_ap)
        edge = (rho - 1.0) * math.sqrt(e.a * e.b)
        w = np.clip(1.0 - edge / 3.5, 0.0, 1.0)
        xs = x - w * an.lat * d_lat
        ys = y - w * d_ap
        echo = an.echo_at(xs, ys).astype(np.float32)
        inside = e.rho(xs, ys) <= 1.0
        if inside.any():
            v = echo[inside]
            echo[inside] = (v**self.fasc_power) * self.nerve_scale
        return echo

    def _attenuation_db(self, pose: tuple[float, float, float], calc: np.ndarray) -> np.ndarray:
        sim, pg = self.sim, self.geom
        g = sim.geom
        bone_m = np.zeros((g.height_px, g.width_px), np.uint8)
        fill_poly(bone_m, sim._shape_px(sim.anatomy.bone, pose), 1)
        bone_p = pg.to_polar(bone_m).astype(np.float32)
        calc_p = pg.to_polar(calc.astype(np.uint8)).astype(np.float32)
        per = np.full(bone_p.shape, 2.0 * self.alpha * self.freq * pg.dr_mm / 10.0, np.float32)
        per += bone_p * np.float32(self.bone_db_mm * pg.dr_mm)
        loss = np.cumsum(per, axis=0) - per
        if calc_p.any():
            behind = (np.maximum.accumulate(calc_p, axis=0) > 0) & (calc_p == 0)
            loss += behind * np.float32(self.calc_db)
        return loss

    def render(self, angles: np.ndarray, t_rel: float) -> PhantomFrame:
        """The phantom's frame (labels, ROI, spacing) with this chain's pixels."""
        pf = self.sim.render(angles, t_rel=t_rel)
        pose = self.sim._pose(t_rel)
        echo = self._echo(angles, pose)
        amp_loss = 10.0 ** (-self._attenuation_db(pose, pf.masks["calcification"]) / 20.0)
        rng = self.rng
        env2 = np.zeros(echo.shape, np.float32)
        for _ in range(self.compound):
            tex = rng.gamma(self.k_shape, 1.0 / self.k_shape, echo.shape).astype(np.float32)
            scat = echo * np.sqrt(tex) * rng.standard_normal(echo.shape).astype(np.float32)
            scat *= amp_loss
            rf = np.zeros_like(scat)
            for b in range(N_BANDS):
                rows = np.nonzero(self.band_w[b] > 0)[0]
                if rows.size == 0:
                    continue
                pad = self.ky.size
                lo, hi = max(0, rows[0] - pad), min(scat.shape[0], rows[-1] + pad + 1)
                conv = cv2.sepFilter2D(
                    scat[lo:hi], -1, self.kx[b], self.ky, borderType=cv2.BORDER_CONSTANT
                )
                sl = slice(rows[0], rows[-1] + 1)
                rf[sl] += conv[rows[0] - lo : rows[-1] + 1 - lo] * self.band_w[b, sl, None]
            env2 += np.abs(hilbert(rf, axis=0)).astype(np.float32) ** 2
        env2 /= self.compound
        ref = float(np.median(env2[env2.shape[0] // 4 : env2.shape[0] // 2]))
        env2 += (
            ref
            * 10.0 ** (self.noise_db / 10.0)
            * rng.exponential(1.0, env2.shape).astype(np.float32)
        )
        tgc = 2.0 * self.tgc_alpha * self.freq * self.z / 10.0
        db = 10.0 * np.log10(env2 + 1e-20) + tgc[:, None]
        top = float(np.percentile(db, 99.5))
        v = np.clip((db - (top - self.dr_db)) / self.dr_db + self.gain, 0.0, 1.0)
        v = v**self.gamma
        if self.sigmoid:
            v = 1.0 / (1.0 + np.exp(-8.0 * (v - 0.5)))
            v = (v - v.min()) / max(float(v.max() - v.min()), 1e-6)
        disp = self.geom.to_display((v * 255.0).astype(np.float32))
        pixels = np.clip(disp, 0, 255).astype(np.uint8)
        return dataclasses.replace(pf, frame=dataclasses.replace(pf.frame, pixels=pixels))
