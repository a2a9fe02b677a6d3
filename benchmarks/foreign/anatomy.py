"""The foreign simulator's own drawing of the deep gluteal space (short axis, posterior view).

Independent of edge_service/phantom: layers are depth curves z(x) drawn from low-order
random polynomials, the nerve is a harmonically perturbed oval (not an ellipse) with packed
fascicles, the ischial spine is a convex bony hump with a specular surface, the
sacrospinous ligament a fibrillar band running medially from it, and the calcification a
lens-shaped polygon inside the ligament next to the spine. Coordinates: x lateral in mm
(+x = image right), z depth in mm below the centre of the probe face.

Clinical numbers (design.md, case report 2.3): nerve 4-8 cm deep, AP ~8 mm normal vs
~12 mm swollen; calcification ~10 x 3 mm, hyperechoic with posterior shadow; the nerve
passes ~14 mm from the ischial spine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def polygon_moments(poly: np.ndarray) -> tuple[float, float, float, float, float]:
    """(area, cx, cz, major, minor) of a simple polygon (N, 2): the axes of the ellipse
    with the same second moments (full lengths, 4 * sqrt(eigenvalue)) - the definition
    the detector's moment-ellipse fit measures."""
    x, y = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cr = x * y1 - x1 * y
    a = 0.5 * cr.sum()
    cx = ((x + x1) * cr).sum() / (6 * a)
    cy = ((y + y1) * cr).sum() / (6 * a)
    sxx = ((x * x + x * x1 + x1 * x1) * cr).sum() / (12 * a) - cx * cx
    syy = ((y * y + y * y1 + y1 * y1) * cr).sum() / (12 * a) - cy * cy
    sxy = ((x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cr).sum() / (24 * a) - cx * cy
    ev = np.linalg.eigvalsh(np.array([[sxx, sxy], [sxy, syy]]))
    return abs(a), cx, cy, 4 * math.sqrt(max(ev[1], 0.0)), 4 * math.sqrt(max(ev[0], 0.0))


def inside(poly: np.ndarray, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon for arrays of points (vectorised over the points)."""
    out = np.zeros(x.shape, bool)
    px, pz = poly[:, 0], poly[:, 1]
    n = len(poly)
    for i in range(n):
        xa, za, xb, zb = px[i], pz[i], px[(i + 1) % n], pz[(i + 1) % n]
        if za == zb:
            continue
        cond = (za > z) != (zb > z)
        xc = xa + (z - za) * (xb - xa) / (zb - za)
        out ^= cond & (x < xc)
    return out


@dataclass
class Shape:
    poly: np.ndarray  # (N, 2) mm

    def contains(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        lo, hi = self.poly.min(0), self.poly.max(0)
        sel = (x >= lo[0]) & (x <= hi[0]) & (z >= lo[1]) & (z <= hi[1])
        out = np.zeros(x.shape, bool)
        if sel.any():
            out[sel] = inside(self.poly, x[sel], z[sel])
        return out

    def moved(self, dx: float, dz: float) -> Shape:
        return Shape(self.poly + np.array([dx, dz]))


def _curve(rng: np.random.Generator, z0: float, tilt: float, bend: float) -> np.ndarray:
    """Coefficients of z(x) = z0 + tilt * x + bend * x^2 (+ a small cubic)."""
    return np.array([z0, tilt, bend, rng.uniform(-2e-5, 2e-5)])


def _eval(c: np.ndarray, x: np.ndarray) -> np.ndarray:
    return c[0] + c[1] * x + c[2] * x * x + c[3] * x**3


class ForeignAnatomy:
    """One patient's deep gluteal space. `lat` = +1 when lateral is image right (left side)."""

    def __init__(
        self,
        rng: np.random.Generator,
        side: str,
        swollen: bool,
        calcified: bool,
        nerve_depth_mm: float,
    ) -> None:
        self.lat = 1.0 if side == "left" else -1.0
        self.swollen = swollen
        lat = self.lat
        self.skin = 1.6
        self.fat = _curve(rng, rng.uniform(9.0, 20.0), rng.uniform(-0.05, 0.05), 0.0)
        gmax_bot = nerve_depth_mm - rng.uniform(9.0, 14.0)
        self.gmax = _curve(rng, gmax_bot, rng.uniform(-0.08, 0.08), rng.uniform(-1e-3, 1e-3))
        self.fibre_angle = math.radians(rng.uniform(12.0, 30.0)) * lat
        self.fibre_period = rng.uniform(1.6, 2.6)
        # Nerve: AP (minor) and width (major) of the outline before perturbation.
        ap = rng.uniform(10.0, 13.0) if swollen else rng.uniform(6.5, 9.0)
        width = ap * rng.uniform(1.45, 1.9)
        tilt = math.radians(rng.uniform(-12.0, 12.0))
        phi = np.linspace(0, 2 * math.pi, 160, endpoint=False)
        harm = 1.0 + sum(
            rng.uniform(-0.035, 0.035) * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
            for k in (2, 3, 4, 5)
        )
        ex, ez = 0.5 * width * np.cos(phi) * harm, 0.5 * ap * np.sin(phi) * harm
        ncx = lat * rng.uniform(-6.0, 6.0)
        self.nerve = Shape(
            np.stack(
                [
                    ncx + ex * math.cos(tilt) - ez * math.sin(tilt),
                    nerve_depth_mm + ex * math.sin(tilt) + ez * math.cos(tilt),
                ],
                1,
            )
        )
        area, cx, cz, major, minor = polygon_moments(self.nerve.poly)
        shrink = np.stack([ex, ez], 1)
        norm = np.linalg.norm(shrink, axis=1, keepdims=True)
        shrink = shrink * (1 - 0.8 / np.maximum(norm, 1e-6))
        self.inner = Shape(
            np.stack(
                [
                    ncx + shrink[:, 0] * math.cos(tilt) - shrink[:, 1] * math.sin(tilt),
                    nerve_depth_mm + shrink[:, 0] * math.sin(tilt) + shrink[:, 1] * math.cos(tilt),
                ],
                1,
            )
        )
        self.nerve_truth = {"csa_mm2": area, "width_mm": major, "ap_mm": minor, "cx": cx, "cz": cz}
        # Fascicles: packed discs inside the outline (rejection sampling).
        fasc: list[tuple[float, float, float]] = []
        for _ in range(400):
            r = rng.uniform(0.55, 1.15)
            px = rng.uniform(cx - width / 2, cx + width / 2)
            pz = rng.uniform(cz - ap / 2, cz + ap / 2)
            if not self.nerve.contains(np.array([px]), np.array([pz]))[0]:
                continue
            if any(math.hypot(px - a, pz - b) < r + rr + 0.25 for a, b, rr in fasc):
                continue
            fasc.append((px, pz, r))
            if len(fasc) >= 30:
                break
        self.fascicles = np.array(fasc) if fasc else np.zeros((0, 3))
        # Ischial spine medial to the nerve: centre ~14 mm from the nerve (edge gap ~ 5-9 mm).
        gap = rng.uniform(12.0, 16.0)
        sx = cx - lat * (0.5 * width + gap * 0.55)
        sz = cz + rng.uniform(4.0, 9.0)
        self.spine = (sx, sz)
        t = np.linspace(-1, 1, 60)
        hump_w = rng.uniform(9.0, 14.0)
        top = np.stack([sx + lat * 0.5 * hump_w * t, sz + 2.5 * t**2], 1)
        x_end = sx - lat * 60.0
        bone = np.vstack(
            [top, [[sx + lat * 0.5 * hump_w, sz + 40.0], [x_end, sz + 40.0], [x_end, sz + 6.0]]]
        )
        self.bone = Shape(bone if lat > 0 else bone[::-1])
        # Ligament: a band from the spine's top running medially and slightly up.
        lig_t = rng.uniform(3.0, 4.5)
        run = np.linspace(0.0, 45.0, 40)
        rise = rng.uniform(0.05, 0.15)
        upper = np.stack([sx - lat * run, sz - 1.0 - rise * run - lig_t], 1)
        lower = np.stack([sx - lat * run, sz - 1.0 - rise * run], 1)[::-1]
        self.ligament = Shape(np.vstack([upper, lower]))
        self.lig_rise = rise
        self.lig_thick = lig_t
        self.calc: Shape | None = None
        self.calc_truth: dict[str, float] = {}
        if calcified:
            long_ax = rng.uniform(8.0, 12.0)
            thick = rng.uniform(2.5, 3.8)
            ccx = sx - lat * rng.uniform(0.35, 0.7) * long_ax
            ccz = sz - 1.0 - rise * abs(ccx - sx) - 0.5 * lig_t + rng.uniform(-0.4, 0.4)
            u = np.linspace(-1, 1, 50)
            half = 0.5 * thick * (1 - u**2) ** 0.6 * (1 + 0.08 * rng.uniform(-1, 1) * u)
            ang = -lat * math.atan(rise)
            px_ = 0.5 * long_ax * np.concatenate([u, u[::-1]])
            pz_ = np.concatenate([-half, half[::-1]])
            poly = np.stack(
                [
                    ccx + px_ * math.cos(ang) - pz_ * math.sin(ang),
                    ccz + px_ * math.sin(ang) + pz_ * math.cos(ang),
                ],
                1,
            )
            self.calc = Shape(poly)
            _, _, _, major, minor = polygon_moments(poly)
            self.calc_truth = {"long_axis_mm": major, "thickness_mm": minor}

    # -- echogenicity (amplitude scale of the scatterers) and speckle statistics -----------
    def echo(self, x: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Per-scatterer amplitude (tissue reflectivity times a K-like texture draw)."""
        amp = np.full(x.shape, 0.55)
        shape_k = np.full(x.shape, 2.0)  # gamma shape: small = spiky (septa), large = uniform
        fat_b = _eval(self.fat, x)
        gm_b = _eval(self.gmax, x)
        skin = z < self.skin
        amp[skin] = 1.6
        fat = (~skin) & (z < fat_b)
        amp[fat] = 0.35
        shape_k[fat] = 0.6
        musc = (z >= fat_b) & (z < gm_b)
        u = (x * math.sin(self.fibre_angle) + z * math.cos(self.fibre_angle)) / self.fibre_period
        stri = 0.5 + 0.5 * np.cos(2 * math.pi * u)
        amp[musc] = 0.45 + 0.9 * stri[musc] ** 6
        shape_k[musc] = 3.0
        fascia = np.abs(z - gm_b) < 0.6
        amp[fascia] = 1.7
        fascia_f = np.abs(z - fat_b) < 0.4
        amp[fascia_f] = 1.2
        deep = z >= gm_b + 0.6
        amp[deep] = 0.7  # perineural / deep gluteal fat: brighter than subcutaneous fat
        shape_k[deep] = 1.0
        # Ligament: fibrillar, bright.
        lig = self.ligament.contains(x, z)
        fib = 0.5 + 0.5 * np.cos(2 * math.pi * (z + self.lig_rise * x) / 0.7)
        amp[lig] = 1.1 + 0.6 * fib[lig]
        shape_k[lig] = 4.0
        # Nerve: bright epineurium, hypoechoic fascicles (normal) or diffusely dark (swollen).
        nv = self.nerve.contains(x, z)
        amp[nv] = 0.42 if self.swollen else 1.45
        shape_k[nv] = 2.0
        if len(self.fascicles):
            for fx, fz, fr in self.fascicles:
                d = np.hypot(x - fx, z - fz) < fr
                amp[d & nv] = 0.32 if self.swollen else 0.30
        # Epineurium: a bright rim ~0.8 mm thick just inside the outline.
        rim = nv & ~self.inner.contains(x, z)
        amp[rim] = 2.1 if not self.swollen else 1.6
        bone = self.bone.contains(x, z)
        amp[bone] = 0.2
        # Bone surface: a thin, very bright specular layer on top of the bone.
        surf = self.bone.contains(x, z + 0.7) & ~bone
        amp[surf] = 8.0
        shape_k[surf] = 8.0
        if self.calc is not None:
            c = self.calc.contains(x, z)
            amp[c] = 9.0
            shape_k[c] = 6.0
        tex = np.sqrt(rng.gamma(shape_k, 1.0 / shape_k))
        return amp * tex

    def absorbers(self) -> list[tuple[Shape, float]]:
        """Strong reflectors with their one-way loss per mm of path (dB/mm): shadows."""
        out = [(self.bone, 12.0)]
        if self.calc is not None:
            out.append((self.calc, 4.0))
        return out
