"""Echo formation on the polar (range x line) grid of a curvilinear probe.

The convolution model of B-mode imaging: complex baseband echoes of point scatterers
(amplitude a_i, phase 2k r_i) are deposited on the polar grid, attenuated along each beam
(soft tissue ~0.6 dB/cm/MHz; bone and calcification strongly enough to leave an acoustic
shadow), convolved with a separable point-spread function (Gaussian pulse envelope along
range, Gaussian beam across lines whose width grows away from the transmit focus), plus
electronic noise, then time-gain compensated, envelope-detected and log-compressed.

Why this and not a full field simulator (Field II / pymust): a 640x480 frame must render in
tens of milliseconds so sessions and training data can be generated on the appliance's CPU;
the convolution model keeps the physics that matter for the detector and the speckle tracker
(speckle statistics and size from frequency and beam width, coherent speckle motion,
depth-dependent resolution, shadowing, TGC and dynamic range).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_service.phantom.geometry import FanGeometry

SOUND_SPEED_MM_US = 1.54
SOFT_ALPHA_DB_CM_MHZ = 0.6
BONE_ALPHA_DB_CM_MHZ = 40.0
CALC_ALPHA_DB_CM_MHZ = 25.0
# Inside the focus only a small part of that loss is spent, the rest (reflection at the
# far interface, absorption) darkens everything behind it: a small calcific focus shows
# as a uniformly bright echo with a clean posterior shadow, as on real scans, instead of
# a bright top edge fading to black within the focus itself.
CALC_ALPHA_INSIDE_DB_CM_MHZ = 3.0
N_PSF_BANDS = 4


def _gauss_kernel(sigma: float) -> np.ndarray:
    sigma = max(sigma, 0.3)
    half = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-half, half + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


class EchoModel:
    """PSF, attenuation and display chain for one probe setting."""

    def __init__(
        self,
        geom: FanGeometry,
        frequency_mhz: float,
        focus_mm: float,
        beam_width: float = 1.0,
        alpha_db_cm_mhz: float = SOFT_ALPHA_DB_CM_MHZ,
    ) -> None:
        self.geom = geom
        self.f = frequency_mhz
        self.wavelength_mm = SOUND_SPEED_MM_US / frequency_mhz
        self.k2 = 4.0 * math.pi / self.wavelength_mm  # two-way phase per mm of range
        sigma_ax = 0.5 * self.wavelength_mm / geom.dr_mm
        self.ky = _gauss_kernel(sigma_ax)
        # Lateral beam: narrowest at the focus, widening like a Gaussian beam.
        sigma_focus = 1.6 * beam_width * self.wavelength_mm
        # A Gaussian beam's Rayleigh range grows with its waist squared.
        z_rayleigh = 20.0 * beam_width**2
        depths = np.linspace(0.0, geom.depth_mm, N_PSF_BANDS)
        self.band_depths = depths
        self.kx = []
        for z in depths:
            s_mm = sigma_focus * math.sqrt(1.0 + ((z - focus_mm) / z_rayleigh) ** 2)
            line_mm = (geom.radius_mm + z) * geom.dtheta
            self.kx.append(_gauss_kernel(s_mm / line_mm))
        # Linear interpolation weights of each band for every range sample.
        z = geom.depth_of_sample_mm
        w = np.zeros((N_PSF_BANDS, geom.n_samples), np.float32)
        pos = np.clip(z / geom.depth_mm * (N_PSF_BANDS - 1), 0, N_PSF_BANDS - 1 - 1e-6)
        i0 = pos.astype(int)
        frac = pos - i0
        w[i0, np.arange(z.size)] = 1 - frac
        w[i0 + 1, np.arange(z.size)] += frac
        self.band_w = w[:, :, None, None]
        self.soft_loss_db_per_sample = 2.0 * alpha_db_cm_mhz * self.f * geom.dr_mm / 10.0
        # The scanner's TGC assumes the nominal soft-tissue attenuation, not the patient's.
        self.tgc_db_per_sample = 2.0 * SOFT_ALPHA_DB_CM_MHZ * self.f * geom.dr_mm / 10.0

    def deposit(
        self, s: np.ndarray, line: np.ndarray, r_mm: np.ndarray, amp: np.ndarray
    ) -> np.ndarray:
        """Sum complex scatterer echoes onto the polar grid -> (n_samples, n_lines, 2) float32."""
        g = self.geom
        si = np.rint(s).astype(np.int64)
        li = np.rint(line).astype(np.int64)
        ok = (si >= 0) & (si < g.n_samples) & (li >= 0) & (li < g.n_lines)
        idx = si[ok] * g.n_lines + li[ok]
        ph = self.k2 * r_mm[ok]
        a = amp[ok]
        n = g.n_samples * g.n_lines
        out = np.empty((g.n_samples, g.n_lines, 2), np.float32)
        out[..., 0] = np.bincount(idx, a * np.cos(ph), n).reshape(g.n_samples, g.n_lines)
        out[..., 1] = np.bincount(idx, a * np.sin(ph), n).reshape(g.n_samples, g.n_lines)
        return out

    def attenuation_db(self, bone_polar: np.ndarray, calc_polar: np.ndarray) -> np.ndarray:
        """Two-way loss in dB reaching each sample (exclusive of the sample itself)."""
        per = np.full(bone_polar.shape, self.soft_loss_db_per_sample, np.float32)
        scale = 2.0 * self.f * self.geom.dr_mm / 10.0
        per += bone_polar.astype(np.float32) * (BONE_ALPHA_DB_CM_MHZ * scale)
        loss = np.cumsum(per, axis=0) - per
        c = calc_polar.astype(np.float32)
        if c.any():
            inside = c * np.float32(CALC_ALPHA_INSIDE_DB_CM_MHZ * scale)
            calc_loss = np.cumsum(inside, axis=0) - inside
            behind = (np.maximum.accumulate(c, axis=0) > 0) & (c == 0)
            full = c.sum(axis=0) * np.float32(CALC_ALPHA_DB_CM_MHZ * scale)
            calc_loss = np.where(behind, full[None, :], calc_loss)
            loss += calc_loss
        return loss

    def tgc_db(self, tgc_error: float) -> np.ndarray:
        """Receive gain per sample: compensates the nominal soft-tissue slope; `tgc_error`
        leaves a residual brightening or darkening with depth, as a real user setting does."""
        n = np.arange(self.geom.n_samples, dtype=np.float32)[:, None]
        return (self.tgc_db_per_sample * n * (1.0 + tgc_error)).astype(np.float32)

    def psf(self, grid: np.ndarray) -> np.ndarray:
        """Depth-dependent separable PSF: blend of N_PSF_BANDS Gaussian beams."""
        out = np.zeros_like(grid)
        for b in range(N_PSF_BANDS):
            w = self.band_w[b]
            rows = np.nonzero(w[:, 0, 0] > 0)[0]
            if rows.size == 0:
                continue
            lo = max(0, rows[0] - self.ky.size)
            hi = min(grid.shape[0], rows[-1] + self.ky.size + 1)
            conv = cv2.sepFilter2D(
                grid[lo:hi], -1, self.kx[b], self.ky, borderType=cv2.BORDER_CONSTANT
            )
            out[rows[0] : rows[-1] + 1] += (
                conv[rows[0] - lo : rows[-1] + 1 - lo] * w[rows[0] : rows[-1] + 1]
            )
        return out


def envelope_db(grid: np.ndarray, gain_db_per_sample: np.ndarray) -> np.ndarray:
    """|I + jQ| in dB plus a per-sample gain in dB (TGC/attenuation already folded in)."""
    p = grid[..., 0] ** 2 + grid[..., 1] ** 2
    return (10.0 * np.log10(p + 1e-12) + gain_db_per_sample).astype(np.float32)
