"""The simulated deep gluteal region in a transverse (short-axis) posterior view.

Layers from the skin: subcutaneous fat, gluteus maximus with oblique fibro-fatty septa, the
fat plane of the deep gluteal space holding the sciatic nerve, and deep to it the ischium
(obturator internus / gemelli in between). Medial to the nerve the ischial spine rises to a
point where the sacrospinous ligament (a fibrillar hyperechoic band) leaves it medially; an
optional calcified focus sits in the ligament next to the spine. Distances follow the case
report: the nerve passes ~14 mm from the ischial spine (see docs/model.md).

Everything here lives in tissue coordinates (mm, x lateral on the left side, y depth);
`lateral_sign` mirrors the right side. The reference echogenicity map is rendered once
per patient at 0.1 mm; scatterers sample it at their rest position, so the tissue texture
moves with them and speckle is never redrawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_service.phantom.settings import PhantomConfig

MAP_RES_MM = 0.1
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel polygon drawing


def ellipse_points(
    cx: float, cy: float, a: float, b: float, angle_rad: float, n: int = 96
) -> np.ndarray:
    """(n, 2) boundary points of an ellipse with semi-axes a (along angle) and b."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    ca, sa = math.cos(angle_rad), math.sin(angle_rad)
    x = a * np.cos(t)
    y = b * np.sin(t)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def fill_poly(img: np.ndarray, pts_px: np.ndarray, value: float) -> None:
    cv2.fillPoly(
        img, [np.round(pts_px * (1 << _SHIFT)).astype(np.int32)], value, cv2.LINE_8, _SHIFT
    )


@dataclass
class Ellipse:
    cx: float
    cy: float
    a: float  # semi-axis along `angle` (mm)
    b: float  # semi-axis across (mm)
    angle_rad: float

    def points(self, n: int = 96) -> np.ndarray:
        return ellipse_points(self.cx, self.cy, self.a, self.b, self.angle_rad, n)

    def rho(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised elliptical radius (1 on the boundary)."""
        ca, sa = math.cos(self.angle_rad), math.sin(self.angle_rad)
        dx, dy = x - self.cx, y - self.cy
        u = (ca * dx + sa * dy) / self.a
        v = (-sa * dx + ca * dy) / self.b
        return np.hypot(u, v)


class Anatomy:
    """One patient's deep gluteal anatomy, drawn from `rng` within the clinical ranges."""

    def __init__(self, cfg: PhantomConfig, rng: np.random.Generator, extent_mm: tuple) -> None:
        self.cfg = cfg
        self.lat = 1.0 if cfg.side == "left" else -1.0
        self.x0, self.x1, self.y0, self.y1 = extent_mm
        d = cfg.depth_mm
        lat = self.lat
        self.fat_mm = float(rng.uniform(6.0, 15.0))
        swollen = cfg.nerve == "swollen"
        ap = cfg.nerve_ap_mm or float(rng.uniform(10.0, 14.0) if swollen else rng.uniform(6.0, 9.0))
        width = cfg.nerve_width_mm or ap * float(
            rng.uniform(1.5, 2.0) if not swollen else rng.uniform(1.3, 1.6)
        )
        ny = float(np.clip(d * rng.uniform(0.45, 0.6), 30.0, d - 25.0))
        nx = lat * float(rng.uniform(0.0, 10.0))
        # Flattened oval: the AP diameter is the minor axis (tilt kept small).
        self.nerve = Ellipse(nx, ny, width / 2.0, ap / 2.0, math.radians(rng.uniform(-8, 8)))
        self.gmax_bottom = ny - ap / 2.0 - float(rng.uniform(4.0, 8.0))
        # Ischial spine medial to the nerve; gap nerve edge -> spine ~10-16 mm.
        gap = float(rng.uniform(10.0, 16.0))
        self.spine = (nx - lat * (width / 2.0 + gap), ny + float(rng.uniform(0.0, 6.0)))
        self.lig_angle = math.radians(rng.uniform(5.0, 20.0))  # deeper going medially
        self.lig_thick = float(rng.uniform(3.0, 5.0))
        self.bone_under_nerve = ny + ap / 2.0 + float(rng.uniform(8.0, 16.0))
        self.calc: Ellipse | None = None
        if cfg.calcification:
            length = cfg.calcification_long_mm or float(rng.uniform(5.0, 15.0))
            thick = cfg.calcification_thick_mm or float(rng.uniform(2.0, 4.0))
            off = float(rng.uniform(1.5, 5.0)) + length / 2.0
            ux, uy = self.lig_dir
            sx, sy = self.spine
            self.calc = Ellipse(
                sx + ux * off,
                sy + uy * off + self.lig_thick / 2.0,
                length / 2.0,
                thick / 2.0,
                math.atan2(uy, ux),
            )
        self.bone = self._bone_polygon()
        self.echo_map = self._render_echo(rng)

    # -- shapes ---------------------------------------------------------------------------
    @property
    def lig_dir(self) -> tuple[float, float]:
        """Unit vector along the ligament, from the spine medially (and deeper)."""
        return (-self.lat * math.cos(self.lig_angle), math.sin(self.lig_angle))

    def _bone_polygon(self) -> np.ndarray:
        """Ischium cortex: from the lateral edge under the nerve up to the spine tip, then
        steeply down medially under the ligament; closed far below the image."""
        sx, sy = self.spine
        lat = self.lat
        far_lat = self.x1 + 10.0 if lat > 0 else self.x0 - 10.0
        far_med = self.x0 - 10.0 if lat > 0 else self.x1 + 10.0
        bn = self.bone_under_nerve
        nx = self.nerve.cx
        bottom = self.y1 + 20.0
        hump = self.cfg.spine_hump_mm
        if hump > 0.0:
            # Rounded spine (a broad convex bony hump): a parabolic top over `hump` mm
            # laterally, then a shorter rounded medial shoulder before the steep drop.
            u = np.linspace(1.0, 0.0, 9)
            top = [(sx + lat * hump / 2.0 * v, sy + 3.0 * v * v) for v in u]
            med = [(sx - lat * hump / 8.0, sy + 0.6), (sx - lat * hump / 4.0, sy + 2.5)]
            tip = [*top, *med]
        else:
            tip = [(sx + lat * 3.0, sy + 3.0), (sx + lat * 0.8, sy + 0.4), (sx, sy)]
            tip.append((sx - lat * 1.5, sy + 2.5))
        gap = self.cfg.medial_shelf_mm
        if gap > 0.0:
            # A bony shelf medial to the spine running just under the ligament: a long
            # bright cortical line with a shadow right next to where calcifications sit.
            ux, uy = self.lig_dir
            nxv, nyv = -uy, ux
            if nyv < 0:
                nxv, nyv = -nxv, -nyv
            if self.calc is not None:  # keep the calcification in soft tissue above it
                gap = max(gap, self.calc.b - self.lig_thick / 2.0 + 0.8)
            off = self.lig_thick + gap
            medial = [
                (
                    sx + ux * u + nxv * off * min(1.0, u / 3.0),
                    sy + uy * u + nyv * off * min(1.0, u / 3.0),
                )
                for u in (2.0, 3.0, 8.0, 20.0, 50.0, 120.0)
            ]
        else:
            medial = [(sx - lat * 3.0, sy + 14.0), (sx - lat * 5.0, sy + 40.0)]
        pts = [
            (far_lat, bn + 6.0),
            (nx + lat * 8.0, bn + 1.0),
            (nx, bn),
            (nx - lat * (self.nerve.a + 2.0), bn - 1.0),
            *tip,
            *medial,
            (far_med, bottom),
            (far_lat, bottom),
        ]
        return np.asarray(pts, dtype=float)

    def ligament_polygon(self) -> np.ndarray:
        sx, sy = self.spine
        ux, uy = self.lig_dir
        nxv, nyv = -uy, ux  # normal
        if nyv < 0:
            nxv, nyv = -nxv, -nyv
        length = 120.0
        t = self.lig_thick
        return np.asarray(
            [
                (sx - ux * 1.0, sy - uy * 1.0),
                (sx + ux * length, sy + uy * length),
                (sx + ux * length + nxv * t, sy + uy * length + nyv * t),
                (sx + nxv * t, sy + nyv * t),
            ]
        )

    # -- reference echogenicity -----------------------------------------------------------
    def _to_map(self, pts: np.ndarray) -> np.ndarray:
        return np.stack([(pts[:, 0] - self.x0) / MAP_RES_MM, (pts[:, 1] - self.y0) / MAP_RES_MM], 1)

    def _render_echo(self, rng: np.random.Generator) -> np.ndarray:
        """Scattering amplitude (std of the scatterer strength) over the tissue extent."""
        cfg = self.cfg
        w = round((self.x1 - self.x0) / MAP_RES_MM)
        h = round((self.y1 - self.y0) / MAP_RES_MM)
        m = np.full((h, w), 0.6, np.float32)  # deep fat plane / connective tissue
        ys = self.y0 + (np.arange(h) + 0.5) * MAP_RES_MM
        xs = self.x0 + (np.arange(w) + 0.5) * MAP_RES_MM
        # subcutaneous fat (hypoechoic with thin bright strands), wavy boundary
        wave = self.fat_mm + 1.0 * np.sin(xs / 9.0 + rng.uniform(0, 6))
        m[ys[:, None] < wave[None, :]] = 0.35
        # gluteus maximus: hypoechoic muscle with oblique bright fibro-fatty septa
        gwave = self.gmax_bottom + 1.2 * np.sin(xs / 13.0 + rng.uniform(0, 6))
        muscle = (ys[:, None] >= wave[None, :]) & (ys[:, None] < gwave[None, :])
        m[muscle] = 0.3
        sept = np.zeros_like(m)
        ang = math.radians(rng.uniform(10.0, 30.0)) * self.lat
        spacing = rng.uniform(5.0, 9.0)
        for k in np.arange(self.x0 - 60.0, self.x1 + 60.0, spacing):
            x0 = k + rng.normal(0, 1.0)
            p0 = np.array([[x0, self.y0], [x0 + math.tan(ang) * (self.y1 - self.y0), self.y1]])
            q = np.round(self._to_map(p0) * (1 << _SHIFT)).astype(np.int32)
            th = max(1, round(rng.uniform(0.3, 0.7) / MAP_RES_MM))
            cv2.line(
                sept,
                tuple(q[0]),
                tuple(q[1]),
                float(rng.uniform(0.8, 1.4)),
                th,
                cv2.LINE_AA,
                _SHIFT,
            )
        m[muscle] = np.maximum(m[muscle], sept[muscle])
        if cfg.superficial_fascia_echo > 0:
            # superficial fascia on the muscle at the fat boundary (thinner than the deep one)
            sband = np.abs(ys[:, None] - wave[None, :]) < 0.3 * cfg.fascia_mm
            m[sband] = cfg.superficial_fascia_echo
        # fascial line at the deep surface of gluteus maximus
        band = np.abs(ys[:, None] - gwave[None, :]) < 0.5 * cfg.fascia_mm
        m[band] = cfg.fascia_echo
        # obturator internus / gemelli between nerve and ischium: muscle texture
        deep = np.broadcast_to(ys[:, None] > (self.nerve.cy + self.nerve.b + 1.5), m.shape)
        m[deep] = np.where(sept[deep] > 0, 0.8, 0.32)
        # sacrospinous ligament: fibrillar hyperechoic band (parallel bright fibrils)
        lig = np.zeros_like(m)
        fill_poly(lig, self._to_map(self.ligament_polygon()), 1.0)
        ux, uy = self.lig_dir
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        across = (xx - self.spine[0]) * (-uy) + (yy - self.spine[1]) * ux
        fibril = 1.3 + 0.6 * np.cos(2 * np.pi * across / 0.7)
        m = np.where(lig > 0, fibril.astype(np.float32), m)
        # ischium: bright cortex ~1 mm, weak interior (shadowed anyway by attenuation)
        bone = np.zeros_like(m)
        bpts = self._to_map(self.bone)
        fill_poly(bone, bpts, 1.0)
        cortex = np.zeros_like(m)
        # the outline is drawn centred on the surface and kept inside the bone: ~half of it
        th = max(2, round(cfg.cortex_mm / MAP_RES_MM))
        cv2.polylines(
            cortex, [np.round(bpts * 16).astype(np.int32)], True, 1.0, th, cv2.LINE_8, _SHIFT
        )
        m = np.where(bone > 0, 0.4, m)
        m = np.where((cortex > 0) & (bone > 0), np.float32(cfg.cortex_echo), m)
        # sciatic nerve: hyperechoic epineurium with hypoechoic fascicles (honeycomb);
        # swollen: diffusely hypoechoic and the fascicular pattern is lost.
        nerve = np.zeros_like(m)
        fill_poly(nerve, self._to_map(self.nerve.points()), 1.0)
        swollen = cfg.nerve == "swollen"
        m = np.where(nerve > 0, np.float32(0.22 if swollen else 2.6), m)
        fasc = np.zeros_like(m)
        e = self.nerve
        placed: list[tuple[float, float, float]] = []
        for _ in range(400):
            r = float(rng.uniform(0.7, 1.3)) * (1.1 if swollen else 1.0)
            u, v = rng.uniform(-1, 1, 2)
            if u * u + v * v > 1:
                continue
            px = (
                e.cx
                + (e.a - r - 0.3) * u * math.cos(e.angle_rad)
                - (e.b - r - 0.3) * v * math.sin(e.angle_rad)
            )
            py = (
                e.cy
                + (e.a - r - 0.3) * u * math.sin(e.angle_rad)
                + (e.b - r - 0.3) * v * math.cos(e.angle_rad)
            )
            if any((px - qx) ** 2 + (py - qy) ** 2 < (r + qr + 0.25) ** 2 for qx, qy, qr in placed):
                continue
            placed.append((px, py, r))
            c = self._to_map(np.array([[px, py]]))[0]
            cv2.circle(
                fasc,
                (round(c[0] * 16), round(c[1] * 16)),
                round(r / MAP_RES_MM * 16),
                1.0,
                -1,
                cv2.LINE_8,
                _SHIFT,
            )
        m = np.where(fasc > 0, np.float32(0.17 if swollen else 0.1), m)
        # epineurium rim: bright outline
        rim = np.zeros_like(m)
        cv2.polylines(
            rim,
            [np.round(self._to_map(e.points()) * 16).astype(np.int32)],
            True,
            1.0,
            6,
            cv2.LINE_8,
            _SHIFT,
        )
        m = np.where(rim > 0, np.float32(1.5 if swollen else 3.0), m)
        if self.calc is not None:
            calc = np.zeros_like(m)
            fill_poly(calc, self._to_map(self.calc.points()), 1.0)
            # strongly hyperechoic: by default ~+14 dB over the epineurium and bone cortex
            # (realistic() draws cortex and calcification so that they overlap)
            m = np.where(calc > 0, np.float32(cfg.calcification_echo), m)
        # tissue heterogeneity: smooth +-20 % modulation, so no two patients look alike
        het = cv2.GaussianBlur(
            rng.normal(0, 1, (h // 10 + 1, w // 10 + 1)).astype(np.float32), (0, 0), 2.0
        )
        het = cv2.resize(het, (w, h), interpolation=cv2.INTER_LINEAR)
        m *= np.exp(0.2 * het / max(float(het.std()), 1e-6)).astype(np.float32)
        return m

    def echo_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        h, w = self.echo_map.shape
        i = np.clip(((y - self.y0) / MAP_RES_MM).astype(np.int64), 0, h - 1)
        j = np.clip(((x - self.x0) / MAP_RES_MM).astype(np.int64), 0, w - 1)
        return self.echo_map[i, j]
