"""Synthetic ultrasound images that are NOT a short-axis view of the deep gluteal space, for
training and calibrating the view classifier (models/view_train.py).

Each image is drawn at the detector's model input size (the B-mode region, 128 x 192, values
in [0, 1]) by a small renderer of its own, independent of the phantom: an echogenicity map of
some other anatomy, a speckle field (complex Gaussian scatterers blurred by an anisotropic
point-spread function, envelope-detected), depth attenuation with an imperfect TGC, log
compression with a random dynamic range, then a probe footprint (curvilinear, phased-array
sector or linear rectangle). The same renderer re-speckles phantom frames on the positive
side (`respeckle`), so the speckle texture itself does not tell the two classes apart.

Categories: cardiac (phased-array sector, chambers, valves), fetal skull, fetal abdomen,
liver (+ vessels, diaphragm), kidney, gallbladder, bladder, vessels / thyroid (linear),
lung (pleura, A-lines, B-lines), muscle layers without bone, bone without the gluteal
layers, gel only / lifted probe, and non-ultrasound screens (text, gradients, shapes).
No real image is used; the pydicom / pydicom-data files and benchmarks/foreign are the test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

H, W = 128, 192


def _blur(img: np.ndarray, sy: float, sx: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=max(sx, 0.1), sigmaY=max(sy, 0.1))


def speckle(rng: np.random.Generator, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """Fully developed speckle (Rayleigh envelope of blurred complex scatterers), mean ~1,
    with a random resolution cell (axial and lateral PSF widths drawn independently)."""
    sy, sx = rng.uniform(0.5, 1.8), rng.uniform(0.7, 3.0)
    re = _blur(rng.standard_normal(shape).astype(np.float32), sy, sx)
    im = _blur(rng.standard_normal(shape).astype(np.float32), sy, sx)
    env = np.sqrt(re**2 + im**2)
    return env / max(float(env.mean()), 1e-6)


def render(echo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Echogenicity map (0..~3, 1 = soft tissue) -> B-mode image in [0, 1] (before the
    probe footprint)."""
    h = echo.shape[0]
    env = echo * speckle(rng, echo.shape)
    depth = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    # Attenuation not fully compensated by the TGC (+-), plus a few TGC slider bumps.
    env = env * np.exp(-rng.uniform(-0.6, 1.2) * depth)
    knots = rng.uniform(-0.25, 0.25, 6)
    env = env * np.exp(np.interp(depth[:, 0], np.linspace(0, 1, 6), knots))[:, None]
    env = env + rng.uniform(0.0, 0.03) * np.abs(rng.standard_normal(env.shape))
    dr = rng.uniform(35, 70)  # dynamic range, dB
    db = 20 * np.log10(np.maximum(env, 1e-4) / 10 ** rng.uniform(0.8, 1.9))
    return np.clip(1 + db / dr, 0, 1).astype(np.float32)


# -- probe footprints ----------------------------------------------------------------------
def fan_mask(rng: np.random.Generator, kind: str) -> np.ndarray:
    """The probe footprint in the ROI: linear (rectangle or steered trapezoid), phased-array
    sector (point apex) or curvilinear (apex above the image, inner radius drawn)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    if kind == "linear":
        m = np.ones((H, W), bool)
        if rng.random() < 0.5:  # trapezoid (steered linear)
            m &= np.abs(xx - W / 2) < W / 2 - (1 - yy / H) * rng.uniform(0, 25)
        return m
    if kind == "phased":
        half = math.radians(rng.uniform(30, 45))
        ax, ay, r_in = W / 2, -2.0, 0.0
    else:  # curvilinear
        half = math.radians(rng.uniform(25, 40))
        r_in = rng.uniform(20, 120)
        ax, ay = W / 2, -r_in * math.cos(half)
    r = np.hypot(xx - ax, yy - ay)
    th = np.arctan2(xx - ax, yy - ay)
    r_out = H - ay
    return (np.abs(th) < half) & (r >= r_in) & (r <= r_out)


def footprint(img: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    m = fan_mask(rng, kind)
    return np.where(m, img, 0).astype(np.float32)


# -- drawing helpers -------------------------------------------------------------------------
def _grid() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    return yy, xx


def _ellipse(cy: float, cx: float, ry: float, rx: float, ang: float = 0.0) -> np.ndarray:
    yy, xx = _grid()
    c, s = math.cos(ang), math.sin(ang)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2


def _tissue(rng: np.random.Generator, base: float = 1.0) -> np.ndarray:
    """Soft tissue with smooth echogenicity variation."""
    low = rng.uniform(0.7, 1.3, (6, 8)).astype(np.float32)
    return base * cv2.resize(low, (W, H), interpolation=cv2.INTER_CUBIC).clip(0.3, 2)


def _shadow_below(echo: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
    """Acoustic shadow (or enhancement, strength < 0) beneath a structure, column-wise."""
    below = np.cumsum(mask, axis=0) > 0
    below &= ~mask
    return echo * np.where(below, max(1 - strength, 0.02) if strength > 0 else 1 - strength, 1)


def _skin(echo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = int(rng.uniform(2, 10))
    echo[:d] *= rng.uniform(1.2, 2.0)
    return echo


# -- anatomy -----------------------------------------------------------------------------------
def cardiac(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    echo = _tissue(rng, rng.uniform(0.6, 1.0))
    n = int(rng.integers(2, 5))
    for k in range(n):
        cy = rng.uniform(0.3, 0.8) * H
        cx = (0.25 + 0.5 * (k % 2) + rng.uniform(-0.1, 0.1)) * W
        ry, rx = rng.uniform(0.12, 0.3) * H, rng.uniform(0.1, 0.2) * W
        e = _ellipse(cy, cx, ry, rx, rng.uniform(-0.6, 0.6))
        echo = np.where((e > 1) & (e < 1.35), echo * rng.uniform(1.3, 2.0), echo)  # wall
        echo = np.where(e <= 1, rng.uniform(0.02, 0.1), echo)  # blood
        if rng.random() < 0.8:  # valve leaflets: thin bright lines across the chamber edge
            for _ in range(2):
                x0 = cx + rng.uniform(-rx, rx) * 0.5
                y0 = cy + ry * rng.choice([-1, 1]) * 0.8
                ang = rng.uniform(0, math.pi)
                p1 = (int(x0), int(y0))
                p2 = (int(x0 + 20 * math.cos(ang)), int(y0 + 20 * math.sin(ang)))
                cv2.line(echo, p1, p2, float(rng.uniform(2, 3)), int(rng.integers(1, 3)))
    # pericardium: a bright deep curve
    yy, xx = _grid()
    curve = H * rng.uniform(0.8, 0.95) - 0.002 * (xx - W / 2) ** 2
    echo = np.where(np.abs(yy - curve) < 2.5, 2.5, echo)
    return echo, "phased" if rng.random() < 0.8 else "curvilinear"


def fetal_skull(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    echo = _tissue(rng, rng.uniform(0.5, 0.9))
    cy, cx = rng.uniform(0.4, 0.65) * H, rng.uniform(0.35, 0.65) * W
    ry, rx = rng.uniform(0.22, 0.38) * H, rng.uniform(0.22, 0.4) * W
    ang = rng.uniform(-0.5, 0.5)
    e = _ellipse(cy, cx, ry, rx, ang)
    fluid = _ellipse(cy, cx, ry * 1.3, rx * 1.25, ang) <= 1
    echo = np.where(fluid & (e > 1.2), 0.05, echo)  # amniotic fluid around the head
    brain = e <= 0.85
    echo = np.where(brain, rng.uniform(0.2, 0.5), echo)
    echo = np.where((e > 0.85) & (e <= 1.0), rng.uniform(2.2, 3.0), echo)  # skull
    # midline echo and a cavum / ventricles
    p = rng.uniform(0.6, 0.9)
    dx, dy = math.cos(ang) * rx * p, math.sin(ang) * rx * p
    cv2.line(echo, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1.6, 1)
    echo = np.where(_ellipse(cy, cx + rx * 0.2, ry * 0.12, rx * 0.1, ang) <= 1, 0.05, echo)
    echo = _shadow_below(echo, (e > 0.85) & (e <= 1.0) & (np.arange(H)[:, None] > cy), 0.4)
    return echo, "curvilinear"


def fetal_abdomen(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    echo = _tissue(rng, rng.uniform(0.5, 0.9))
    cy, cx = rng.uniform(0.45, 0.65) * H, rng.uniform(0.35, 0.65) * W
    r = rng.uniform(0.25, 0.38) * H
    e = _ellipse(cy, cx, r, r * rng.uniform(1.0, 1.3))
    echo = np.where(_ellipse(cy, cx, r * 1.35, r * 1.6) <= 1, np.where(e <= 1, echo, 0.05), echo)
    echo = np.where((e > 0.93) & (e <= 1), 1.8, echo)  # skin line of the fetus
    echo = np.where(_ellipse(cy - r * 0.2, cx - r * 0.3, r * 0.25, r * 0.3) <= 1, 0.04, echo)
    for k in range(3):  # spine ossification centres
        sy, sx = cy + r * 0.7, cx + (k - 1) * r * 0.18
        echo = np.where(_ellipse(sy, sx, 3, 3) <= 1, 2.8, echo)
    return echo, "curvilinear"


def liver(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    echo = _tissue(rng, rng.uniform(0.9, 1.2))
    echo = _skin(echo, rng)
    yy, xx = _grid()
    wall = rng.uniform(8, 25)
    echo = np.where(yy < wall, echo * rng.uniform(0.6, 0.9), echo)
    for _ in range(int(rng.integers(2, 7))):  # portal / hepatic vessels
        cy, cx = rng.uniform(0.25, 0.85) * H, rng.uniform(0.1, 0.9) * W
        ry = rng.uniform(3, 10)
        e = _ellipse(cy, cx, ry, ry * rng.uniform(1, 3), rng.uniform(0, math.pi))
        if rng.random() < 0.5:
            echo = np.where((e > 1) & (e < 1.5), 2.2, echo)
        echo = np.where(e <= 1, 0.04, echo)
    if rng.random() < 0.7:  # diaphragm: a bright deep curve with mirror artefact
        curve = H * rng.uniform(0.7, 0.95) - rng.uniform(0.001, 0.004) * (xx - W * 0.5) ** 2
        echo = np.where(np.abs(yy - curve) < 2.5, 3.0, echo)
    return echo, "curvilinear"


def kidney(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    echo, _ = liver(rng) if rng.random() < 0.5 else (_tissue(rng), "")
    cy, cx = rng.uniform(0.45, 0.7) * H, rng.uniform(0.35, 0.65) * W
    ry, rx = rng.uniform(0.18, 0.3) * H, rng.uniform(0.25, 0.4) * W
    ang = rng.uniform(-0.5, 0.5)
    e = _ellipse(cy, cx, ry, rx, ang)
    echo = np.where(e <= 1, rng.uniform(0.35, 0.7), echo)  # cortex
    echo = np.where((e > 1) & (e < 1.25), 2.0, echo)  # capsule / perirenal fat
    sinus = _ellipse(cy, cx, ry * 0.35, rx * 0.6, ang) <= 1
    echo = np.where(sinus, rng.uniform(1.8, 2.6), echo)
    for k in range(5):  # pyramids
        a = ang + (k - 2) * 0.5
        py, px = cy - math.cos(a) * ry * 0.6, cx + math.sin(a) * rx * 0.6
        echo = np.where(_ellipse(py, px, ry * 0.15, rx * 0.12, a) <= 1, 0.12, echo)
    return echo, "curvilinear"


def gallbladder(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    echo, _ = liver(rng)
    cy, cx = rng.uniform(0.35, 0.65) * H, rng.uniform(0.3, 0.7) * W
    ry, rx = rng.uniform(0.1, 0.2) * H, rng.uniform(0.18, 0.3) * W
    e = _ellipse(cy, cx, ry, rx, rng.uniform(-0.4, 0.4))
    echo = np.where((e > 1) & (e < 1.2), 1.8, echo)
    gb = e <= 1
    echo = _shadow_below(echo, gb, -rng.uniform(0.3, 0.8))  # posterior enhancement
    echo = np.where(gb, 0.03, echo)
    if rng.random() < 0.5:  # a gallstone with its shadow
        sy, sx = cy + ry * 0.6, cx + rng.uniform(-0.5, 0.5) * rx
        st = _ellipse(sy, sx, 3.5, 4.5) <= 1
        echo = _shadow_below(echo, st, 0.9)
        echo = np.where(st, 3.0, echo)
    return echo, "curvilinear"


def bladder(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    echo = _tissue(rng, rng.uniform(0.7, 1.1))
    echo = _skin(echo, rng)
    cy, cx = rng.uniform(0.35, 0.55) * H, rng.uniform(0.4, 0.6) * W
    ry, rx = rng.uniform(0.2, 0.35) * H, rng.uniform(0.25, 0.42) * W
    e = _ellipse(cy, cx, ry, rx) ** rng.uniform(0.6, 1.0)  # rounded square-ish
    b = e <= 1
    echo = _shadow_below(echo, b, -rng.uniform(0.5, 1.2))
    echo = np.where((e > 1) & (e < 1.1), 2.0, echo)
    echo = np.where(b, 0.03, echo)
    return echo, "curvilinear"


def linear_vessels(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Neck / limb vessels, thyroid: a linear-array view."""
    echo = _tissue(rng, rng.uniform(0.7, 1.1))
    echo = _skin(echo, rng)
    yy, xx = _grid()
    if rng.random() < 0.5:  # thyroid lobes + trachea
        cx = rng.uniform(0.4, 0.6) * W
        for side in (-1, 1):
            e = _ellipse(H * 0.45, cx + side * W * 0.25, H * 0.22, W * 0.18)
            echo = np.where(e <= 1, rng.uniform(1.3, 1.8), echo)
        tr = _ellipse(H * 0.45, cx, H * 0.18, W * 0.1)
        echo = np.where((tr > 0.85) & (tr <= 1) & (yy < H * 0.45), 2.8, echo)
        echo = np.where((tr <= 0.85) & (yy < H * 0.6), 0.05, echo)
        echo = _shadow_below(echo, (tr <= 1) & (yy < H * 0.45), 0.85)
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:  # cross-section
            cy, cx, r = rng.uniform(0.3, 0.75) * H, rng.uniform(0.15, 0.85) * W, rng.uniform(6, 20)
            e = _ellipse(cy, cx, r, r * rng.uniform(1, 1.4))
        else:  # long axis tube
            cy, r = rng.uniform(0.3, 0.75) * H, rng.uniform(5, 14)
            e = ((yy - cy - rng.uniform(-5, 5) * np.sin(xx / 40)) / r) ** 2
        echo = np.where((e > 1) & (e < 1.3), 2.2, echo)
        echo = np.where(e <= 1, 0.03, echo)
    return echo, "linear" if rng.random() < 0.85 else "curvilinear"


def lung(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    echo = _tissue(rng, rng.uniform(0.7, 1.0))
    yy, xx = _grid()
    pl = rng.uniform(0.15, 0.35) * H
    echo = np.where(np.abs(yy - pl) < 1.8, 3.0, echo)
    below = yy > pl + 2
    echo = np.where(below, rng.uniform(0.15, 0.4), echo)
    for k in range(2, 5):  # A-lines: reverberations of the pleura
        echo = np.where(np.abs(yy - k * pl) < 1.5, 3.0 * 0.6 ** (k - 1), echo)
    for _ in range(int(rng.integers(0, 4))):  # B-lines: vertical comet tails
        x0 = rng.uniform(0.1, 0.9) * W
        echo = np.where(below & (np.abs(xx - x0) < rng.uniform(2, 5)), 1.8, echo)
    if rng.random() < 0.6:  # ribs with shadows
        for x0 in (rng.uniform(0.05, 0.3) * W, rng.uniform(0.7, 0.95) * W):
            rib = (np.abs(xx - x0) < 14) & (np.abs(yy - pl + 4) < 3)
            echo = _shadow_below(echo, rib, 0.9)
            echo = np.where(rib, 3.0, echo)
    return echo, str(rng.choice(["linear", "curvilinear", "phased"]))


def muscle_only(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Layers of muscle with fasciae and no deep bone (thigh, calf, abdominal wall)."""
    echo = _tissue(rng, rng.uniform(0.6, 1.0))
    echo = _skin(echo, rng)
    yy, xx = _grid()
    y = rng.uniform(5, 20)
    while y < H:
        curve = y + rng.uniform(-8, 8) * np.sin(xx / rng.uniform(30, 90) + rng.uniform(0, 6))
        echo = np.where(np.abs(yy - curve) < rng.uniform(0.8, 2.0), rng.uniform(1.8, 2.8), echo)
        y += rng.uniform(15, 45)
    # fibre striation (oblique in long axis, dots in short axis)
    stri = np.sin((xx * math.cos(a := rng.uniform(-0.4, 0.4)) + yy * math.sin(a)) / 2.5)
    echo = echo * (1 + 0.3 * (stri > 0.8))
    return echo, str(rng.choice(["linear", "curvilinear"]))


def bone_only(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A bright bone surface with its shadow and plain soft tissue above (femoral head,
    tibia, skull, spine lamina), no gluteal muscle layers."""
    echo = _tissue(rng, rng.uniform(0.6, 1.0))
    yy, xx = _grid()
    depth = rng.uniform(0.2, 0.6) * H
    amp = rng.uniform(-40, 40)
    curve = depth + amp * ((xx - rng.uniform(0.3, 0.7) * W) / W) ** 2 * 4
    if rng.random() < 0.4:  # lamina steps
        curve = curve + rng.uniform(10, 25) * (np.sin(xx / rng.uniform(10, 25)) > 0)
    bone = np.abs(yy - curve) < rng.uniform(1.5, 3.5)
    echo = _shadow_below(echo, bone, 0.95)
    echo = np.where(bone, 3.0, echo)
    return echo, str(rng.choice(["linear", "curvilinear", "phased"]))


def gel_only(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Probe in air / on gel: reverberation bands near the face, then dark with noise."""
    yy, _ = _grid()
    period = rng.uniform(4, 14)
    echo = 0.02 + 2.5 * np.exp(-yy / rng.uniform(8, 40)) * (np.cos(2 * np.pi * yy / period) > 0.3)
    return echo.astype(np.float32), str(rng.choice(["linear", "curvilinear", "phased"]))


def screen(rng: np.random.Generator) -> np.ndarray:
    """Not ultrasound: a menu / report screen, gradients, shapes (already in [0, 1])."""
    img = np.zeros((H, W), np.float32)
    kind = rng.integers(3)
    if kind == 0:
        txt = np.full((H, W), int(rng.integers(0, 80)), np.uint8)
        for _ in range(int(rng.integers(4, 14))):
            cv2.putText(
                txt,
                "".join(rng.choice(list("ABCDEFGHKLMNPRSTUVXYZ0123456789 .:/-"), 14)),
                (int(rng.integers(0, 60)), int(rng.integers(10, H))),
                cv2.FONT_HERSHEY_SIMPLEX,
                float(rng.uniform(0.3, 0.6)),
                int(rng.integers(150, 256)),
                1,
            )
        img = txt.astype(np.float32) / 255.0
    elif kind == 1:
        yy, xx = _grid()
        a, b = rng.uniform(-1, 1, 2)
        img = (0.5 + 0.5 * np.sin(a * xx / 20 + b * yy / 20)).astype(np.float32)
    else:
        img[:] = rng.uniform(0, 0.5)
        for _ in range(int(rng.integers(3, 10))):
            p = (int(rng.integers(0, W)), int(rng.integers(0, H)))
            cv2.rectangle(
                img,
                p,
                (p[0] + int(rng.integers(10, 80)), p[1] + int(rng.integers(10, 60))),
                float(rng.uniform(0, 1)),
                -1,
            )
    return img


ANATOMY: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, str]]] = {
    "cardiac": cardiac,
    "fetal skull": fetal_skull,
    "fetal abdomen": fetal_abdomen,
    "liver": liver,
    "kidney": kidney,
    "gallbladder": gallbladder,
    "bladder": bladder,
    "vessels / thyroid (linear)": linear_vessels,
    "lung": lung,
    "muscle only": muscle_only,
    "bone only": bone_only,
    "gel only / lifted probe": gel_only,
}
CATEGORIES = (*ANATOMY, "non-ultrasound screen")


def negative(category: str, rng: np.random.Generator) -> np.ndarray:
    """One (H, W) float32 image in [0, 1] of the category."""
    if category == "non-ultrasound screen":
        return screen(rng)
    echo, probe = ANATOMY[category](rng)
    return footprint(render(echo.astype(np.float32), rng), rng, probe)


def negatives(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images cycling through the categories; (images (n, H, W), category index (n,))."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, H, W), np.float32)
    cat = np.empty(n, np.int64)
    for i in range(n):
        k = i % len(CATEGORIES)
        out[i] = negative(CATEGORIES[k], rng)
        cat[i] = k
    return out, cat


def respeckle(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phantom frame re-rendered with this module's speckle/PSF: its local mean echo
    (a smoothed copy) times a new speckle field, log-compressed again. Positives thus also
    come in the negatives' rendering, so speckle texture is no cue."""
    fan = x > 0.004
    s = rng.uniform(1.5, 3.0)
    mean = _blur(x.astype(np.float32), s, s)
    echo = np.exp((mean - 1.0) * rng.uniform(3.0, 6.0)) * 3.0  # undo a ~50 dB compression
    out = render(echo, rng)
    return np.where(fan, out, 0).astype(np.float32)
