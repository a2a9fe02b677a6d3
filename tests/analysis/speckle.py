"""Synthetic B-mode speckle with exactly known sub-pixel motion (test data generator).

A complex Gaussian scatterer field is low-pass filtered by an anisotropic point-spread
function in the Fourier domain (fine axially, coarse laterally, like a 3-5 MHz curvilinear
probe) and moved by a Fourier phase ramp - an exact sub-pixel shift for a band-limited
field - before envelope detection and log compression. Regions (nerve, landmark,
muscle) are separate fields that move independently; noise and decorrelation (a fraction
of the scatterers replaced each frame) are optional.
"""

from __future__ import annotations

import numpy as np


class SpeckleScene:
    def __init__(
        self,
        shape: tuple[int, int] = (240, 320),
        seed: int = 0,
        psf_px: tuple[float, float] = (2.5, 1.2),
    ) -> None:
        self.shape = shape
        self.rng = np.random.default_rng(seed)
        h, w = shape
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.fftfreq(w)[None, :]
        sx, sy = psf_px
        self.otf = np.exp(-2 * (np.pi**2) * ((fx * sx) ** 2 + (fy * sy) ** 2))
        self.fx, self.fy = fx, fy
        self.fields: list[np.ndarray] = []

    def new_field(self) -> int:
        h, w = self.shape
        f = self.rng.standard_normal((h, w)) + 1j * self.rng.standard_normal((h, w))
        self.fields.append(np.fft.fft2(f))
        return len(self.fields) - 1

    def decorrelate(self, k: int, fraction: float) -> None:
        """Replace `fraction` of field k's energy by fresh scatterers (out-of-plane motion)."""
        h, w = self.shape
        fresh = np.fft.fft2(
            self.rng.standard_normal((h, w)) + 1j * self.rng.standard_normal((h, w))
        )
        self.fields[k] = np.sqrt(1 - fraction) * self.fields[k] + np.sqrt(fraction) * fresh

    def envelope(self, k: int, shift: tuple[float, float]) -> np.ndarray:
        dx, dy = shift
        ramp = np.exp(-2j * np.pi * (self.fx * dx + self.fy * dy))
        return np.abs(np.fft.ifft2(self.fields[k] * self.otf * ramp))

    def render(
        self,
        layers: list[tuple[int, tuple[float, float], np.ndarray | None, float]],
        noise: float = 0.0,
    ) -> np.ndarray:
        """layers: (field, shift px, mask or None for background, brightness). Later wins."""
        h, w = self.shape
        img = np.zeros((h, w))
        for k, shift, mask, gain in layers:
            env = self.envelope(k, shift) * gain
            img = env if mask is None else np.where(mask, env, img)
        if noise:
            img = img + noise * np.abs(self.rng.standard_normal((h, w)))
        db = 20 * np.log10(img / np.median(img) + 1e-6)
        return np.clip((db + 30.0) / 45.0 * 255.0, 0, 255).astype(np.uint8)


def disc(shape: tuple[int, int], cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
