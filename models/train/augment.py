"""Strong on-the-fly augmentation so the model does not learn one simulator setting.

Two layers, both applied to a batch of model inputs (the B-mode ROI at the model's size):

`augment` (geometry + basic intensity, as before): mirror (left/right side), scale/aspect/
shift/rotation (probe geometry and footprint), gain offset, dynamic-range (contrast) and
gamma (log-compression curve), blur and down/up-sampling (speckle size, beam width),
additive and multiplicative noise.

`domain_randomize` (what other scanners and capture paths do to the same anatomy; each
transform on a random subset of the batch): depth presets (zoom out/in with the labels),
linear-array geometry (the sector unwarped to a rectangle) and letterboxing (the image
shrunk into black bars), TGC (smooth depth-dependent gain), frequency presets and speckle
size/density (anisotropic blur, re-speckling with a multiplicative gamma field of random
grain), spatial compounding and speckle-reduction filtering (edge-preserving smoothing),
persistence (blend with a slightly displaced copy, as frame averaging of a moving probe),
on-screen text, calipers and markers burned into the pixels, and JPEG artefacts (real
cv2 encode/decode). Geometric transforms use one sampling grid for image and labels, so
masks stay aligned; photometric ones leave the labels untouched.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch.nn import functional as F


def _rand(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _pick(g: torch.Generator, n: int, p: float) -> torch.Tensor:
    return torch.rand(n, generator=g) < p


def augment(
    x: torch.Tensor,
    y: torch.Tensor,
    g: torch.Generator,
    randomize: bool = True,
    targets: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (N,1,H,W) in [0,1]; y: (N,2,H,W) soft nerve/calcification fractions.

    randomize=False gives the original (pre domain-randomisation) augmentation only;
    targets: fraction of the batch whose nerve appearance is redrawn (randomize_targets)."""
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
    if randomize:
        x, y = randomize_geometry(x, y, g)
    if targets > 0:
        x = randomize_targets(x, y, g, targets)
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
        x[sel] = _blur(x[sel], s, s)
    # intensity: gain, dynamic range, log-compression curve
    gain = _rand(g, n, -0.15, 0.15).view(n, 1, 1, 1)
    contrast = _rand(g, n, 0.7, 1.4).view(n, 1, 1, 1)
    gamma = _rand(g, n, 0.7, 1.5).view(n, 1, 1, 1)
    fan = (x > 0.004).float()  # keep the black outside of the fan black
    x = ((x + gain - 0.3) * contrast + 0.3).clamp(0, 1) ** gamma
    if randomize:
        x = randomize_appearance(x, fan, g)
    # noise: additive + multiplicative
    sig = _rand(g, n, 0.0, 0.04).view(n, 1, 1, 1)
    mul = _rand(g, n, 0.0, 0.15).view(n, 1, 1, 1)
    x = x * (1 + mul * torch.randn(x.shape, generator=g)) + sig * torch.randn(x.shape, generator=g)
    x = (x * fan).clamp(0, 1)
    if randomize:
        x = randomize_capture(x, g)
    return x, y


def _blur(x: torch.Tensor, sy: float, sx: float) -> torch.Tensor:
    """Separable Gaussian blur with axial (rows) and lateral (columns) sigmas in pixels."""
    out = x
    for s, horiz in ((sx, True), (sy, False)):
        if s <= 0.05:
            continue
        r = max(1, math.ceil(2.5 * s))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / s) ** 2)
        k = (k / k.sum()).to(x.dtype)
        if horiz:
            out = F.conv2d(F.pad(out, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        else:
            out = F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return out


# -- geometry: depth presets, linear-array geometry, letterboxing --------------------------
def _linear_grid(h: int, w: int, half_deg: float, r_ratio: float) -> torch.Tensor:
    """Sampling grid (1,H,W,2) that unwarps a sector (apex above the image, half-angle
    half_deg, inner radius = r_ratio * depth) into a rectangle: a linear-array look."""
    half = math.radians(half_deg)
    r0 = r_ratio
    outer = r0 + 1.0
    # Fan footprint in the source crop: width 2*outer*sin(half), top at r0*cos(half).
    top = r0 * math.cos(half)
    width = 2 * outer * math.sin(half)
    height = outer - top
    v = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    u = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 - 1
    rr = r0 + v[:, None]
    th = u[None, :] * half * 0.92
    xs = rr * torch.sin(th) / (width / 2)
    ys = ((rr * torch.cos(th)) - top) / height * 2 - 1
    return torch.stack([xs, ys], -1)[None]


def randomize_geometry(
    x: torch.Tensor, y: torch.Tensor, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = x.shape
    grids = []
    ident = F.affine_grid(torch.eye(2, 3)[None], [1, 1, h, w], align_corners=False)[0]
    for _ in range(n):
        grid = ident.clone()
        r = float(torch.rand(1, generator=g))
        if r < 0.2:
            # Linear array: the sector unwarped to a rectangle.
            half = float(_rand(g, 1, 25.0, 36.0))
            ratio = float(_rand(g, 1, 0.35, 0.8))
            grid = _linear_grid(h, w, half, ratio)[0]
        if float(torch.rand(1, generator=g)) < 0.35:
            # Depth preset: zoom out (deeper preset, anatomy smaller) or in.
            z = float(_rand(g, 1, 0.75, 1.25))
            grid = grid * z + torch.tensor([0.0, (z - 1.0)])  # keep the skin line on top
        if float(torch.rand(1, generator=g)) < 0.15:
            # Letterbox: the image shrunk into black bars (top/bottom or left/right).
            s = float(_rand(g, 1, 0.7, 0.92))
            if float(torch.rand(1, generator=g)) < 0.5:
                grid = grid * torch.tensor([1.0, 1.0 / s])
            else:
                grid = grid * torch.tensor([1.0 / s, 1.0])
        grids.append(grid)
    gr = torch.stack(grids)
    x = F.grid_sample(x, gr, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, gr, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x, y


# -- target appearance: nerve contrast, texture and epineurial rim -------------------------
def randomize_targets(
    x: torch.Tensor, y: torch.Tensor, g: torch.Generator, p: float = 0.5
) -> torch.Tensor:
    """Redraw how the nerve looks on a random subset p of the batch, labels unchanged.

    Real nerves range from a bright fascicular "honeycomb" to a faint hypoechoic oval that
    differs from the muscle around it mostly by a thin rim (obesity, depth, low frequency,
    another scanner's dynamic range): a model that keys on one contrast finds only the
    part of the nerve that looks like its training phantom. Per image: the mean level
    inside the nerve is moved towards (or past) that of its neighbourhood (contrast factor
    -0.4..1.1 of the original difference), the inner texture is scaled 0.5-1.3x or replaced
    by tissue speckle from elsewhere in the frame, and a thin bright rim (strongest where
    the beam meets the boundary at right angles, top and bottom) is added or not (always
    when little contrast is left)."""
    n = x.shape[0]
    out = x.clone()
    for i in range(n):
        if float(torch.rand(1, generator=g)) >= p:
            continue
        m = y[i : i + 1, 0:1]
        if float(m.sum()) < 6.0:
            continue
        xi = out[i : i + 1]
        ms = _blur(m, 0.7, 0.7).clamp(0, 1)
        near = (_blur(m, 4.0, 4.0) * 4).clamp(0, 1) * (1 - _blur(m, 1.5, 1.5) * 2).clamp(0, 1)
        near = near * (xi > 0.004).float()
        if float(near.sum()) < 6.0:
            continue
        mu_in = float((xi * ms).sum() / ms.sum())
        mu_out = float((xi * near).sum() / near.sum())
        c = float(_rand(g, 1, -0.4, 1.1))
        s = float(_rand(g, 1, 0.5, 1.3))
        if float(torch.rand(1, generator=g)) < 0.35:
            # Texture of other tissue: the same frame shifted by 12-30 px, high-passed.
            dy, dx = (
                int(v) * int(w)
                for v, w in zip(
                    torch.randint(12, 31, (2,), generator=g),
                    torch.where(torch.rand(2, generator=g) < 0.5, -1, 1),
                    strict=True,
                )
            )
            tex = torch.roll(xi, (dy, dx), (2, 3))
            detail = tex - _blur(tex, 3.0, 3.0)
        else:
            detail = xi - mu_in
        inner = mu_out + c * (mu_in - mu_out) + s * detail
        xi = xi * (1 - ms) + inner * ms
        # A nerve with no contrast left must keep a visible boundary: a label on an
        # invisible structure would teach the network to guess from context.
        if abs(c) < 0.3 or float(torch.rand(1, generator=g)) < 0.45:
            # Epineurial rim: bright on the boundary, more at top/bottom (specular).
            mb = _blur(m, 1.0, 1.0)
            gy = (mb - torch.roll(mb, 1, 2)).abs() + (mb - torch.roll(mb, -1, 2)).abs()
            gx = (mb - torch.roll(mb, 1, 3)).abs() + (mb - torch.roll(mb, -1, 3)).abs()
            rim = gy + float(_rand(g, 1, 0.2, 1.0)) * gx
            rim = rim / rim.max().clamp_min(1e-6)
            xi = xi + float(_rand(g, 1, 0.06, 0.22)) * rim
        out[i : i + 1] = xi
    return (out * (x > 0.004).float()).clamp(0, 1)


# -- appearance: TGC, frequency, speckle, compounding, filtering, persistence -------------
def randomize_appearance(x: torch.Tensor, fan: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    out = x.clone()
    for i in range(n):
        xi = out[i : i + 1]
        if float(torch.rand(1, generator=g)) < 0.5:
            # TGC: a smooth random gain curve over depth (slider positions), +-0.12.
            knots = _rand(g, 6, -0.12, 0.12).view(1, 1, 6, 1)
            curve = F.interpolate(knots, size=(h, 1), mode="bicubic", align_corners=True)
            xi = xi + curve
        if float(torch.rand(1, generator=g)) < 0.4:
            # Frequency preset / beam: anisotropic blur (lower f: longer axial pulse).
            xi = _blur(xi, float(_rand(g, 1, 0.3, 1.4)), float(_rand(g, 1, 0.3, 2.0)))
        if float(torch.rand(1, generator=g)) < 0.35:
            # Speckle size and density: multiplicative gamma field with a random grain.
            k = float(_rand(g, 1, 1.5, 8.0))  # gamma shape: small = coarse, spiky speckle
            grain = float(_rand(g, 1, 0.4, 1.6))
            field = torch.from_numpy(
                np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=g))).gamma(
                    k, 1.0 / k, (1, 1, h, w)
                )
            ).float()
            field = _blur(field, grain, grain * 1.8)
            xi = xi * (field / field.mean()).clamp(0.2, 3.0) ** 0.5
        if float(torch.rand(1, generator=g)) < 0.3:
            # Compounding / speckle reduction: edge-preserving smoothing (a blurred copy
            # weighted by local similarity, like a bilateral filter), strength random.
            sm = _blur(xi, 1.2, 1.2)
            wgt = torch.exp(-((xi - sm) ** 2) / (2 * float(_rand(g, 1, 0.01, 0.06)) ** 2))
            a = float(_rand(g, 1, 0.4, 1.0))
            xi = xi + a * wgt * (sm - xi)
        if float(torch.rand(1, generator=g)) < 0.25:
            # Persistence: average with a copy displaced by ~1 px (probe/tissue motion).
            dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
            p = float(_rand(g, 1, 0.2, 0.5))
            xi = (1 - p) * xi + p * torch.roll(xi, (dy, dx), (2, 3))
        out[i : i + 1] = xi
    return (out * fan).clamp(0, 1)


# -- capture: burned-in text, calipers, markers; JPEG --------------------------------------
def randomize_capture(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    arr = (x[:, 0].numpy() * 255).round().astype(np.uint8)
    for i in range(n):
        seed = int(torch.randint(0, 2**31, (1,), generator=g))
        rng = np.random.default_rng(seed)
        img = np.ascontiguousarray(arr[i])
        if rng.random() < 0.3:
            burn_annotations(img, rng)
        if rng.random() < 0.3:
            q = int(rng.integers(25, 85))
            ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                img = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
        arr[i] = img
    return torch.from_numpy(arr.astype(np.float32) / 255.0)[:, None]


def burn_annotations(img: np.ndarray, rng: np.random.Generator) -> None:
    """Draw what scanners burn into captured video: text, a caliper pair with its dotted
    line, '+' markers, a depth scale. In place; anywhere, including over the anatomy."""
    h, w = img.shape
    col = int(rng.integers(160, 256))
    for _ in range(int(rng.integers(1, 4))):
        txt = rng.choice(["GEN", "C5-1", "D 9cm", "G 54", "DR 60", "L", "R", "DIST 1.2cm", "FR 18"])
        org = (int(rng.integers(0, max(w - 30, 1))), int(rng.integers(8, h)))
        cv2.putText(
            img, str(txt), org, cv2.FONT_HERSHEY_PLAIN, float(rng.uniform(0.5, 0.9)), col, 1
        )
    if rng.random() < 0.6:
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(np.clip(p0[0] + rng.integers(-40, 40), 0, w - 1)), int(rng.integers(0, h)))
        for p in (p0, p1):
            cv2.drawMarker(img, p, col, cv2.MARKER_CROSS, int(rng.integers(4, 8)), 1)
        n_dots = 12
        for k in range(1, n_dots):
            q = (p0[0] + (p1[0] - p0[0]) * k // n_dots, p0[1] + (p1[1] - p0[1]) * k // n_dots)
            img[min(max(q[1], 0), h - 1), min(max(q[0], 0), w - 1)] = col
    if rng.random() < 0.5:
        x0 = int(rng.choice([1, w - 4]))
        for row in range(0, h, int(rng.integers(8, 20))):
            img[row, x0 : x0 + 3] = col
