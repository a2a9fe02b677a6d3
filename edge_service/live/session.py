"""One live session: acquisition and detection on separate threads, analysis from the live data.

Threads (why): the acquisition thread owns the recording writer and only records - every
frame the probe delivers is written, so a slow detector can never make the recording miss
frames or the probe back up. The detection worker takes the *newest* frame only
(drop-to-latest: frames it had no time for are counted, not queued, so the live view never
falls behind the probe), runs the detector and the gliding tracker on it and feeds the
streaming `SessionAnalyzer`. At stop the analyzer already holds every analysed frame's
detection and tracking: the result is built from it (angles re-read from the full clip
timeline, which by then covers every frame) instead of detecting the recording again.
`dgs-edge analyze DIR` keeps the full offline pass over every frame.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.analysis.session import SessionAnalyzer, _angles, _model_info
from edge_service.analysis.settings import AnalysisSettings
from edge_service.clip.timeline import AngleTimeline, TimedSample, sample_row
from edge_service.errors import DgsError, InputError
from edge_service.live.rig import SessionInputs
from edge_service.live.steps import GuidedSteps
from edge_service.recording import RecordingWriter, SessionMeta

log = logging.getLogger(__name__)

STATES = ("acquiring", "analysing", "done", "failed")


@dataclass
class LiveCounters:
    """What the session did so far (also the data-quality block of session.json)."""

    frames_acquired: int = 0
    frames_detected: int = 0
    dropped_for_detection: int = 0
    dropped_by_source: int = 0
    frozen_frames: int = 0
    imu_samples: int = 0
    detect_ms: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=600))

    def to_dict(self) -> dict[str, Any]:
        def pct(d: deque[float], q: float) -> float | None:
            return round(float(np.percentile(list(d), q)), 2) if d else None

        return {
            "frames_recorded": self.frames_acquired,
            "frames_analysed": self.frames_detected,
            "dropped_for_detection": self.dropped_for_detection,
            "dropped_by_source": self.dropped_by_source,
            "frozen_frames": self.frozen_frames,
            "imu_samples": self.imu_samples,
            "detect_ms_p50": pct(self.detect_ms, 50),
            "live_lag_ms_p50": pct(self.lag_ms, 50),
            "live_lag_ms_p95": pct(self.lag_ms, 95),
        }


def _poly(contour: np.ndarray | None, max_points: int = 48) -> list[list[int]] | None:
    """A contour thinned for the wire (the page draws it; 48 points look smooth)."""
    if contour is None or len(contour) < 3:
        return None
    c = np.asarray(contour).reshape(-1, 2)
    step = max(1, math.ceil(len(c) / max_points))
    return c[::step].astype(int).tolist()


def _mask_poly(mask: Any) -> list[list[int]] | None:
    if mask is None:
        return None
    from edge_service.analysis.session import _contour

    return _poly(_contour(np.asarray(mask) > 0))


def _r(v: Any, nd: int = 2) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, nd) if math.isfinite(f) else None


class LiveSession:
    """Runs one session from `start()` until `stop()` (or the probe ends); see module doc.

    on_event(kind, payload) is called from the session's threads: "frame" (the newest
    recorded frame, for the live image), "overlay" (one analysed frame), "state".
    """

    def __init__(
        self,
        meta: SessionMeta,
        out_dir: Path,
        inputs: SessionInputs,
        detector: Any,
        *,
        settings: AnalysisSettings | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        on_finished: Callable[[LiveSession], None] | None = None,
        want_frames: Callable[[], bool] = lambda: False,
        clip_grace_s: float = 1.0,
        max_duration_s: float | None = None,
    ) -> None:
        self.meta = meta
        self.id = meta.session_id
        self.out_dir = out_dir
        self.inputs = inputs
        self.detector = detector
        self.settings = settings or AnalysisSettings()
        self.on_event = on_event or (lambda k, p: None)
        self.on_finished = on_finished
        self.want_frames = want_frames
        self.clip_grace_s = clip_grace_s
        self.max_duration_s = max_duration_s
        self.state = "acquiring"
        self.error: str | None = None
        self.ended_reason: str | None = None
        self.result: dict[str, Any] | None = None
        self.counters = LiveCounters()
        self.analyzer = SessionAnalyzer(
            meta.side,
            None,
            self.settings,
            session={
                "session_id": meta.session_id,
                "protocol": meta.protocol,
                "started_t": meta.started_t,
                "probe": dict(meta.probe),
                "clip": dict(meta.clip),
            },
        )
        self.analyzer.model = _model_info(detector)
        self.steps = GuidedSteps(self.settings.manoeuvres)
        self.result_ready_t: float | None = None
        self.stopped_t: float | None = None
        self._stop = threading.Event()
        self.finalised = threading.Event()  # the recording (cine.dcm, session.json) is closed
        self._latest: Frame | None = None
        self._latest_cv = threading.Condition()
        self._acq_done = False
        self._imu_q: queue.SimpleQueue[TimedSample] = queue.SimpleQueue()
        self._acq = threading.Thread(target=self._acquire, name=f"acq-{self.id}", daemon=True)
        self._det = threading.Thread(target=self._detect_loop, name=f"det-{self.id}", daemon=True)
        self._trace: deque[tuple[float, float]] = deque(maxlen=2000)

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        if self.inputs.link is not None:
            # The clip link has no unsubscribe and outlives sessions in `dgs-edge run`: the
            # callback goes quiet once this session has finished acquiring.
            self.inputs.link.subscribe(self._on_sample)
        self._emit_state()
        self._det.start()
        self._acq.start()

    def stop(self, reason: str = "stopped by the user") -> None:
        if not self._stop.is_set():
            self.ended_reason = reason
            self.stopped_t = time.time()
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> bool:
        self._acq.join(timeout_s)
        return not self._acq.is_alive()

    @property
    def acquiring(self) -> bool:
        return self.state == "acquiring"

    def _on_sample(self, ts: TimedSample) -> None:
        if not self._acq_done:
            self._imu_q.put(ts)

    # -- events ---------------------------------------------------------------------------
    def _emit_state(self) -> None:
        self.on_event("state", {"id": self.id, "state": self.state, "error": self.error})

    def _set_state(self, state: str) -> None:
        self.state = state
        self._emit_state()

    # -- acquisition thread ---------------------------------------------------------------
    def _drain_imu(self, writer: RecordingWriter) -> None:
        while True:
            try:
                ts = self._imu_q.get_nowait()
            except queue.Empty:
                return
            writer.add_imu(sample_row(ts))
            self.counters.imu_samples += 1

    def _acquire(self) -> None:
        c = self.counters
        prev_index: int | None = None
        prev_sig: int | None = None
        last_t: float | None = None
        t_start = time.monotonic()
        try:
            with RecordingWriter(self.out_dir, self.meta) as writer:
                try:
                    for frame in self.inputs.frames:
                        if self._stop.is_set():
                            break
                        if self.inputs.pace:
                            delay = frame.t - time.time()
                            if delay > 0:
                                time.sleep(delay)  # a simulated probe delivers in real time
                        writer.add_frame(frame)
                        self._drain_imu(writer)
                        c.frames_acquired += 1
                        if prev_index is not None and frame.index > prev_index + 1:
                            c.dropped_by_source += frame.index - prev_index - 1
                        prev_index = frame.index
                        # A frozen probe repeats the same image: compare a sparse fingerprint.
                        sig = zlib.crc32(np.ascontiguousarray(frame.pixels[::7, ::7]).tobytes())
                        if sig == prev_sig:
                            c.frozen_frames += 1
                        prev_sig = sig
                        last_t = frame.t
                        with self._latest_cv:
                            if self._latest is not None:
                                c.dropped_for_detection += 1
                            self._latest = frame
                            self._latest_cv.notify()
                        if self.want_frames():
                            self.on_event("frame", {"id": self.id, "frame": frame})
                        if (
                            self.max_duration_s is not None
                            and time.monotonic() - t_start > self.max_duration_s
                        ):
                            self.stop(f"maximum duration {self.max_duration_s:g} s reached")
                            break
                    else:
                        if not self._stop.is_set():
                            self.stop("the probe stopped delivering frames")
                except DgsError as exc:
                    # A probe unplugged or failing mid-session: keep what was recorded.
                    log.warning("session %s: acquisition ended: %s", self.id, exc)
                    self.stop(f"probe: {exc}")
                finally:
                    try:
                        self.inputs.close()
                    except Exception:  # the rig's tear-down must not lose the recording
                        log.exception("closing the session inputs failed")
                self._set_state("analysing")
                self._wait_clip(last_t)
                self._drain_imu(writer)
                self._finish_detection()
                live = c.to_dict()
                writer.meta.extra["live"] = live
                writer.meta.extra["ended_reason"] = self.ended_reason
                if self.inputs.link is not None:
                    writer.meta.clip.setdefault("link", self.inputs.link.stats_dict())
                if c.frames_acquired == 0:
                    raise InputError("the probe delivered no frames")
                # The result first, then the cine: closing the writer encodes every frame
                # into cine.dcm (seconds for a long session), and the result needs none of
                # it. Until the recording is finalised, discard/relabel wait (`finalised`).
                self._analyse()
                self.result_ready_t = time.time()
                self._set_state("done")
        except Exception as exc:
            self._finish_detection()
            msg = str(exc) if isinstance(exc, DgsError) else f"{type(exc).__name__}: {exc}"
            if self.state == "done":
                # The result stands; the journal keeps the frames for `dgs-edge recover`.
                self.error = f"recording not finalised: {msg}"
                log.error("session %s: recording not finalised: %s", self.id, msg)
            else:
                self.error = msg
                if not isinstance(exc, DgsError):
                    log.exception("session %s failed", self.id)
                else:
                    log.warning("session %s failed: %s", self.id, exc)
                self._set_state("failed")
        finally:
            self.finalised.set()
            if self.on_finished is not None:
                self.on_finished(self)

    def _wait_clip(self, last_t: float | None) -> None:
        """The clip stream lags the probe by the USB latency: wait (bounded) until it covers
        the last frame, so the tail of the session has angles too."""
        tl = self.inputs.timeline
        if tl is None or last_t is None or self.inputs.link is None:
            return
        deadline = time.monotonic() + self.clip_grace_s
        while time.monotonic() < deadline:
            t_last = tl.t_last
            if t_last is not None and t_last >= last_t:
                return
            time.sleep(0.01)

    def _finish_detection(self) -> None:
        with self._latest_cv:
            self._acq_done = True
            self._latest_cv.notify()
        self._det.join()

    # -- detection worker -----------------------------------------------------------------
    def _detect_loop(self) -> None:
        c = self.counters
        while True:
            with self._latest_cv:
                while self._latest is None and not self._acq_done:
                    self._latest_cv.wait(0.5)
                frame = self._latest
                self._latest = None
                if frame is None and self._acq_done:
                    return
            assert frame is not None
            try:
                self._analyse_frame(frame)
            except Exception:  # one bad frame must not end the live view
                log.exception("session %s: frame %d could not be analysed", self.id, frame.index)
                continue
            c.frames_detected += 1

    def _angles_live(self, tl: AngleTimeline | None, t: float) -> Any:
        if tl is None:
            return None
        a = tl.angles_at(t)
        if a is None:
            # The clip is a few ms behind the probe: for the live view, the newest sample
            # within 0.25 s stands in (the result re-reads the angles at stop).
            t_last = tl.t_last
            if t_last is not None and 0 <= t - t_last <= 0.25:
                a = tl.angles_at(t_last)
        return a

    def _analyse_frame(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        det = self.detector.detect(frame)
        det_ms = (time.perf_counter() - t0) * 1e3
        ang = self._angles_live(self.inputs.timeline, frame.t)
        rec = self.analyzer.add_frame(frame, det, ang)
        self.counters.detect_ms.append(det_ms)
        ir = rec.angles[2]
        glide = None
        if rec.step is not None and rec.step.reliable:
            glide = self.analyzer.lat * rec.step.nerve_vs_landmark_mm[0]
            if math.isfinite(ir):
                self._trace.append((ir, glide))
        if all(math.isfinite(v) for v in rec.angles):
            self.steps.add(frame.t, rec.angles)
        nerve = getattr(det, "nerve", None)
        calc = getattr(det, "calcification", None)
        h, w = frame.pixels.shape
        payload = {
            "id": self.id,
            "frame": frame.index,
            "t": frame.t,
            "w": w,
            "h": h,
            "nerve": {
                "found": rec.nerve_found,
                "contour": _mask_poly(getattr(nerve, "mask", None)) if rec.nerve_found else None,
                "ap_mm": _r(rec.nerve.get("ap_mm")),
                "width_mm": _r(rec.nerve.get("width_mm")),
                "csa_mm2": _r(rec.nerve.get("csa_mm2"), 1),
                "confidence": _r(getattr(nerve, "confidence", None), 3),
            },
            "calcification": {
                "present": rec.calc_present,
                "contour": _mask_poly(getattr(calc, "mask", None)) if rec.calc_present else None,
                "long_axis_mm": _r(rec.calc.get("long_axis_mm")),
            },
            "angles": None
            if not all(math.isfinite(v) for v in rec.angles)
            else {
                "flexion_deg": _r(rec.angles[0], 1),
                "adduction_deg": _r(rec.angles[1], 1),
                "internal_rotation_deg": _r(rec.angles[2], 1),
            },
            "gliding": {
                "displacement_mm": _r(glide, 3),
                "internal_rotation_deg": _r(ir, 1),
                "quality": _r(rec.step.quality, 3) if rec.step is not None else None,
            },
            "steps": self.steps.to_list(),
            "detect_ms": round(det_ms, 1),
            "counters": self.counters.to_dict(),
        }
        self.counters.lag_ms.append((time.time() - frame.t) * 1e3)
        self.on_event("overlay", payload)

    # -- end of session -------------------------------------------------------------------
    def _analyse(self) -> None:
        from edge_service.analysis.report import write_report
        from edge_service.analysis.result import write_json_atomic

        an = self.analyzer
        if not an.records:
            raise InputError("no frame could be analysed")
        tl = self.inputs.timeline
        if tl is not None:
            # Re-read every analysed frame's angles from the complete timeline: live, the
            # newest frames were ahead of the clip stream.
            for rec in an.records:
                rec.angles = _angles(tl.angles_at(rec.t))
        an.session["n_imu"] = self.counters.imu_samples
        result = an.finish()
        dq = result.setdefault("data_quality", {})
        live = self.counters.to_dict()
        dq.update(
            {
                "frames_recorded": live["frames_recorded"],
                "frames_analysed": live["frames_analysed"],
                "dropped_for_detection": live["dropped_for_detection"],
                "dropped_by_source": live["dropped_by_source"],
                "frozen_frames": live["frozen_frames"],
                "analysis": "live (detections and tracking of the analysed frames reused)",
            }
        )
        write_json_atomic(self.out_dir / "result.json", result)
        write_report(self.out_dir / "report.html", result, an.key)
        self._write_key_png()
        self.result = result

    def _write_key_png(self) -> None:
        """The key frame with its outlines, for the PDF report (the HTML embeds its own)."""
        key = self.analyzer.key
        if key is None:
            return
        import cv2

        img = cv2.cvtColor(key.pixels, cv2.COLOR_GRAY2BGR)
        for contour, colour in ((key.nerve_contour, (113, 204, 46)), (key.calc_contour, (18, 156, 243))):  # fmt: skip
            if contour is not None and len(contour) >= 3:
                cv2.polylines(
                    img, [np.asarray(contour, np.int32).reshape(-1, 1, 2)], True, colour, 2
                )
        cv2.imwrite(str(self.out_dir / "keyframe.png"), img)

    def trace(self) -> list[tuple[float, float]]:
        return list(self._trace)
