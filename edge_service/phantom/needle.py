"""A needle (and needle-like reflectors, and injectate boluses) in the deep-gluteal phantom.

Physics kept (case report 2.4: 23 G, 100 mm needle, in-plane lateral to medial, ~0.2 mL
aliquots whose spread is watched):
- The shaft is a specular reflector: each beam line that crosses it gets one echo whose
  strength falls with the insonation angle (Gaussian lobe around normal incidence, plus a
  diffuse floor from the shaft's surface roughness) and with the shaft's distance from the
  scan plane (Gaussian elevation beam): a steep needle, or one drifting out of plane, is
  partly or wholly invisible.
- Reverberation inside the metal tube gives a comet tail: echoes repeated behind the shaft
  at a spacing of ~ the tube's inner diameter, decaying geometrically.
- The bevel tip is a small bright point, less angle-dependent than the shaft.
- The advancing tip pushes tissue (a radial displacement of the scatterers around it), so a
  tip that cannot be seen still shows as a moving speckle patch (the "motion" cue).
- A bolus is a fluid sphere that grows with the injected volume: tissue around it is pushed
  out volume-conservingly, its inside is anechoic at first and turns echogenic as the
  microbubbles of the injectate spread (then slowly fades).

Tissue coordinates: mm, x lateral on the left side (mirrored by `lat` on the right), y depth
from the skin, as in anatomy.py. Everything is rendered through `SceneOverlay` hooks of
PhantomSimulator, so the probe wander and the display chain apply to the needle too.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from edge_service.phantom.simulator import PhantomSimulator

# Needle outer diameters (mm) by gauge; the comet-tail spacing follows the lumen (~ 0.6 OD).
GAUGE_OD_MM = {18: 1.27, 20: 0.91, 21: 0.82, 22: 0.72, 23: 0.64, 25: 0.51, 27: 0.41}
TIP_PUSH_MM = 0.35  # peak tissue displacement ahead of the tip
TIP_PUSH_SIGMA_MM = 1.6
BOLUS_ANECHOIC_S = 1.0  # fluid first (anechoic), then the injectate's microbubbles spread
BOLUS_ECHO_RISE_S = 2.0
BOLUS_ECHO_PEAK = 3.0  # hyperechoic spread (over the ligament's ~1.6)
BOLUS_ECHO_FADE_S = 40.0
BOLUS_SCATTER_PER_MM2 = 8.0


class NeedleConfig(BaseModel):
    """How one needle looks (drawn per session by `randomized`).

    gauge: outer diameter from GAUGE_OD_MM (shaft echo width and comet-tail spacing).
    brightness_db: specular shaft echo at normal incidence over a mid-depth tissue echo.
    specular_width_deg: sigma of the specular lobe (smaller = visibility falls faster
        with the insonation angle).
    diffuse: echo floor at any angle, as a fraction of the specular peak.
    tip_db: the bevel tip's echo relative to the specular peak.
    reverb: amplitude ratio of successive comet-tail echoes; reverb_count: how many.
    elevation_beam_mm: 1/e half-width of the elevation beam at the needle's depth.
    """

    model_config = ConfigDict(extra="forbid")

    gauge: int = Field(default=23)
    brightness_db: float = Field(default=30.0, ge=0.0, le=50.0)
    specular_width_deg: float = Field(default=14.0, ge=4.0, le=40.0)
    diffuse: float = Field(default=0.12, ge=0.0, le=1.0)
    tip_db: float = Field(default=-3.0, ge=-20.0, le=10.0)
    reverb: float = Field(default=0.45, ge=0.0, le=0.9)
    reverb_count: int = Field(default=4, ge=0, le=10)
    elevation_beam_mm: float = Field(default=1.5, ge=0.5, le=4.0)

    def model_post_init(self, _ctx: Any) -> None:
        if self.gauge not in GAUGE_OD_MM:
            raise ValueError(f"gauge must be one of {sorted(GAUGE_OD_MM)}")

    @property
    def od_mm(self) -> float:
        return GAUGE_OD_MM[self.gauge]


@dataclass(frozen=True)
class GeneratorRanges:
    """Parameter ranges of one generator configuration (training vs held-out test).

    The held-out configuration is disjoint from the training one in needle angle, gauge,
    specular lobe and probe frequency / speckle density, so the benchmark measures
    generalisation, not recall of the training distribution."""

    name: str
    angle_deg: tuple[float, float]
    gauges: tuple[int, ...]
    brightness_db: tuple[float, float]
    specular_width_deg: tuple[float, float]
    diffuse: tuple[float, float]
    elevation_beam_mm: tuple[float, float]
    drift_mm: tuple[float, float]  # out-of-plane offset of the tip (max over the pass)
    frequency_mhz: tuple[float, float]
    scatterers_per_mm2: tuple[float, float]
    gain_db: tuple[float, float]
    speed_mm_s: tuple[float, float]


TRAIN = GeneratorRanges(
    name="train",
    angle_deg=(20.0, 42.0),
    gauges=(21, 22, 25, 27),
    brightness_db=(18.0, 38.0),
    specular_width_deg=(8.0, 22.0),
    diffuse=(0.03, 0.3),
    elevation_beam_mm=(0.9, 2.2),
    drift_mm=(0.0, 3.5),
    frequency_mhz=(3.0, 4.4),
    scatterers_per_mm2=(4.0, 9.0),
    gain_db=(-6.0, 6.0),
    speed_mm_s=(1.5, 6.0),
)
HELD_OUT = GeneratorRanges(
    name="held-out",
    angle_deg=(42.0, 50.0),
    gauges=(23,),
    brightness_db=(20.0, 36.0),
    specular_width_deg=(22.0, 28.0),
    diffuse=(0.05, 0.25),
    elevation_beam_mm=(1.0, 2.0),
    drift_mm=(0.0, 3.0),
    frequency_mhz=(4.4, 5.0),
    scatterers_per_mm2=(9.0, 11.0),
    gain_db=(-5.0, 5.0),
    speed_mm_s=(2.0, 5.0),
)
GENERATORS = {"train": TRAIN, "held-out": HELD_OUT}


def draw_needle_config(rng: np.random.Generator, ranges: GeneratorRanges) -> NeedleConfig:
    u = rng.uniform
    return NeedleConfig(
        gauge=int(rng.choice(ranges.gauges)),
        brightness_db=float(u(*ranges.brightness_db)),
        specular_width_deg=float(u(*ranges.specular_width_deg)),
        diffuse=float(u(*ranges.diffuse)),
        tip_db=float(u(-8.0, 0.0)),
        reverb=float(u(0.2, 0.6)),
        reverb_count=int(rng.integers(2, 7)),
        elevation_beam_mm=float(u(*ranges.elevation_beam_mm)),
    )


@dataclass
class Keyframe:
    """The needle at time t: insertion depth along the shaft from the skin entry, the shaft
    angle from the skin (deg) and the out-of-plane offsets (mm) at the entry and at the tip."""

    t: float
    length_mm: float
    angle_deg: float
    elev_entry_mm: float = 0.0
    elev_tip_mm: float = 0.0


@dataclass
class Injection:
    t_start: float
    duration_s: float
    volume_ml: float
    # filled when the plan is bound to a simulator (tissue mm at the moment of injection)
    center_mm: tuple[float, float] | None = None


@dataclass
class NeedlePlan:
    """A whole needle procedure: fixed skin entry, keyframes (linear in between; before the
    first keyframe the needle is not in the patient), injections at the tip."""

    entry_mm: tuple[float, float]
    keyframes: list[Keyframe]
    injections: list[Injection] = field(default_factory=list)
    t_insert: float = 0.0  # before this the needle is absent

    def state(self, t: float) -> Keyframe | None:
        ks = self.keyframes
        if not ks or t < self.t_insert:
            return None
        if t <= ks[0].t:
            return ks[0]
        for a, b in itertools.pairwise(ks):
            if t <= b.t:
                f = (t - a.t) / max(b.t - a.t, 1e-9)
                return Keyframe(
                    t,
                    a.length_mm + f * (b.length_mm - a.length_mm),
                    a.angle_deg + f * (b.angle_deg - a.angle_deg),
                    a.elev_entry_mm + f * (b.elev_entry_mm - a.elev_entry_mm),
                    a.elev_tip_mm + f * (b.elev_tip_mm - a.elev_tip_mm),
                )
        return ks[-1]


def _unit(lat: float, angle_deg: float) -> tuple[float, float]:
    """Shaft direction: medially (-lat x) and deeper (+y) at angle from the skin."""
    a = math.radians(angle_deg)
    return -lat * math.cos(a), math.sin(a)


@dataclass
class LineReflector:
    """A static needle-like specular line (a fascia or a bone edge): a distractor.

    shadow: the line is a bone edge: beams crossing it lose `shadow_db` behind it."""

    p0_mm: tuple[float, float]
    p1_mm: tuple[float, float]
    brightness_db: float
    specular_width_deg: float = 16.0
    diffuse: float = 0.1
    shadow_db: float = 0.0
    kind: str = "fascia"


class NeedleScene:
    """The SceneOverlay of a needle procedure (+ optional distractor line) for one simulator."""

    def __init__(
        self,
        sim: PhantomSimulator,
        plan: NeedlePlan | None,
        config: NeedleConfig | None = None,
        reflector: LineReflector | None = None,
        seed: int = 0,
    ) -> None:
        self.sim = sim
        self.plan = plan
        self.cfg = config or NeedleConfig()
        self.reflector = reflector
        self.lat = sim.anatomy.lat
        rng = np.random.default_rng(seed + 7919)
        # Amplitude scale: relative to the mid-depth tissue echo of this simulator (the
        # scatterer strength std times the expected count in one polar cell's PSF).
        g = sim.geom
        line_mm = (g.radius_mm + sim.anatomy.nerve.cy) * g.dtheta
        cell = max(sim.config.scatterers_per_mm2 * g.dr_mm * line_mm, 1e-3)
        self._ref_amp = float(math.sqrt(cell)) * 0.6
        self._phase = rng.uniform(0, 2 * np.pi, 4096)
        self._bolus_pts = [
            (
                rng.uniform(0, 1, 2000),
                rng.uniform(0, 2 * np.pi, 2000),
                rng.normal(0, 1, 2000),
            )
            for _ in range(64)
        ]
        self._prev_tip: tuple[float, float] | None = None

    # -- geometry -------------------------------------------------------------------------
    def tip_mm(self, t: float) -> tuple[float, float] | None:
        st = self.plan.state(t) if self.plan else None
        if st is None or self.plan is None:
            return None
        ux, uy = _unit(self.lat, st.angle_deg)
        ex, ey = self.plan.entry_mm
        return ex + ux * st.length_mm, ey + uy * st.length_mm

    def _boluses(self, t: float) -> list[tuple[float, float, float, float, int]]:
        """(cx, cy, radius_mm, echogenicity, index) of every bolus started by t."""
        out: list[tuple[float, float, float, float, int]] = []
        if self.plan is None:
            return out
        for i, inj in enumerate(self.plan.injections):
            if t < inj.t_start:
                continue
            if inj.center_mm is None:
                tip = self.tip_mm(inj.t_start)
                if tip is None:
                    continue
                inj.center_mm = tip
            frac = min(1.0, (t - inj.t_start) / max(inj.duration_s, 1e-6))
            vol_mm3 = inj.volume_ml * 1000.0 * frac
            # in-plane radius of the equivalent sphere: V = 4/3 pi r^3
            r = (3.0 * vol_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0)
            age = t - inj.t_start
            rise = min(1.0, max(0.0, age - BOLUS_ANECHOIC_S) / BOLUS_ECHO_RISE_S)
            echo = 0.03 + BOLUS_ECHO_PEAK * rise * math.exp(
                -max(0.0, age - inj.duration_s) / BOLUS_ECHO_FADE_S
            )
            out.append((inj.center_mm[0], inj.center_mm[1], r, echo, i))
        return out

    # -- SceneOverlay hooks ---------------------------------------------------------------
    def modify_tissue(
        self, x: np.ndarray, y: np.ndarray, amp: np.ndarray, t: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tip = self.tip_mm(t)
        if tip is not None:
            # The tip pushes tissue ahead of it radially; it moves with the tip, so the
            # speckle around a moving tip changes between frames even when the metal is
            # out of the beam.
            dx, dy = x - np.float32(tip[0]), y - np.float32(tip[1])
            r = np.sqrt(dx * dx + dy * dy) + np.float32(1e-3)
            push = np.float32(TIP_PUSH_MM) * np.exp(-0.5 * (r / np.float32(TIP_PUSH_SIGMA_MM)) ** 2)
            x = x + push * dx / r
            y = y + push * dy / r
        extra_x, extra_y, extra_a = [], [], []
        for cx, cy, rad, echo, i in self._boluses(t):
            if rad <= 0.05:
                continue
            dx, dy = x - np.float32(cx), y - np.float32(cy)
            rho = np.sqrt(dx * dx + dy * dy) + np.float32(1e-3)
            # volume-conserving radial push (sphere): rho' ^3 = rho^3 + R^3
            scale = np.cbrt(rho**3 + np.float32(rad**3)) / rho
            x = np.float32(cx) + dx * scale
            y = np.float32(cy) + dy * scale
            u, th, a = self._bolus_pts[i % len(self._bolus_pts)]
            n = min(u.size, int(math.pi * rad * rad * BOLUS_SCATTER_PER_MM2))
            rr = rad * np.sqrt(u[:n])
            extra_x.append((cx + rr * np.cos(th[:n])).astype(np.float32))
            extra_y.append((cy + rr * np.sin(th[:n])).astype(np.float32))
            extra_a.append((echo * a[:n]).astype(np.float32))
        if extra_x:
            x = np.concatenate([x, *extra_x])
            y = np.concatenate([y, *extra_y])
            amp = np.concatenate([amp, *extra_a])
        return x, y, amp

    def add_echoes(self, grid: np.ndarray, pose: tuple[float, float, float], t: float) -> None:
        """Specular line echoes (+ comet tail, tip point) deposited on the polar grid."""
        st = self.plan.state(t) if self.plan else None
        cfg = self.cfg
        if st is not None and self.plan is not None and st.length_mm > 0:
            ex, ey = self.plan.entry_mm
            tip = self.tip_mm(t)
            assert tip is not None
            amp = self._ref_amp * 10.0 ** (cfg.brightness_db / 20.0)
            self._line_echo(
                grid,
                pose,
                (ex, ey),
                tip,
                amp,
                cfg.specular_width_deg,
                cfg.diffuse,
                (st.elev_entry_mm, st.elev_tip_mm),
                cfg.elevation_beam_mm,
                cfg.reverb,
                cfg.reverb_count,
                0.6 * cfg.od_mm,
                cfg.od_mm,
            )
            vis_tip = math.exp(-((st.elev_tip_mm / cfg.elevation_beam_mm) ** 2))
            self._point_echo(grid, pose, tip, amp * 10.0 ** (cfg.tip_db / 20.0) * vis_tip)
        rf = self.reflector
        if rf is not None:
            amp = self._ref_amp * 10.0 ** (rf.brightness_db / 20.0)
            self._line_echo(
                grid,
                pose,
                rf.p0_mm,
                rf.p1_mm,
                amp,
                rf.specular_width_deg,
                rf.diffuse,
                (0.0, 0.0),
                2.0,
                0.0,
                0,
                0.5,
                1.5,
                shadow_db=rf.shadow_db,
            )

    # -- rendering helpers ----------------------------------------------------------------
    def _probe_mm(
        self, p: tuple[float, float], pose: tuple[float, float, float]
    ) -> tuple[float, float]:
        x, y = self.sim._to_probe(np.array([p[0]]), np.array([p[1]]), pose)
        return float(x[0]), float(y[0])

    def _line_echo(
        self,
        grid: np.ndarray,
        pose: tuple[float, float, float],
        p0: tuple[float, float],
        p1: tuple[float, float],
        amp: float,
        spec_deg: float,
        diffuse: float,
        elev: tuple[float, float],
        elev_beam: float,
        reverb: float,
        n_reverb: int,
        reverb_mm: float,
        thickness_mm: float,
        shadow_db: float = 0.0,
    ) -> None:
        g = self.sim.geom
        a = np.array(self._probe_mm(p0, pose))
        b = np.array(self._probe_mm(p1, pose))
        d = b - a
        length = float(np.hypot(*d))
        if length < 1e-6:
            return
        # Every beam line: ray from the virtual apex (0, -R) at angle theta.
        th = (np.arange(g.n_lines) + 0.5) * g.dtheta - g.half_angle_rad
        ux, uy = np.sin(th), np.cos(th)
        ox, oy = 0.0, -g.radius_mm
        # Solve o + r u = a + s d  ->  [u, -d] [r, s]^T = a - o
        det = ux * (-d[1]) - uy * (-d[0])
        ok = np.abs(det) > 1e-9
        rhs_x, rhs_y = a[0] - ox, a[1] - oy
        r = np.where(ok, (rhs_x * (-d[1]) - rhs_y * (-d[0])) / np.where(ok, det, 1), -1)
        s = np.where(ok, (ux * rhs_y - uy * rhs_x) / np.where(ok, det, 1), -1)
        hit = ok & (s >= 0) & (s <= 1) & (r > g.radius_mm)
        if not hit.any():
            return
        dn = d / length
        inc = np.degrees(np.arcsin(np.clip(np.abs(ux * dn[0] + uy * dn[1]), 0, 1)))
        spec = diffuse + (1 - diffuse) * np.exp(-0.5 * (inc / spec_deg) ** 2)
        e = elev[0] + s * (elev[1] - elev[0])
        vis = np.exp(-((e / elev_beam) ** 2))
        a_line = amp * spec * vis
        idx = np.nonzero(hit)[0]
        # The line's echo spans its thickness along the beam (steeper incidence: longer).
        cos_i = np.maximum(np.cos(np.radians(inc[idx])), 0.2)
        span = thickness_mm / cos_i
        for li, rr, aa, sp in zip(idx, r[idx], a_line[idx], span, strict=True):
            k = int(li)
            s0 = (rr - g.radius_mm) / g.dr_mm
            n_sp = max(1, round(sp / g.dr_mm))
            ph = self._phase[k % self._phase.size]
            for j in range(n_sp):
                self._deposit(grid, s0 + j, k, aa / math.sqrt(n_sp), ph + 0.7 * j)
            for m in range(1, n_reverb + 1):
                sm = s0 + m * reverb_mm / g.dr_mm
                self._deposit(grid, sm, k, aa * reverb**m, ph + 1.3 * m)
            if shadow_db > 0:
                lo = int(s0 + n_sp + 1)
                if lo < grid.shape[0]:
                    grid[lo:, k] *= np.float32(10.0 ** (-shadow_db / 20.0))

    def _point_echo(
        self, grid: np.ndarray, pose: tuple[float, float, float], p: tuple[float, float], amp: float
    ) -> None:
        g = self.sim.geom
        x, y = self._probe_mm(p, pose)
        s, line = g.mm_to_polar(np.array([x]), np.array([y]))
        s0, l0 = float(s[0]), float(line[0]) - 0.5
        li = math.floor(l0)
        f = l0 - li
        for k, w in ((li, 1 - f), (li + 1, f)):
            if 0 <= k < g.n_lines:
                self._deposit(grid, s0, k, amp * w, 0.3)

    @staticmethod
    def _deposit(grid: np.ndarray, s: float, line: int, amp: float, phase: float) -> None:
        i = math.floor(s)
        f = s - i
        for k, w in ((i, 1 - f), (i + 1, f)):
            if 0 <= k < grid.shape[0]:
                grid[k, line, 0] += np.float32(amp * w * math.cos(phase))
                grid[k, line, 1] += np.float32(amp * w * math.sin(phase))

    # -- truth ----------------------------------------------------------------------------
    def shaft_samples(
        self, pose: tuple[float, float, float], t: float, n: int = 400
    ) -> dict[str, np.ndarray] | None:
        """Points along the shaft (entry -> tip) in display px with what makes them visible:
        `inside` (in the fan), `vis` (elevation), `spec` (insonation), `seen` (echo strong
        enough to show: vis * spec > 0.25). None when no needle is in the patient."""
        st = self.plan.state(t) if self.plan else None
        tip = self.tip_mm(t)
        if st is None or tip is None or self.plan is None:
            return None
        g, cfg = self.sim.geom, self.cfg
        ex, ey = self.plan.entry_mm
        f = np.linspace(0.0, 1.0, n)
        xp, yp = self.sim._to_probe(ex + f * (tip[0] - ex), ey + f * (tip[1] - ey), pose)
        col, row = g.mm_to_px(xp, yp)
        rr = np.clip(np.round(row).astype(int), 0, g.height_px - 1)
        cc = np.clip(np.round(col).astype(int), 0, g.width_px - 1)
        inside = (
            (row >= 0) & (row < g.height_px) & (col >= 0) & (col < g.width_px) & g.fan_mask[rr, cc]
        )
        e = st.elev_entry_mm + f * (st.elev_tip_mm - st.elev_entry_mm)
        vis = np.exp(-((e / cfg.elevation_beam_mm) ** 2))
        # insonation: beam direction at each point (radial from the apex)
        bx, by = xp, yp + g.radius_mm
        bn = np.hypot(bx, by)
        dxn, dyn = (xp[-1] - xp[0]), (yp[-1] - yp[0])
        dl = math.hypot(dxn, dyn) or 1.0
        inc = np.degrees(np.arcsin(np.clip(np.abs((bx * dxn + by * dyn) / (bn * dl)), 0, 1)))
        sw = cfg.specular_width_deg
        spec = cfg.diffuse + (1 - cfg.diffuse) * np.exp(-0.5 * (inc / sw) ** 2)
        return {
            "row": row,
            "col": col,
            "inside": inside,
            "vis": vis,
            "spec": spec,
            "seen": inside & (vis * spec > 0.25),
        }

    def truth(self, pose: tuple[float, float, float], t: float) -> dict[str, Any]:
        """Per-frame needle truth: tip/shaft in display px (row, col) and frame mm
        (depth, lateral from the top-left), visible fraction, boluses so far."""
        g = self.sim.geom
        out: dict[str, Any] = {"needle": {"present": False}}
        st = self.plan.state(t) if self.plan else None
        tip = self.tip_mm(t)
        sh = self.shaft_samples(pose, t)
        if st is not None and tip is not None and sh is not None:
            row, col, inside, vis, seen = sh["row"], sh["col"], sh["inside"], sh["vis"], sh["seen"]
            dxn, dyn = col[-1] - col[0], row[-1] - row[0]
            dl = math.hypot(dxn, dyn) or 1.0
            tip_in = bool(inside[-1])
            sx_mm, sy_mm = g.spacing_mm, g.spacing_mm
            start_i = int(np.argmax(inside)) if inside.any() else None
            # signed as in NeedleResult: positive when the tip is right of the entry
            angle = math.copysign(
                math.degrees(math.atan2(row[-1] - row[0], abs(col[-1] - col[0]))),
                col[-1] - col[0],
            )
            prev = self._prev_tip
            speed = 0.0 if prev is None else math.hypot(tip[0] - prev[0], tip[1] - prev[1])
            self._prev_tip = tip
            out["needle"] = {
                "present": True,
                "tip_in_image": tip_in,
                "tip_px": [float(row[-1]), float(col[-1])],
                "tip_mm": [float(row[-1] * sy_mm), float(col[-1] * sx_mm)],
                "tip_tissue_mm": [tip[0], tip[1]],
                "entry_px": [float(row[0]), float(col[0])],
                "shaft_start_px": (
                    None if start_i is None else [float(row[start_i]), float(col[start_i])]
                ),
                "angle_deg": angle,
                "angle_from_skin_deg": st.angle_deg,
                "length_mm": st.length_mm,
                "elev_tip_mm": st.elev_tip_mm,
                "tip_visibility": float(vis[-1]),
                "visible_fraction": float(seen.sum() / max(int(inside.sum()), 1)),
                "in_plane_fraction": float(inside.mean()),
                "tip_step_mm": speed,
                "direction": [float(dyn / dl), float(dxn / dl)],  # (row, col) unit, to the tip
            }
        boluses = []
        for cx, cy, rad, echo, i in self._boluses(t):
            inj = self.plan.injections[i] if self.plan else None
            xp, yp = self.sim._to_probe(np.array([cx]), np.array([cy]), pose)
            col, row = g.mm_to_px(xp, yp)
            boluses.append(
                {
                    "index": i,
                    "t_start": inj.t_start if inj else None,
                    "center_px": [float(row[0]), float(col[0])],
                    "radius_mm": rad,
                    "echogenicity": echo,
                    "volume_ml": 0.0 if inj is None else inj.volume_ml,
                }
            )
        out["boluses"] = boluses
        return out
