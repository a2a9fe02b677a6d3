"""Label the hip-angle timeline: neutral, FAIR, seated piriformis stretch (or other).

A *rest pose* is estimated first (the posture with the least internal rotation and
adduction - both provocative movements start from it, supine or seated), then every
movement away from it by more than `active_deg` is an *episode*, its edges extended
outward to where the movement really began/ended (`onset_deg`). Each episode is
classified by the rules in `ManoeuvreSettings` (documented there). Samples without
angles (clip not connected, gap in the stream) are "unknown": no manoeuvre is ever
inferred without angles.

The session's protocol constrains the labels: in a FAIR session only the FAIR rule is
tried (a repetition that starts with the hip still flexed is not a "seated piriformis
stretch"), in a piriformis session only the piriformis rule; an episode that fits no rule
of its protocol is "other". Protocols this module does not know allow both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge_service.analysis.settings import ManoeuvreSettings

NEUTRAL, FAIR, PIRIFORMIS, OTHER, UNKNOWN = "neutral", "fair", "piriformis", "other", "unknown"


@dataclass(frozen=True)
class Episode:
    """One labelled stretch of the timeline; indices are into the sample arrays (inclusive)."""

    name: str
    start_index: int
    end_index: int
    start_t: float
    end_t: float
    peak_flexion_deg: float
    peak_adduction_deg: float
    peak_internal_rotation_deg: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of the True runs of a 1-D boolean array."""
    if mask.size == 0:
        return []
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def rest_pose(angles: np.ndarray) -> np.ndarray:
    """Median posture of the samples with (near-)least adduction and internal rotation."""
    ok = np.isfinite(angles).all(axis=1)
    a = angles[ok]
    if a.size == 0:
        return np.zeros(3)
    low = np.percentile(a[:, 1:], 10, axis=0)
    quiet = (a[:, 1] <= low[0] + 3.0) & (a[:, 2] <= low[1] + 3.0)
    return np.median(a[quiet] if quiet.any() else a, axis=0)


def allowed_for(protocol: object) -> tuple[str, ...]:
    """The provocative manoeuvres a session's protocol can contain."""
    p = str(protocol or "").strip().lower()
    if p in ("neutral", "rest", "calibration"):
        return ()
    if p == FAIR or p.startswith("fair"):
        return (FAIR,)
    if p == PIRIFORMIS or p.startswith("piriformis") or p.startswith("seated"):
        return (PIRIFORMIS,)
    return (FAIR, PIRIFORMIS)


def _classify(
    seg: np.ndarray, s: ManoeuvreSettings, allowed: tuple[str, ...] = (FAIR, PIRIFORMIS)
) -> str:
    peak_add, peak_ir = float(seg[:, 1].max()), float(seg[:, 2].max())
    start_flex = float(seg[0, 0])
    flex_gain = float(seg[:, 0].max()) - start_flex
    if peak_ir < s.min_ir_deg:
        return OTHER
    if (
        PIRIFORMIS in allowed
        and start_flex >= s.seated_min_flexion_deg
        and peak_add >= s.piriformis_min_adduction_deg
    ):
        return PIRIFORMIS
    if (
        FAIR in allowed
        and flex_gain >= s.fair_min_flexion_gain_deg
        and peak_add >= s.fair_min_adduction_deg
    ):
        return FAIR
    return OTHER


def detect(
    t: np.ndarray,
    angles: np.ndarray,
    settings: ManoeuvreSettings | None = None,
    allowed: tuple[str, ...] = (FAIR, PIRIFORMIS),
) -> tuple[list[str], list[Episode]]:
    """Per-sample labels and the episodes (neutral and movements) of a timeline.

    t: (N,) seconds (any origin, increasing). angles: (N, 3) [flexion, adduction,
    internal rotation] in degrees, NaN where unknown. allowed: the provocative manoeuvres
    the session's protocol can hold (`allowed_for(protocol)`).
    """
    s = settings or ManoeuvreSettings()
    t = np.asarray(t, dtype=float)
    angles = np.asarray(angles, dtype=float).reshape(-1, 3)
    n = t.size
    labels = [UNKNOWN] * n
    if n == 0:
        return labels, []
    valid = np.isfinite(angles).all(axis=1)
    if not valid.any():
        return labels, []
    rest = rest_pose(angles)
    dev = np.zeros(n)
    dev[valid] = np.abs(angles[valid] - rest).max(axis=1)
    # Smoothed deviation (~0.3 s) to find where a movement really began despite sensor noise.
    dt = float(np.median(np.diff(t))) if n > 1 else 1.0
    k = max(round(0.3 / dt) | 1, 1)
    sdev = np.convolve(dev, np.ones(k) / k, mode="same")
    active = valid & (dev > s.active_deg)
    # Merge short quiet gaps (a brief pause at the peak is still the same manoeuvre).
    for a, b in _runs(~active & valid):
        if (
            a > 0
            and b < n - 1
            and active[a - 1]
            and active[b + 1]
            and t[b + 1] - t[a - 1] <= s.merge_gap_s
        ):
            active[a : b + 1] = True
    episodes: list[Episode] = []
    for a, b in _runs(active):
        # Walk outward while the movement is still fading (smoothed deviation falling).
        while a > 0 and valid[a - 1] and (sdev[a - 1] < sdev[a] or dev[a - 1] > s.onset_deg):
            a -= 1
        while b < n - 1 and valid[b + 1] and (sdev[b + 1] < sdev[b] or dev[b + 1] > s.onset_deg):
            b += 1
        if t[b] - t[a] < s.min_episode_s:
            continue
        if episodes and a <= episodes[-1].end_index:
            continue  # already covered by the previous (extended) episode
        seg = angles[a : b + 1]
        name = _classify(seg, s, allowed)
        episodes.append(_episode(name, a, b, t, seg))
        for i in range(a, b + 1):
            labels[i] = name
    for i in range(n):
        if valid[i] and labels[i] == UNKNOWN:
            labels[i] = NEUTRAL
    neutral_eps = [
        _episode(NEUTRAL, a, b, t, angles[a : b + 1])
        for a, b in _runs(np.array([lab == NEUTRAL for lab in labels]))
        if t[b] - t[a] >= s.min_episode_s
    ]
    return labels, sorted(episodes + neutral_eps, key=lambda e: e.start_index)


def _episode(name: str, a: int, b: int, t: np.ndarray, seg: np.ndarray) -> Episode:
    return Episode(
        name=name,
        start_index=int(a),
        end_index=int(b),
        start_t=float(t[a]),
        end_t=float(t[b]),
        peak_flexion_deg=float(seg[:, 0].max()),
        peak_adduction_deg=float(seg[:, 1].max()),
        peak_internal_rotation_deg=float(seg[:, 2].max()),
    )
