"""Session analysis: frames + detections + gliding tracker + angle timeline -> result.

`SessionAnalyzer` is the streaming core (the live service feeds it frame by frame, the
demo uses it); `analyze_session(dir)` replays a recording through it and writes
`result.json` (dgs.session-result/1) and `report.html`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.analysis.settings import AnalysisSettings
from edge_service.analysis.tracker import Box, GlidingTracker, TrackStep
from edge_service.errors import InputError

log = logging.getLogger(__name__)

NERVE_KEYS = ("ap_mm", "width_mm", "csa_mm2", "fascicular_index")
CALC_KEYS = ("long_axis_mm", "thickness_mm", "nerve_distance_mm")


def _num(obj: Any, name: str) -> float:
    v = getattr(obj, name, None)
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


@dataclass
class FrameFindings:
    """What one frame contributed (detector measurements are NaN when absent)."""

    index: int
    t: float
    angles: tuple[float, float, float]
    nerve_found: bool
    nerve: dict[str, float]
    calc_present: bool
    calc: dict[str, float]
    step: TrackStep | None
    # The detector's view / out-of-distribution gate (None = the detector has none).
    view_ok: bool = True
    view_score: float | None = None
    calc_confidence: float = math.nan


@dataclass
class KeyFrame:
    """The frame shown in the report, with outlines (pixel polygons) and its measurements."""

    pixels: np.ndarray
    index: int
    t: float
    nerve_contour: np.ndarray | None
    calc_contour: np.ndarray | None
    nerve: dict[str, float] = field(default_factory=dict)
    calc: dict[str, float] = field(default_factory=dict)


def _contour(mask: np.ndarray | None) -> np.ndarray | None:
    if mask is None or not np.any(mask):
        return None
    import cv2

    cs, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not cs:
        return None
    return np.asarray(max(cs, key=cv2.contourArea)).reshape(-1, 2)


class SessionAnalyzer:
    """Accumulates one session frame by frame; `finish()` returns the result document.

    side: "left"/"right" (sets which image direction is lateral: left side = image right).
    spacing_mm: (dx, dy) of the frames; without it no mm figure is produced.
    """

    def __init__(
        self,
        side: str = "left",
        spacing_mm: tuple[float, float] | None = None,
        settings: AnalysisSettings | None = None,
        session: dict[str, Any] | None = None,
    ) -> None:
        if side not in ("left", "right"):
            raise InputError(f"side must be 'left' or 'right', got {side!r}")
        self.side = side
        self.lat = 1.0 if side == "left" else -1.0
        self.spacing = spacing_mm
        self.s = settings or AnalysisSettings()
        self.session = dict(session or {})
        self.records: list[FrameFindings] = []
        self.tracker: GlidingTracker | None = None
        self.tracker_start: int | None = None
        self.landmark_kind: str | None = None
        self.key: KeyFrame | None = None
        self._key_score = -1.0
        self.model: dict[str, Any] = {}

    # -- regions --------------------------------------------------------------------------
    def _regions(
        self, shape: tuple[int, int], nerve_mask: np.ndarray, calc_mask: np.ndarray | None
    ) -> dict[str, Box] | None:
        assert self.spacing is not None
        dx, dy = self.spacing
        nb = Box.from_mask(nerve_mask)
        if nb is None:
            return None
        h, w = shape
        regions = {"nerve": nb}
        cb = Box.from_mask(calc_mask) if calc_mask is not None else None
        if cb is not None:
            # The calcification is bright and moves with the pelvis: the ideal landmark.
            # Pad it so its blocks also hold the ligament fibres around it.
            pad = round(1.5 / dx)
            regions["landmark"] = Box(cb.x0 - pad, cb.y0 - pad, cb.x1 + pad, cb.y1 + pad)
            self.landmark_kind = "calcification"
        else:
            # Ligament / ischial spine: medial of the nerve at about the nerve's depth.
            edge = nb.x0 if self.lat > 0 else nb.x1
            cx = edge - self.lat * self.s.ligament_offset_mm / dx
            regions["landmark"] = Box.around(cx, nb.center[1], 10.0 / dx, 8.0 / dy)
            self.landmark_kind = "ligament"
        cy = nb.y0 - self.s.muscle_offset_mm / dy
        regions["muscle"] = Box.around(nb.center[0], cy, 12.0 / dx, 6.0 / dy)
        for k, b in list(regions.items()):
            clipped = Box(max(b.x0, 0), max(b.y0, 0), min(b.x1, w), min(b.y1, h))
            if clipped.x1 - clipped.x0 < 8 or clipped.y1 - clipped.y0 < 8:
                if k == "muscle":
                    del regions[k]
                    continue
                return None
            regions[k] = clipped
        return regions

    # -- streaming ------------------------------------------------------------------------
    def add_frame(
        self, frame: Frame, detection: Any, angles: Sequence[float] | Any | None
    ) -> FrameFindings:
        """Add one frame with its detection (detector.Detection or None) and hip angles
        ([flexion, adduction, rotation] deg, an object with *_deg fields, or None = unknown)."""
        if self.spacing is None:
            self.spacing = frame.spacing_mm
        ang = _angles(angles)
        # Frames the detector's view gate rejects (other anatomy, no contact, frozen, ...)
        # give no measurement at all; they are counted in data_quality.
        v = getattr(detection, "view_ok", None)
        view_ok = True if v is None else bool(v)
        vs = _num(detection, "view_score")
        nerve = getattr(detection, "nerve", None) if view_ok else None
        calc = getattr(detection, "calcification", None) if view_ok else None
        conf = _num(nerve, "confidence")
        found = bool(getattr(nerve, "found", False)) and not (conf < self.s.min_nerve_confidence)
        nvals = {k: _num(nerve, k) if found else math.nan for k in NERVE_KEYS}
        present = bool(getattr(calc, "present", False))
        cvals = {k: _num(calc, k) if present else math.nan for k in CALC_KEYS}
        step = None
        if not view_ok:
            pass  # no tracking update on a frame that is not the view being tracked
        elif self.tracker is not None:
            step = self.tracker.update(frame.pixels, frame.index, frame.t)
        elif found and self.spacing is not None:
            nmask = getattr(nerve, "mask", None)
            cmask = getattr(calc, "mask", None) if present else None
            if nmask is not None:
                regions = self._regions(
                    frame.pixels.shape,
                    np.asarray(nmask) > 0,
                    None if cmask is None else np.asarray(cmask) > 0,
                )
                if regions is not None:
                    try:
                        self.tracker = GlidingTracker(
                            frame.pixels, regions, self.spacing, self.s.tracker
                        )
                        self.tracker_start = frame.index
                        step = self.tracker.update(frame.pixels, frame.index, frame.t)
                        log.info(
                            "tracking from frame %d against the %s", frame.index, self.landmark_kind
                        )
                    except InputError as exc:
                        log.warning("frame %d: cannot start tracking: %s", frame.index, exc)
        model = getattr(detection, "model", None)
        if isinstance(model, str) and model and "name" not in self.model:
            self.model["name"] = model
        rec = FrameFindings(
            frame.index,
            frame.t,
            ang,
            found,
            nvals,
            present,
            cvals,
            step,
            view_ok,
            vs if math.isfinite(vs) else None,
            _num(calc, "confidence") if present else math.nan,
        )
        self.records.append(rec)
        self._maybe_key(frame, rec, nerve, calc)
        return rec

    def _maybe_key(self, frame: Frame, rec: FrameFindings, nerve: Any, calc: Any) -> None:
        """Keep the best frame for the report: nerve (and calcification) found, at rest."""
        if not rec.nerve_found:
            return
        rest = 1.0 if all(math.isfinite(a) and abs(a) < 5 for a in rec.angles[1:]) else 0.0
        score = _num(nerve, "confidence") if math.isfinite(_num(nerve, "confidence")) else 0.5
        score += rest + (1.0 if rec.calc_present else 0.0)
        if score <= self._key_score:
            return
        self._key_score = score
        self.key = KeyFrame(
            frame.pixels.copy(),
            frame.index,
            frame.t,
            _contour(getattr(nerve, "mask", None)),
            _contour(getattr(calc, "mask", None)) if rec.calc_present else None,
            dict(rec.nerve),
            dict(rec.calc),
        )

    def finish(self) -> dict[str, Any]:
        """The dgs.session-result/1 document of everything added so far."""
        from edge_service.analysis.result import build_result

        return build_result(self)


def _angles(a: Any) -> tuple[float, float, float]:
    if a is None:
        return (math.nan, math.nan, math.nan)
    if hasattr(a, "rotation_deg"):
        return (float(a.flexion_deg), float(a.adduction_deg), float(a.rotation_deg))
    vals = [float(v) for v in a]
    if len(vals) != 3:
        raise InputError(f"angles must be [flexion, adduction, rotation], got {len(vals)} values")
    return (vals[0], vals[1], vals[2])


Progress = Callable[[int, int], None]


def analyze_session(
    path: str | Path,
    detector: Any = None,
    settings: AnalysisSettings | None = None,
    progress: Progress | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Analyse a recorded session directory; writes result.json and report.html there.

    detector: an object with `.detect(frame)`; None loads the shipped model.
    progress: called as progress(done, total) after each frame.
    """
    from edge_service.analysis.result import write_json_atomic
    from edge_service.recording import open_recording

    d = Path(path)
    rec = open_recording(d)
    spacing = rec.spacing_mm
    if spacing is None:
        raise InputError(f"{d}: the recording has no pixel spacing; mm measurements are impossible")
    if detector is None:
        from edge_service.detector import Detector  # type: ignore[attr-defined]

        detector = Detector.load()
    timeline, imu_seq = _timeline(d, rec)
    meta = rec.meta
    an = SessionAnalyzer(
        meta.side,
        spacing,
        settings,
        session={
            "session_id": meta.session_id,
            "protocol": meta.protocol,
            "started_t": meta.started_t,
            "probe": dict(meta.probe),
            "clip": dict(meta.clip),
            "n_imu": len(timeline) if timeline is not None else 0,
            "imu_seq": imu_seq,
            "recovered": rec.recovered,
        },
    )
    an.model = _model_info(detector)
    total = rec.n_frames
    for i, frame in enumerate(rec.frames()):
        angles = timeline.angles_at(frame.t) if timeline is not None else None
        an.add_frame(frame, detector.detect(frame), angles)
        if progress is not None:
            progress(i + 1, total)
    if not an.records:
        raise InputError(f"{d}: the recording has no frames")
    result = an.finish()
    if write:
        write_json_atomic(d / "result.json", result)
        from edge_service.analysis.report import write_report

        write_report(d / "report.html", result, an.key)
    return result


def _timeline(d: Path, rec: Any) -> tuple[Any, tuple[list[int], list[float]] | None]:
    """The session's angle timeline (None when there is no clip data) and the clip's
    (seq, t) in file order (for reboot detection; None when unknown).

    Only the fields the recording contract guarantees (t, seq, flexion/adduction/
    rotation) are required; `status` and `t_dev` are optional and may be in any form.
    Unreadable lines are skipped with a warning, never guessed.
    """
    from edge_service.clip.timeline import AngleTimeline

    try:
        samples = rec.imu_samples()
    except InputError as exc:
        log.warning("%s; reading the readable IMU lines only", exc)
        try:
            return AngleTimeline.from_jsonl(d / "imu.jsonl"), None
        except InputError as exc2:
            log.warning("%s: %s; analysing without angles", d, exc2)
            return None, None
    rows = []
    bad = 0
    for smp in samples:
        try:
            row = (
                float(smp["t"]),
                int(smp.get("seq", 0)),
                float(smp["flexion_deg"]),
                float(smp["adduction_deg"]),
                float(smp["rotation_deg"]),
            )
        except (KeyError, TypeError, ValueError):
            bad += 1
            continue
        if all(math.isfinite(v) for v in (row[0], row[2], row[3], row[4])):
            rows.append(row)
        else:
            bad += 1
    if bad:
        log.warning("%s: skipped %d unreadable IMU samples", d, bad)
    if not rows:
        log.warning(
            "%s: no clip data (imu.jsonl missing or empty); manoeuvres cannot be detected", d
        )
        return None, None
    # In host-time order a reboot shows as the sample counter going back; a file merely
    # written out of order (another tool) does not.
    rows.sort(key=lambda r: r[0])
    seq_series = ([r[1] for r in rows], [r[0] for r in rows])
    tl = AngleTimeline(capacity=max(len(rows), 2))
    for t, seq, f, a, r in rows:
        # The timeline's own gap rule decides when an angle is unknown (never made up).
        tl.append(t, seq, 0, f, a, r, 0)
    return tl, seq_series


def _model_info(detector: Any) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for k in ("name", "version", "sha256", "path", "training_data"):
        v = getattr(detector, k, None) or getattr(getattr(detector, "seg", None), k, None)
        if isinstance(v, str | int | float):
            info[k] = str(v) if k == "path" else v
    if "path" in info:
        info["path"] = Path(info["path"]).name  # no host paths in a published document
    return info
