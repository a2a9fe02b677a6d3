"""Point-spread functions of a focused, line-by-line convex-array scan, computed by pymust.

For each probe preset (centre frequency, transmit focus) a single point scatterer is
simulated with SIMUS (pymust's frequency-domain RF simulator: element directivity, the
probe's pulse and bandwidth, a focused 64-element transmit) at several depths and at
angular offsets from the scan line; the element RF is demodulated (rf2iq) and beamformed
with pymust's delay-and-sum matrix (dasmtx, receive f-number 1.7) along that scan line.
Stacking the beamformed lines over the offsets gives the 2-D baseband PSF h(dr, dtheta)
at that depth, on the simulator's polar grid. By linearity of SIMUS + DAS, an image of
many scatterers is the sum of their PSFs; `sim.py` evaluates that sum as a convolution
(depth-varying: the PSFs of the two nearest depths are blended).

The carrier is removed (h_bb = h * exp(-2j k0 dr)) so that the kernel is smooth on a
0.1 mm grid; each scatterer then deposits A * exp(-2j k0 r) and sub-wavelength motion
changes the speckle coherently, as in an RF simulation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

C_MM_PER_S = 1540e3
PSF_DEPTHS_MM = (20.0, 40.0, 60.0, 80.0, 100.0, 120.0)
HALF_R_MM = 2.4  # axial half-extent of the kernel
HALF_LINES = 28  # lateral half-extent (scan lines)


@dataclass(frozen=True)
class ProbePreset:
    """One probe setting. The array is pymust's C5-2v (128 elements, R = 49.57 mm)."""

    fc_mhz: float = 3.6
    focus_mm: float = 60.0
    tx_elements: int = 64
    fnumber_rx: float = 1.7
    sector_deg: float = 70.0
    n_lines: int = 320
    dr_mm: float = 0.1

    @property
    def dtheta_rad(self) -> float:
        return math.radians(self.sector_deg) / (self.n_lines - 1)

    @property
    def k0_per_mm(self) -> float:
        return 2.0 * math.pi * self.fc_mhz * 1e6 / C_MM_PER_S

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True) + repr(PSF_DEPTHS_MM)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _param(preset: ProbePreset):  # type: ignore[no-untyped-def]
    import pymust

    p = pymust.getparam("C5-2v")
    p.fc = preset.fc_mhz * 1e6
    p.fs = 4 * p.fc
    p.c = 1540.0
    return p


def radius_mm() -> float:
    import pymust

    return float(pymust.getparam("C5-2v").radius) * 1e3


def _one_depth(preset: ProbePreset, depth_mm: float) -> np.ndarray:
    """(n_r, 2*HALF_LINES+1) complex baseband PSF at `depth_mm` below the probe surface."""
    import pymust

    p = _param(preset)
    radius = p.radius
    # Focused transmit along the central line with a sub-aperture of tx_elements.
    zf = preset.focus_mm * 1e-3
    # Focus point in pymust coordinates (z measured from the array's apex chord).
    rf_ = radius + zf
    dels = np.asarray(pymust.txdelay(0.0, rf_ - radius, p), dtype=float).reshape(1, -1)
    n = p.Nelements
    off = (n - preset.tx_elements) // 2
    dels[0, :off] = np.nan
    dels[0, off + preset.tx_elements :] = np.nan
    p.TXdelay = dels  # txdelay() stored the full-aperture law; keep them equal
    p.fnumber = preset.fnumber_rx
    r_s = radius + depth_mm * 1e-3
    rr = r_s + np.arange(-HALF_R_MM, HALF_R_MM + 1e-9, preset.dr_mm) * 1e-3
    # Receive line along theta = 0 (x = r sin th, z = r cos th - R in pymust's frame).
    xs = np.zeros_like(rr)
    zs = rr - radius
    cols = []
    for j in range(HALF_LINES + 1):
        th = j * preset.dtheta_rad
        x = np.array([r_s * math.sin(th)])
        z = np.array([r_s * math.cos(th) - radius])
        rf, _ = pymust.simus(x, z, np.array([1.0]), dels, p)
        iq = pymust.rf2iq(rf, p)
        m = pymust.dasmtx(1j * np.array(iq.shape), xs, zs, p)  # delays: p.TXdelay
        line = m @ iq.flatten(order="F")
        cols.append(np.asarray(line).ravel())
    h = np.stack(cols, axis=1)  # (n_r, HALF_LINES + 1), offsets >= 0
    # Remove the carrier along r: the kernel becomes smooth (baseband) on the 0.1 mm grid.
    d = (rr - r_s) * 1e3
    h = h * np.exp(-2j * preset.k0_per_mm * d)[:, None]
    # Scatterer at +offset seen on the line = line at -offset seen from the scatterer.
    full = np.concatenate([h[:, :0:-1], h], axis=1)
    return full.astype(np.complex64)


def _centred(bank: np.ndarray) -> np.ndarray:
    """Shift each kernel so that its envelope peak sits at the kernel centre.

    SIMUS times echoes from the pulse's start, so the envelope peaks ~0.2-0.3 mm behind
    the scatterer; a scanner calibrates that offset away (otherwise the whole image sits
    ~1 px deeper than the anatomy). The shift is along r only, in whole 0.1 mm samples;
    the carrier phase of the baseband kernel is kept (a scatterer's own phase is
    exp(-2j k0 r) at deposit)."""
    out = np.empty_like(bank)
    for k, h in enumerate(bank):
        a = np.abs(h)
        r, _ = np.unravel_index(int(a.argmax()), a.shape)
        out[k] = np.roll(h, h.shape[0] // 2 - int(r), axis=0)
    return out


def psf_bank(preset: ProbePreset, cache_dir: Path) -> np.ndarray:
    """(n_depths, n_r, n_lat) complex64 PSFs at PSF_DEPTHS_MM, cached on disk by preset."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"psf-{preset.key()}.npy"
    if path.exists():
        return _centred(np.load(path))
    bank = []
    for d in PSF_DEPTHS_MM:
        h = _one_depth(preset, d)
        # Unit energy: the mean speckle brightness does not depend on the kernel; the
        # simulator applies attenuation, TGC and the focal gain (below) itself.
        bank.append(h / np.sqrt(np.sum(np.abs(h) ** 2)))
    arr = np.stack(bank).astype(np.complex64)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)
    log.info("psf bank %s computed (%s)", path.name, preset)
    return _centred(arr)
