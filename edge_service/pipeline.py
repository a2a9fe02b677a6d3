"""One live scanning session, end to end: frames + clip -> recording -> analysis -> MQTT.

This is the chain `dgs-edge run` and `dgs-edge demo` drive; they only differ in which parts
they plug in (a real probe and clip, or the phantom and the virtual clip).

Every stage leaves its trace on disk (journal, cine.dcm, result.json, delivery.json), so a
session interrupted anywhere is finished by `edge_service.recovery` on the next start.
A full disk ends acquisition cleanly (StorageError from the writer, or the DiskGuard's
floor): the frames recorded so far are kept, analysed and published.

Threads: the clip link calls back on its reader thread; samples go through a queue and are
written to the recording from the session thread, so the recording writer has one owner.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edge_service.acquisition.frame import Frame
from edge_service.clip.timeline import AngleTimeline, TimedSample, sample_row
from edge_service.errors import InputError, StorageError
from edge_service.recording import RecordingWriter, SessionMeta
from edge_service.recording.cine import Compression
from edge_service.recovery import publish_session
from edge_service.storage import DiskGuard

log = logging.getLogger(__name__)


class NothingRecorded(StorageError):
    """The disk stopped the session before its first frame (nothing to analyse)."""


class DetectorLike(Protocol):
    def detect(self, frame: Frame) -> Any: ...


class PublisherLike(Protocol):
    def event(
        self, session_id: str, kind: str, data: Any = None, key: str | None = None
    ) -> str: ...
    def result(self, session_id: str, result_doc: Any) -> str: ...
    def live_angles(self, sample: Any) -> bool: ...
    def live_measurements(self, sample: Any) -> bool: ...


class ClipLinkLike(Protocol):
    def subscribe(self, fn: Callable[[TimedSample], None]) -> None: ...
    def unsubscribe(self, fn: Callable[[TimedSample], None]) -> None: ...
    def stats_dict(self) -> dict[str, Any]: ...


@dataclass
class SessionProgress:
    """What the session has done so far; handed to the progress callback after each frame."""

    frames: int = 0
    frames_with_nerve: int = 0
    imu_samples: int = 0
    last_angles: tuple[float, float, float] | None = None
    last_ap_mm: float | None = None
    phase: str = "acquiring"
    extra: dict[str, Any] = field(default_factory=dict)


def _nerve_live(det: Any, frame: Frame) -> dict[str, Any]:
    nerve = getattr(det, "nerve", None)
    calc = getattr(det, "calcification", None)
    out: dict[str, Any] = {"t": round(frame.t, 6), "frame": frame.index}
    if nerve is not None:
        out["nerve_found"] = bool(nerve.found)
        for k in ("ap_mm", "width_mm", "csa_mm2", "confidence"):
            v = getattr(nerve, k, None)
            if v is not None:
                out[f"nerve_{k}"] = round(float(v), 3)
    if calc is not None:
        out["calcification_present"] = bool(calc.present)
    return out


def run_session(
    *,
    frames: Iterable[Frame],
    out_dir: Path,
    meta: SessionMeta,
    detector: DetectorLike,
    timeline: AngleTimeline | None = None,
    link: ClipLinkLike | None = None,
    publisher: PublisherLike | None = None,
    pace: bool = False,
    clip_grace_s: float = 1.0,
    progress: Callable[[SessionProgress], None] | None = None,
    analyze: Callable[[Path, DetectorLike], dict[str, Any]] | None = None,
    disk_guard: DiskGuard | None = None,
    compression: Compression = "jpegls",
    freeze_s: float = 3.0,
    on_freeze: Callable[[bool], None] | None = None,
) -> dict[str, Any]:
    """Acquire one session into `out_dir`, analyse it, publish it; returns the result.

    frames: the probe (frames carry host acquisition times). pace=True holds each frame
    until the wall clock reaches its time (simulated sources). The clip samples arrive via
    `link` into `timeline` and imu.jsonl. After the last frame, up to `clip_grace_s` is
    waited for the clip stream to cover it, so the last frames have angles too.
    disk_guard: stops acquisition cleanly at the free-space floor (prog.extra["stopped"]).
    on_freeze(True/False): the probe image stopped changing for `freeze_s` (a scanner on
    freeze, or a capture card repeating its last frame) / changes again. The frames are
    still recorded (the clinician may have frozen on purpose); it is a status, not an error.
    Raises StorageError when nothing could be recorded or the recording cannot be finished
    for lack of space (what was recorded stays on disk for `dgs-edge recover`).
    """
    q: queue.SimpleQueue[TimedSample] = queue.SimpleQueue()
    put = q.put
    if link is not None:
        link.subscribe(put)
    try:
        return _run(frames, out_dir, meta, detector, timeline, link, publisher, pace,
                    clip_grace_s, progress, analyze, disk_guard, compression, freeze_s,
                    on_freeze, q)  # fmt: skip
    finally:
        # The link outlives the session (the service runs many): a queue left subscribed
        # would collect 100 samples/s forever (found by the soak benchmark).
        if link is not None:
            link.unsubscribe(put)


def _run(
    frames: Iterable[Frame],
    out_dir: Path,
    meta: SessionMeta,
    detector: DetectorLike,
    timeline: AngleTimeline | None,
    link: ClipLinkLike | None,
    publisher: PublisherLike | None,
    pace: bool,
    clip_grace_s: float,
    progress: Callable[[SessionProgress], None] | None,
    analyze: Callable[[Path, DetectorLike], dict[str, Any]] | None,
    disk_guard: DiskGuard | None,
    compression: Compression,
    freeze_s: float,
    on_freeze: Callable[[bool], None] | None,
    q: queue.SimpleQueue[TimedSample],
) -> dict[str, Any]:
    prog = SessionProgress()
    sid = meta.session_id
    if publisher is not None:
        publisher.event(sid, "started", {"side": meta.side, "protocol": meta.protocol}, "")

    def drain(writer: RecordingWriter) -> None:
        row = None
        while True:
            try:
                ts = q.get_nowait()
            except queue.Empty:
                break
            row = sample_row(ts)
            writer.add_imu(row)
            prog.imu_samples += 1
        if publisher is not None and row is not None:
            # Live angles are a view, not history: the newest sample of the batch is enough
            # (the publisher rate-limits on top of this).
            publisher.live_angles(row)

    last_t: float | None = None
    frozen = _FreezeWatch(freeze_s, on_freeze, prog)
    source: Iterable[Frame] = frames if disk_guard is None else disk_guard.frames(iter(frames))
    try:
        opened = RecordingWriter(out_dir, meta, compression=compression)
    except OSError as exc:
        raise StorageError(f"{out_dir}: cannot start the recording: {exc.strerror}") from exc
    with opened as writer:
        for frame in source:
            if pace:
                delay = frame.t - time.time()
                if delay > 0:
                    time.sleep(delay)  # pacing a simulated probe to real time
            det = detector.detect(frame)
            try:
                writer.add_frame(frame)
                drain(writer)
            except StorageError as exc:
                # Disk full mid-session: stop acquiring, keep and finish what was recorded.
                log.error("%s; acquisition stopped, the recorded frames are kept", exc)
                prog.extra["stopped"] = "disk_full"
                break
            last_t = frame.t
            frozen.see(frame)
            prog.frames += 1
            nerve = getattr(det, "nerve", None)
            if nerve is not None and nerve.found:
                prog.frames_with_nerve += 1
                prog.last_ap_mm = float(nerve.ap_mm) if nerve.ap_mm is not None else None
            if timeline is not None:
                a = timeline.angles_at(frame.t)
                prog.last_angles = (
                    None if a is None else (a.flexion_deg, a.adduction_deg, a.rotation_deg)
                )
            if publisher is not None:
                publisher.live_measurements(_nerve_live(det, frame))
            if progress is not None:
                progress(prog)
        if disk_guard is not None and disk_guard.tripped is not None:
            prog.extra["stopped"] = "disk_low"
        if prog.frames == 0:
            if "stopped" in prog.extra:
                raise NothingRecorded(f"{out_dir}: no frame could be recorded (disk full)")
            raise InputError("the probe delivered no frames")
        if timeline is not None and last_t is not None:
            # The clip stream lags the probe by the USB latency: wait (bounded) until it
            # covers the last frame, so the tail of the session has angles too.
            deadline = time.monotonic() + clip_grace_s
            while time.monotonic() < deadline:
                tl = timeline.t_last
                if tl is not None and tl >= last_t:
                    break
                time.sleep(0.02)
        try:
            drain(writer)
        except StorageError as exc:
            log.error("%s", exc)
        if link is not None:
            writer.meta.clip.setdefault("link", link.stats_dict())
        if "stopped" in prog.extra:
            writer.meta.extra["stopped"] = prog.extra["stopped"]
    frozen.clear()
    prog.phase = "analysing"
    if progress is not None:
        progress(prog)
    try:
        if analyze is None:
            from edge_service.analysis.session import analyze_session

            result = analyze_session(out_dir, detector=detector)
        else:
            result = analyze(out_dir, detector)
    except OSError as exc:
        raise StorageError(
            f"{out_dir}: cannot write the result ({exc.strerror}); the recording is kept and "
            "`dgs-edge recover` finishes it once there is space"
        ) from exc
    prog.phase = "publishing"
    if progress is not None:
        progress(prog)
    if publisher is not None:
        publish_session(publisher, writer.meta, result, out_dir)
    prog.phase = "done"
    if progress is not None:
        progress(prog)
    return result


class _FreezeWatch:
    """Identical consecutive frames for `freeze_s` of frame time = a frozen probe image."""

    def __init__(
        self, freeze_s: float, cb: Callable[[bool], None] | None, prog: SessionProgress
    ) -> None:
        self.freeze_s, self.cb, self.prog = freeze_s, cb, prog
        self._prev: Any = None
        self._since: float | None = None
        self.frozen = False

    def see(self, frame: Frame) -> None:
        px = frame.pixels
        same = (
            self._prev is not None
            and self._prev.shape == px.shape
            and bool((self._prev == px).all())
        )
        self._prev = px
        if not same:
            self._since = None
            self._set(False)
            return
        if self._since is None:
            self._since = frame.t
        if frame.t - self._since >= self.freeze_s:
            self._set(True)

    def _set(self, on: bool) -> None:
        if on == self.frozen:
            return
        self.frozen = on
        self.prog.extra["probe_frozen"] = on
        if on:
            log.warning("probe image unchanged for %.0f s (frozen?)", self.freeze_s)
        if self.cb is not None:
            self.cb(on)

    def clear(self) -> None:
        self._set(False)
