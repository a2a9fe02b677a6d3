"""Synthetic frames that are NOT a deep-gluteal short-axis view (for the view gate's
benchmark and tests). Each category starts from a held-out phantom frame (seeds 30_000+,
used by no training or calibration) or from scratch; none uses the pydicom files, which are
the gate's real-image test set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from edge_service.acquisition.colour import chroma_fraction
from edge_service.acquisition.frame import Frame, Roi
from edge_service.phantom import PhantomConfig, PhantomSimulator

NEG_SEED_BASE = 30_000


def phantom_frame(seed: int) -> Frame:
    """One in-distribution frame of a randomized held-out phantom patient."""
    rng = np.random.default_rng(seed)
    sim = PhantomSimulator(PhantomConfig.randomized(rng), seed=seed)
    ang = np.array([rng.uniform(0, 90), rng.uniform(0, 20), rng.uniform(-10, 40)])
    return sim.render(ang, t_rel=float(rng.uniform(0, 40))).frame


def _with(f: Frame, px: np.ndarray, **meta: object) -> Frame:
    return dataclasses.replace(
        f, pixels=np.ascontiguousarray(px, np.uint8), meta={**f.meta, **meta}
    )


def _roi(f: Frame) -> Roi:
    return f.region


def blank(f: Frame, rng: np.random.Generator) -> Frame:
    level = int(rng.choice([0, 0, 40, 128, 255]))
    return _with(f, np.full_like(f.pixels, level))


def noise(f: Frame, rng: np.random.Generator) -> Frame:
    return _with(f, rng.integers(0, 256, f.pixels.shape, dtype=np.uint8))


def no_contact(f: Frame, rng: np.random.Generator) -> Frame:
    """Probe lifted: near-field reverberation bands, then black (inside the same fan)."""
    r = _roi(f)
    px = np.zeros_like(f.pixels)
    fan = f.pixels > 0
    h = r.height
    ys = np.arange(f.pixels.shape[0])[:, None] - r.y0
    bands = (60 * np.exp(-ys / (0.08 * h)) * (1 + np.cos(ys / 3.0)) / 2).clip(0, 255)
    px[:] = bands.astype(np.uint8)
    px = (px.astype(np.int16) + rng.integers(0, 6, px.shape)).clip(0, 255).astype(np.uint8)
    return _with(f, np.where(fan, px, 0))


def colour_doppler(f: Frame, rng: np.random.Generator) -> Frame:
    """A colour Doppler box (red/blue flow blobs) over the B-mode, as a scanner exports it
    in RGB; the gray frame carries the luma and the source reports the chroma fraction."""
    r = _roi(f)
    rgb = np.repeat(f.pixels[..., None], 3, axis=2).copy()
    bw, bh = int(r.width * rng.uniform(0.25, 0.45)), int(r.height * rng.uniform(0.25, 0.4))
    x0 = r.x0 + int(rng.uniform(0.2, 0.5) * r.width)
    y0 = r.y0 + int(rng.uniform(0.2, 0.5) * r.height)
    yy, xx = np.mgrid[0 : f.pixels.shape[0], 0 : f.pixels.shape[1]]
    for _ in range(3):
        cx, cy = x0 + rng.uniform(0, bw), y0 + rng.uniform(0, bh)
        blob = ((xx - cx) / rng.uniform(10, 30)) ** 2 + ((yy - cy) / rng.uniform(6, 15)) ** 2 < 1
        blob &= (xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh)
        colour = (220, 30, 30) if rng.random() < 0.5 else (30, 60, 230)
        rgb[blob] = colour
    cv2.rectangle(rgb, (x0, y0), (x0 + bw, y0 + bh), (200, 200, 200), 1)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return _with(f, gray, chroma_fraction=chroma_fraction(rgb, (r.x0, r.y0, r.x1, r.y1)))


def linear_probe(f: Frame, rng: np.random.Generator) -> Frame:
    """Linear-array geometry: a rectangular image filling the whole ROI (no fan), taken
    from the inside of the phantom's sector and stretched to the ROI."""
    r = _roi(f)
    px = f.pixels[r.y0 : r.y1, r.x0 : r.x1]
    h, w = px.shape
    inner = px[h // 4 : h, w // 3 : 2 * w // 3]
    out = f.pixels.copy()
    out[r.y0 : r.y1, r.x0 : r.x1] = cv2.resize(inner, (w, h), interpolation=cv2.INTER_LINEAR)
    return _with(f, out)


def phased_array(f: Frame, rng: np.random.Generator) -> Frame:
    """Phased-array (cardiac) sector: a narrow fan from a point apex at the top centre."""
    r = _roi(f)
    out = f.pixels.copy()
    yy, xx = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    ax, ay = (r.x0 + r.x1) / 2, r.y0
    ang = np.degrees(np.arctan2(xx - ax, np.maximum(yy - ay, 1e-6)))
    half = rng.uniform(35, 45)
    keep = (np.abs(ang) < half) & (yy >= ay) & (np.hypot(xx - ax, yy - ay) < r.height)
    src = f.pixels[r.y0 : r.y1, r.x0 : r.x1]
    stretched = cv2.resize(src[: r.height // 2], (r.width, r.height))
    out[r.y0 : r.y1, r.x0 : r.x1] = stretched
    return _with(f, np.where(keep, out, 0))


def shuffled_patches(f: Frame, rng: np.random.Generator) -> Frame:
    r = _roi(f)
    px = f.pixels[r.y0 : r.y1, r.x0 : r.x1].copy()
    n = 6
    bh, bw = px.shape[0] // n, px.shape[1] // n
    blocks = [
        px[i * bh : (i + 1) * bh, j * bw : (j + 1) * bw].copy() for i in range(n) for j in range(n)
    ]
    order = rng.permutation(len(blocks))
    for k, b in enumerate(order):
        i, j = divmod(k, n)
        px[i * bh : (i + 1) * bh, j * bw : (j + 1) * bw] = blocks[b]
    out = f.pixels.copy()
    out[r.y0 : r.y1, r.x0 : r.x1] = px
    return _with(f, out)


def heavy_overlay(f: Frame, rng: np.random.Generator) -> Frame:
    """Dense burned-in text, calipers and measurement boxes over the image."""
    out = f.pixels.copy()
    r = _roi(f)
    for k in range(14):
        y = r.y0 + 20 + k * (r.height - 30) // 14
        cv2.putText(
            out,
            f"DIST {rng.uniform(1, 90):.1f} mm  AREA {rng.uniform(1, 900):.0f}",
            (r.x0 + 5, y),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            255,
            2,
        )
    for _ in range(6):
        p0 = (int(rng.uniform(r.x0, r.x1)), int(rng.uniform(r.y0, r.y1)))
        p1 = (int(rng.uniform(r.x0, r.x1)), int(rng.uniform(r.y0, r.y1)))
        cv2.line(out, p0, p1, 255, 2)
        cv2.rectangle(out, p0, (p0[0] + 60, p0[1] + 40), 230, 2)
    return _with(f, out)


def bone_phantom(f: Frame, rng: np.random.Generator) -> Frame:
    """Other simple anatomy: speckle over a bright curved bone surface with a full shadow
    beneath it, and no nerve (a femoral head / cortex view)."""
    r = _roi(f)
    h, w = f.pixels.shape
    speckle = rng.rayleigh(1.0, (h // 3, w // 3))
    speckle = cv2.resize(speckle, (w, h), interpolation=cv2.INTER_CUBIC)
    img = 50 + 25 * speckle
    yy, xx = np.mgrid[0:h, 0:w]
    cx = r.x0 + rng.uniform(0.3, 0.7) * r.width
    surf = r.y0 + r.height * (0.35 + 0.15 * ((xx - cx) / r.width) ** 2 * 4)
    img = np.where(np.abs(yy - surf) < 4, 240, img)
    img = np.where(yy > surf + 4, img * 0.08, img)
    fan = f.pixels > 0
    return _with(f, np.where(fan, img.clip(0, 255), 0))


_NATURAL = (
    "camera",
    "astronaut",
    "coins",
    "moon",
    "text",
    "brick",
    "grass",
    "gravel",
    "page",
    "coffee",
)


def natural_image(f: Frame, rng: np.random.Generator) -> Frame:
    import skimage.data

    name = _NATURAL[int(rng.integers(len(_NATURAL)))]
    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3].astype(np.uint8), cv2.COLOR_RGB2GRAY)
    img = cv2.resize(img.astype(np.uint8), (f.pixels.shape[1], f.pixels.shape[0]))
    return _with(f, img, source=f"skimage.data.{name}")


def natural_in_fan(f: Frame, rng: np.random.Generator) -> Frame:
    """A natural image shown through the phantom's own fan mask (geometry looks right)."""
    g = natural_image(f, rng)
    return _with(f, np.where(f.pixels > 0, g.pixels, 0), source=g.meta["source"])


CATEGORIES: dict[str, Callable[[Frame, np.random.Generator], Frame]] = {
    "blank": blank,
    "noise": noise,
    "no contact": no_contact,
    "colour Doppler": colour_doppler,
    "linear probe": linear_probe,
    "phased-array sector": phased_array,
    "shuffled patches": shuffled_patches,
    "heavy overlays": heavy_overlay,
    "bone, no nerve": bone_phantom,
    "natural image": natural_image,
    "natural image in fan": natural_in_fan,
}


def negatives(category: str, n: int, seed0: int = NEG_SEED_BASE) -> Iterator[Frame]:
    make = CATEGORIES[category]
    for i in range(n):
        rng = np.random.default_rng(seed0 + 1000 * (1 + list(CATEGORIES).index(category)) + i)
        yield make(phantom_frame(seed0 + i), rng)
