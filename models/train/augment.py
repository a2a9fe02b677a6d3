"""Strong on-the-fly augmentation so the model does not learn one simulator setting.

On top of the randomized phantom settings: mirror (left/right side), scale/aspect/shift/
rotation (probe geometry and footprint), gain offset, dynamic-range (contrast) and gamma
(log-compression curve), blur and down/up-sampling (speckle size, beam width), additive and
multiplicative noise. Geometric transforms are applied to the soft labels too.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def _rand(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def augment(
    x: torch.Tensor, y: torch.Tensor, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (N,1,H,W) in [0,1]; y: (N,2,H,W) soft nerve/calcification fractions."""
    n = x.shape[0]
    # geometry
    scale = _rand(g, n, 0.85, 1.2)
    aspect = _rand(g, n, 0.9, 1.1)
    rot = _rand(g, n, -6.0, 6.0) * (math.pi / 180.0)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    tx = _rand(g, n, -0.1, 0.1)
    ty = _rand(g, n, -0.1, 0.1)
    sx = flip / (scale * aspect)
    sy = 1.0 / (scale / aspect)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx * torch.cos(rot)
    theta[:, 0, 1] = -torch.sin(rot) * sy
    theta[:, 1, 0] = torch.sin(rot) * sx
    theta[:, 1, 1] = sy * torch.cos(rot)
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # speckle size / resolution: down-up sample a random subset
    sel = torch.rand(n, generator=g) < 0.3
    if sel.any():
        f = float(_rand(g, 1, 1.3, 2.2))
        h, w = x.shape[-2:]
        small = F.interpolate(x[sel], size=(int(h / f), int(w / f)), mode="area")
        x[sel] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    # blur (beam width)
    sel = torch.rand(n, generator=g) < 0.3
    if sel.any():
        s = float(_rand(g, 1, 0.5, 1.5))
        r = max(1, math.ceil(2.5 * s))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / s) ** 2)
        k = k / k.sum()
        xb = F.conv2d(x[sel], k.view(1, 1, 1, -1), padding=(0, r))
        x[sel] = F.conv2d(xb, k.view(1, 1, -1, 1), padding=(r, 0))
    # intensity: gain, dynamic range, log-compression curve
    gain = _rand(g, n, -0.15, 0.15).view(n, 1, 1, 1)
    contrast = _rand(g, n, 0.7, 1.4).view(n, 1, 1, 1)
    gamma = _rand(g, n, 0.7, 1.5).view(n, 1, 1, 1)
    fan = (x > 0.004).float()  # keep the black outside of the fan black
    x = ((x + gain - 0.3) * contrast + 0.3).clamp(0, 1) ** gamma
    # noise: additive + multiplicative
    sig = _rand(g, n, 0.0, 0.04).view(n, 1, 1, 1)
    mul = _rand(g, n, 0.0, 0.15).view(n, 1, 1, 1)
    x = x * (1 + mul * torch.randn(x.shape, generator=g)) + sig * torch.randn(x.shape, generator=g)
    x = (x * fan).clamp(0, 1)
    return x, y
