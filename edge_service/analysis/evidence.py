"""Evidence gates: when a finding is `measured` and when it is `undetermined`, and why.

Every derived finding of the result carries `state` ("measured" / "undetermined"); an
undetermined one carries a machine-readable `reason` (the codes in `REASONS`, a contract
documented in docs/analysis.md) and a sentence for the report. The gates only ever take
a call away; they never make one up. Thresholds: `EvidenceSettings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MEASURED, UNDETERMINED = "measured", "undetermined"

# Reason code -> report sentence (str.format fields come from the gate's details).
REASONS: dict[str, str] = {
    "not_analysable": "The session is not analysable: {why}.",
    "too_few_valid_frames": (
        "Only {valid} of {total} frames show a deep-gluteal short-axis view the model is made "
        "for (at least {need} needed)."
    ),
    "too_few_nerve_frames": (
        "The nerve was found in only {found} usable frames (at least {need} needed), so its "
        "size is not reported."
    ),
    "calcification_ambiguous": (
        "A calcification was seen in {pct:.0f}% of {n} frames ({lo:.0f}-{hi:.0f}% at "
        "{level:.0f}% confidence), too close to half to say whether one is there."
    ),
    "no_clip_data": (
        "No clip data: hip angles unknown, so no manoeuvre could be identified and gliding "
        "against rotation was not assessed."
    ),
    "nerve_not_tracked": "The nerve was not detected reliably, so its gliding could not be tracked.",
    "clip_lost": (
        "The clip's angles stopped for {gap:.1f} s during the session (clip lost or unplugged), "
        "so the manoeuvres cannot be trusted."
    ),
    "clip_rebooted": (
        "The clip restarted during the session (its sample counter went back {n} time(s)), so "
        "the angles cannot be trusted."
    ),
    "angles_incomplete": (
        "Hip angles cover only {pct:.0f}% of the {what} (at least {need:.0f}% needed)."
    ),
    "no_manoeuvre": "No FAIR or seated piriformis manoeuvre was found in the hip angles.",
    "ir_range_too_small": (
        "The manoeuvres covered only {range:.0f}° of internal rotation (at least {need:.0f}° "
        "needed to judge gliding)."
    ),
    "tracking_quality_low": (
        "Tracking during the manoeuvres was too poor ({what}) to measure gliding."
    ),
    "angles_images_inconsistent": (
        "The hip angles do not match the nerve's movement in the images ({what}): angles and "
        "images may be out of step by more than {window:.1f} s or come from another session."
    ),
    "poor_fit": (
        "Nerve displacement does not follow internal rotation (r² {r2:.2f}, at least "
        "{need:.2f} needed)."
    ),
}


@dataclass
class Verdict:
    """The state of one finding; `reasons` lists every gate that failed, first one leads."""

    reasons: list[str] = field(default_factory=list)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fail(self, code: str, **details: Any) -> None:
        if code not in REASONS:
            raise KeyError(code)
        if code not in self.reasons:
            self.reasons.append(code)
            self.details[code] = details

    @property
    def state(self) -> str:
        return UNDETERMINED if self.reasons else MEASURED

    @property
    def reason(self) -> str | None:
        return self.reasons[0] if self.reasons else None

    @property
    def sentence(self) -> str | None:
        if not self.reasons:
            return None
        return sentence(self.reasons[0], self.details[self.reasons[0]])

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "reason_text": self.sentence}


def sentence(code: str, details: dict[str, Any]) -> str:
    try:
        return REASONS[code].format(**details)
    except (KeyError, ValueError, IndexError):
        return REASONS[code].split("{")[0].rstrip(" (:") + "."


@dataclass(frozen=True)
class AngleStream:
    """How well the hip angles cover the frames (per-frame angles, NaN = unknown)."""

    coverage: float  # fraction of all frames with angles
    longest_gap_s: float  # longest run without angles after the clip first delivered
    lost: bool  # a gap >= max_gap_s after the start (incl. the stream ending early)


def angle_stream(t: np.ndarray, valid: np.ndarray, max_gap_s: float) -> AngleStream:
    n = t.size
    if n == 0 or not valid.any():
        return AngleStream(0.0, 0.0, False)
    first = int(np.argmax(valid))
    longest = 0.0
    i = first
    while i < n:
        if valid[i]:
            i += 1
            continue
        a = i
        while i < n and not valid[i]:
            i += 1
        # From the last frame with angles to the next one with angles (or the last frame).
        end = t[i] if i < n else t[n - 1]
        longest = max(longest, float(end - t[a - 1]))
    return AngleStream(float(valid.mean()), longest, longest >= max_gap_s)


def seq_resets(seqs: list[int], times: list[float], t0: float, t1: float) -> int:
    """Times the clip's u32 sample counter went backwards (a reboot, not a wrap) in [t0, t1]."""
    n = 0
    for k in range(1, len(seqs)):
        if not (t0 <= times[k] <= t1):
            continue
        back = seqs[k - 1] - seqs[k]
        if 0 < back < 2**31:
            n += 1
    return n


def wilson(k: int, n: int, level: float) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n <= 0:
        return 0.0, 1.0
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, c - h), min(1.0, c + h)
