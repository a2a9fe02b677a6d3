"""Phantom configuration: what the simulated patient and probe look like.

Every anatomical size that is not given explicitly is drawn from the simulator's seed
inside the clinical range of its class (see docs/model.md), so one seed = one patient.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class PhantomConfig(BaseModel):
    """One simulated patient + probe setting.

    side: which buttock; the right side is the mirror image (lateral = image left).
    nerve: "normal" (AP 6-9 mm, honeycomb) or "swollen" (AP 10-14 mm, hypoechoic, fascicles lost).
    calcification: a calcified focus in the sacrospinous ligament near the ischial spine.
    gliding: "free" (~0.1-0.2 mm lateral glide per degree of internal rotation) or
        "restricted" (tethered by the calcified ligament: ~0.02-0.04 mm/deg).
    depth_mm: imaging depth of the curvilinear probe (6-10 cm).
    frequency_mhz: centre frequency (3-5 MHz); sets speckle size and attenuation.
    radius_mm / fan_half_angle_deg: curvilinear probe geometry.
    width_px / height_px: output frame size; pixels are square, spacing follows the geometry.
    nerve_ap_mm / nerve_width_mm / calcification_*_mm: explicit sizes (None = drawn from seed).
    gain_db / dynamic_range_db / tgc_error: display and receive settings.
    noise_db: electronic noise level relative to a mid-depth soft-tissue echo.
    jitter_mm / jitter_deg: amplitude of the hand-held probe's slow wander.
    gain_wander_db: amplitude of the sonographer's slow gain changes.

    Realism knobs (phantom revision 3; the defaults reproduce revision 2 exactly, and
    `realistic()` draws them wide for training and the realism benchmark column):
    cortex_echo / cortex_mm: bone cortex reflectivity (relative to soft tissue ~0.3-0.6)
        and thickness; real cortex is specular and can be as bright as a calcification.
    calcification_echo: calcification reflectivity (overlaps bright cortex when drawn).
    spine_hump_mm: width of a rounded ischial-spine top (0 = a pointed spine).
    medial_shelf_mm: 0 = the bone drops steeply medial to the spine; > 0 = a bony shelf
        runs medially this far under the ligament (a bright line next to the calcification).
    fascia_mm / fascia_echo: deep gluteus-maximus fascia line thickness and reflectivity;
    superficial_fascia_echo: a fascia line at the fat/muscle boundary (0 = none).
    attenuation_db_cm_mhz: soft-tissue attenuation (TGC still compensates the nominal
        0.6 dB/cm/MHz, so a different value leaves a depth-dependent residual).
    beam_width: factor on the lateral beam width (aperture / apodisation);
    focus_offset_mm: transmit focus relative to the nerve depth.
    """

    model_config = ConfigDict(extra="forbid")

    side: Literal["left", "right"] = "left"
    nerve: Literal["normal", "swollen"] = "normal"
    calcification: bool = False
    gliding: Literal["free", "restricted"] = "free"
    depth_mm: float = Field(default=80.0, ge=50.0, le=120.0)
    frequency_mhz: float = Field(default=3.5, ge=2.0, le=6.0)
    radius_mm: float = Field(default=50.0, ge=20.0, le=80.0)
    fan_half_angle_deg: float = Field(default=30.0, ge=15.0, le=40.0)
    width_px: int = Field(default=640, ge=64, le=2048)
    height_px: int = Field(default=480, ge=64, le=2048)
    nerve_ap_mm: float | None = Field(default=None, gt=2.0, lt=20.0)
    nerve_width_mm: float | None = Field(default=None, gt=4.0, lt=30.0)
    calcification_long_mm: float | None = Field(default=None, ge=3.0, le=20.0)
    calcification_thick_mm: float | None = Field(default=None, ge=1.0, le=6.0)
    gain_db: float = Field(default=0.0, ge=-20.0, le=20.0)
    dynamic_range_db: float = Field(default=60.0, ge=30.0, le=90.0)
    tgc_error: float = Field(default=0.0, ge=-0.5, le=0.5)
    noise_db: float = Field(default=-45.0, ge=-90.0, le=0.0)
    jitter_mm: float = Field(default=0.3, ge=0.0, le=3.0)
    jitter_deg: float = Field(default=0.5, ge=0.0, le=5.0)
    gain_wander_db: float = Field(default=1.5, ge=0.0, le=10.0)
    scatterers_per_mm2: float = Field(default=6.0, ge=1.0, le=30.0)
    cortex_echo: float = Field(default=4.0, ge=0.5, le=40.0)
    cortex_mm: float = Field(default=1.0, ge=0.2, le=4.0)
    calcification_echo: float = Field(default=16.0, ge=2.0, le=40.0)
    spine_hump_mm: float = Field(default=0.0, ge=0.0, le=20.0)
    medial_shelf_mm: float = Field(default=0.0, ge=0.0, le=10.0)
    fascia_mm: float = Field(default=1.2, ge=0.2, le=5.0)
    fascia_echo: float = Field(default=1.1, ge=0.2, le=6.0)
    superficial_fascia_echo: float = Field(default=0.0, ge=0.0, le=6.0)
    attenuation_db_cm_mhz: float = Field(default=0.6, ge=0.2, le=1.5)
    beam_width: float = Field(default=1.0, ge=0.5, le=4.0)
    focus_offset_mm: float = Field(default=0.0, ge=-40.0, le=40.0)

    @classmethod
    def randomized(cls, rng: np.random.Generator, **fixed: object) -> PhantomConfig:
        """A config with every acquisition setting drawn wide (training augmentation).

        Class labels (side, nerve, calcification, gliding) are drawn too unless fixed.
        """
        draw: dict[str, object] = {
            "side": rng.choice(["left", "right"]),
            "nerve": rng.choice(["normal", "swollen"]),
            "calcification": bool(rng.random() < 0.6),
            "gliding": rng.choice(["free", "restricted"]),
            "depth_mm": float(rng.uniform(60.0, 100.0)),
            "frequency_mhz": float(rng.uniform(3.0, 5.0)),
            "radius_mm": float(rng.uniform(40.0, 65.0)),
            "fan_half_angle_deg": float(rng.uniform(25.0, 35.0)),
            "gain_db": float(rng.uniform(-6.0, 6.0)),
            "dynamic_range_db": float(rng.uniform(45.0, 75.0)),
            "tgc_error": float(rng.uniform(-0.3, 0.3)),
            "noise_db": float(rng.uniform(-60.0, -30.0)),
            "jitter_mm": float(rng.uniform(0.0, 0.8)),
            "jitter_deg": float(rng.uniform(0.0, 1.5)),
            "gain_wander_db": float(rng.uniform(0.0, 3.0)),
            "scatterers_per_mm2": float(rng.uniform(4.0, 10.0)),
        }
        draw.update(fixed)
        return cls.model_validate(draw)

    def realistic(self, rng: np.random.Generator) -> PhantomConfig:
        """A copy with the revision-3 realism knobs drawn wide: bone cortex from moderately
        to calcification-bright (log-uniform, so "the brightest echo" is no longer a
        calcification cue), a pointed or rounded spine, thicker/brighter fasciae, patient
        attenuation 0.45-0.85 dB/cm/MHz under the nominal TGC, a wider or narrower beam
        focused above or below the nerve. Explicitly set fields are kept."""
        draw = {
            "cortex_echo": float(np.exp(rng.uniform(math.log(4.0), math.log(24.0)))),
            "cortex_mm": float(rng.uniform(0.6, 2.0)),
            "calcification_echo": float(np.exp(rng.uniform(math.log(8.0), math.log(24.0)))),
            "spine_hump_mm": float(rng.choice([0.0, rng.uniform(6.0, 16.0)])),
            "medial_shelf_mm": float(rng.choice([0.0, rng.uniform(0.8, 4.0)])),
            "fascia_mm": float(rng.uniform(0.8, 2.6)),
            "fascia_echo": float(rng.uniform(1.1, 3.0)),
            "superficial_fascia_echo": float(rng.choice([0.0, rng.uniform(0.8, 2.0)])),
            "attenuation_db_cm_mhz": float(rng.uniform(0.45, 0.85)),
            "beam_width": float(rng.uniform(0.8, 2.2)),
            "focus_offset_mm": float(rng.uniform(-25.0, 15.0)),
        }
        keep = self.model_fields_set & set(draw)
        return self.model_copy(update={k: v for k, v in draw.items() if k not in keep})
