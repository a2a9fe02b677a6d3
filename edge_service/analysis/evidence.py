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

from edge_service.analysis.alignment import LagEstimate
from edge_service.analysis.gliding import Fit, ManoeuvreGlide
from edge_service.analysis.settings import EvidenceSettings

MEASURED, UNDETERMINED = "measured", "undetermined"

# Reason code -> report sentence (str.format fields come from the gate's details).
REASONS: dict[str, str] = {
    "not_analysable": "The session is not analysable: {why}.",
    "too_few_valid_frames": (
        "only {valid} of {total} frames are usable views (a deep-gluteal short-axis view the "
        "model is made for); at least {need} are needed."
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

    @property
    def clause(self) -> str:
        """The sentence as a clause to embed in another one (no capital, no full stop)."""
        text = self.sentence or ""
        return f"{text[:1].lower()}{text[1:]}".rstrip(".")

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "reason_text": self.sentence}


def sentence(code: str, details: dict[str, Any]) -> str:
    try:
        text = REASONS[code].format(**details)
    except (KeyError, ValueError, IndexError):
        text = REASONS[code].split("{")[0].rstrip(" (:") + "."
    return text[:1].upper() + text[1:]


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
    # A run of k frames without angles stands for k frame periods of missing data.
    dt = float(np.median(np.diff(t))) if n > 1 else 0.0
    longest = 0.0
    i = first
    while i < n:
        if valid[i]:
            i += 1
            continue
        a = i
        while i < n and not valid[i]:
            i += 1
        longest = max(longest, float(t[i - 1] - t[a]) + dt)
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


def gliding_gates(
    ev: EvidenceSettings,
    min_ir_range_deg: float,
    *,
    raw_ang: np.ndarray,
    lateral: np.ndarray,
    quality: np.ndarray,
    glides: list[ManoeuvreGlide],
    fit: Fit | None,
    lag: LagEstimate,
    lag_ok: bool,
    stream: AngleStream,
    resets: int,
    session_v: Verdict,
    have_angles: bool,
) -> tuple[Verdict, bool, bool]:
    """Every gate that can take the gliding call away, in order (the first failing one
    leads). Returns (verdict, basis_ok, still): basis_ok False when the excursion and
    slope numbers themselves mean nothing (no angles, clip lost, angles out of step, ...);
    still True when the nerve did not move while the hip rotated (restricted whatever
    the lag).
    """
    analysable = session_v.state == MEASURED
    # The gliding call and every gate that can take it away (first failing one leads).
    gv = Verdict()
    basis_ok = True  # False: the excursion/slope numbers themselves mean nothing
    if not analysable:
        gv.fail("not_analysable", why=session_v.clause)
        basis_ok = False
    if not np.isfinite(raw_ang).all(axis=1).any():
        gv.fail("no_clip_data")
        basis_ok = False
    if not np.isfinite(lateral).any():
        gv.fail("nerve_not_tracked")
        basis_ok = False
    if stream.lost:
        gv.fail("clip_lost", gap=stream.longest_gap_s)
        basis_ok = False
    if resets:
        gv.fail("clip_rebooted", n=resets)
        basis_ok = False
    if have_angles and stream.coverage < ev.min_angle_coverage:
        gv.fail(
            "angles_incomplete",
            pct=100 * stream.coverage,
            what="session's frames",
            need=100 * ev.min_angle_coverage,
        )
    prov = glides
    if have_angles and not prov:
        gv.fail("no_manoeuvre")
        basis_ok = False
    still = False
    if prov:
        idx = np.concatenate(
            [np.arange(g.episode.start_index, g.episode.end_index + 1) for g in prov]
        )
        cov = float(np.isfinite(raw_ang[idx]).all(axis=1).mean())
        if cov < ev.min_angle_coverage:
            gv.fail(
                "angles_incomplete",
                pct=100 * cov,
                what="manoeuvres' frames",
                need=100 * ev.min_angle_coverage,
            )
        tracked = float(np.isfinite(lateral[idx]).mean())
        qmed = float(np.nanmedian(quality[idx])) if np.isfinite(quality[idx]).any() else 0.0
        if tracked < ev.min_tracked_fraction:
            gv.fail("tracking_quality_low", what=f"tracked in {100 * tracked:.0f}% of their frames")
        elif qmed < ev.min_tracking_quality:
            gv.fail("tracking_quality_low", what=f"median match quality {qmed:.2f}")
        if fit is None or fit.ir_range_deg < min_ir_range_deg:
            gv.fail(
                "ir_range_too_small",
                range=0.0 if fit is None else fit.ir_range_deg,
                need=min_ir_range_deg,
            )
        # A nerve that does not move while the hip rotates is restricted whatever the
        # lag: the call does not depend on lining the two series up.
        seg = lateral[idx][np.isfinite(lateral[idx])]
        span = float(np.ptp(np.percentile(seg, [5, 95]))) if seg.size >= 10 else math.inf
        still = span < ev.still_range_mm
        if not still and not lag_ok:
            what = (
                "no lag could be estimated"
                if lag.lag_s is None
                else f"best correlation {lag.correlation:.2f} at {lag.lag_s:+.2f} s"
                + (", at the edge of the search window" if lag.at_edge else "")
            )
            gv.fail("angles_images_inconsistent", what=what, window=ev.lag_window_s)
            basis_ok = False
        if not still and fit is not None and fit.r2 < ev.min_fit_r2:
            gv.fail("poor_fit", r2=fit.r2, need=ev.min_fit_r2)

    return gv, basis_ok, still
