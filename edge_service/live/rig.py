"""What the live service scans with: a *rig* opens the probe (and clip) for one session.

The service never knows whether the parts are real or simulated: `dgs-edge run` hands it a
`ConfiguredRig` (the configured source and clip, which never falls back to simulated parts;
a missing part is reported by `status()`), `dgs-edge demo --serve` a `DemoRig` (phantom probe
plus a virtual clip per session, one script for both), and the benchmark a `ReplayRig` (a
recorded session's frames re-timed to the wall clock, so no rendering cost competes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edge_service.acquisition.frame import Frame
from edge_service.clip.timeline import AngleTimeline, TimedSample
from edge_service.errors import DeviceError, InputError

log = logging.getLogger(__name__)


class LinkLike(Protocol):
    def subscribe(self, fn: Callable[[TimedSample], None]) -> None: ...
    def stats_dict(self) -> dict[str, Any]: ...


@dataclass
class SessionInputs:
    """The parts one session reads from. `close()` releases what `open` started."""

    frames: Iterator[Frame]
    timeline: AngleTimeline | None = None
    link: LinkLike | None = None
    pace: bool = False  # hold each frame until the wall clock reaches its time (simulated)
    probe: dict[str, Any] = field(default_factory=dict)
    clip: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    fps_hz: float | None = None
    close: Callable[[], None] = lambda: None


class Rig(Protocol):
    def open(self, side: str, protocol: str) -> SessionInputs: ...
    def status(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def exam_motion(hold_s: float = 3.0) -> Any:
    """The exam of the case report (2.3) as one scripted hip motion: neutral rest, FAIR
    twice, then seated piriformis stretch (what a clinician does on one side)."""
    from edge_service.sim.motion import FAIR_PEAK, PIRIFORMIS_PEAK, SEATED_BASE, HipMotion, Segment

    neutral = (0.0, 0.0, 0.0)
    segs = [Segment(4.5, neutral, "neutral")]
    for _ in range(2):
        segs += [
            Segment(3.0, FAIR_PEAK, "fair"),
            Segment(hold_s, FAIR_PEAK, "fair"),
            Segment(3.0, neutral, "fair"),
            Segment(2.5, neutral, "neutral"),
        ]
    segs += [
        Segment(3.0, SEATED_BASE, "neutral"),
        Segment(2.0, SEATED_BASE, "neutral"),
        Segment(3.0, PIRIFORMIS_PEAK, "piriformis"),
        Segment(hold_s, PIRIFORMIS_PEAK, "piriformis"),
        Segment(3.0, SEATED_BASE, "piriformis"),
        Segment(2.0, SEATED_BASE, "neutral"),
    ]
    return HipMotion(neutral, tuple(segs))


def motion_for(protocol: str) -> Any:
    from edge_service.sim.motion import manoeuvre

    if protocol == "exam":
        return exam_motion()
    return manoeuvre(protocol, repetitions=2)  # type: ignore[arg-type]


class DemoRig:
    """Phantom probe + virtual clip (real serial protocol over a pty), one script per session.

    The demo patient has an affected left side (swollen nerve, calcification, restricted
    gliding) and a normal right side, as in the case report, so that recording both sides
    of one order gives the contralateral comparison. After the script the session goes on
    at rest until it is stopped (`loop=False` ends it with the script).
    """

    def __init__(
        self, fps: float = 10.0, seed: int = 7, loop: bool = True, needle_kind: str = "procedure"
    ) -> None:
        self.fps = fps
        self.seed = seed
        self.loop = loop
        # protocol "injection": which scripted needle session the phantom plays
        # (edge_service/phantom/needle_session.py: procedure, intraneural, reflector, none)
        self.needle_kind = needle_kind
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"probe": "phantom (idle)", "clip": "virtual (idle)"}

    def open(self, side: str, protocol: str) -> SessionInputs:
        from edge_service.clip.link import ClipLink
        from edge_service.phantom import PhantomConfig, PhantomSimulator
        from edge_service.virtualclip import start_virtual_clip

        if protocol == "injection":
            return self._open_injection(side)
        motion = motion_for(protocol)
        affected = side == "left"
        cfg = PhantomConfig(
            side=side,  # type: ignore[arg-type]
            nerve="swollen" if affected else "normal",
            calcification=affected,
            gliding="restricted" if affected else "free",
        )
        sim = PhantomSimulator(cfg, seed=self.seed)
        clip = start_virtual_clip(motion, side=side, seed=self.seed, realtime=True)
        t0 = time.time()
        timeline = AngleTimeline()
        link = ClipLink(port=clip.port, timeline=timeline)
        try:
            link.open()
            if not link.wait_connected(5.0):
                raise DeviceError(f"virtual clip on {clip.port} did not answer")
            link.start()
        except BaseException:
            link.close()
            clip.stop()
            raise
        with self._lock:
            self._state = {"probe": "phantom", "clip": "virtual, connected, calibrated"}

        def frames() -> Iterator[Frame]:
            dt = 1.0 / self.fps
            i = 0
            while True:
                t_rel = i * dt
                if t_rel > motion.duration_s and not self.loop:
                    return
                # Past the script the patient rests in the last pose (the clip holds it too).
                t_rel_m = min(t_rel, motion.duration_s)
                yield sim.render(motion.angles(t_rel_m)[0], t_rel_m, i, t0 + t_rel).frame
                i += 1

        def close() -> None:
            link.close()
            clip.stop()
            with self._lock:
                self._state = {"probe": "phantom (idle)", "clip": "virtual (idle)"}

        return SessionInputs(
            frames=frames(),
            timeline=timeline,
            link=link,
            pace=True,
            probe={"kind": "phantom", "model": "C3-5 curvilinear (simulated)"},
            clip={"kind": "virtual", "port": clip.port},
            source={"kind": "phantom", "seed": self.seed, "fps": self.fps},
            fps_hz=self.fps,
            close=close,
        )

    def _open_injection(self, side: str) -> SessionInputs:
        """A scripted needle session in the phantom (no clip: the hip stays still during an
        injection). After the script the needle rests where it ended until stopped."""
        import numpy as np

        from edge_service.phantom.needle_session import make_session

        ses = make_session(self.needle_kind, self.seed)
        still = np.zeros(3)
        t0 = time.time()
        with self._lock:
            self._state = {"probe": f"phantom (needle: {self.needle_kind})", "clip": "not used"}

        def frames() -> Iterator[Frame]:
            dt = 1.0 / self.fps
            i = 0
            while True:
                t_rel = i * dt
                if t_rel > ses.duration_s and not self.loop:
                    return
                yield ses.sim.render(still, min(t_rel, ses.duration_s), i, t0 + t_rel).frame
                i += 1

        def close() -> None:
            with self._lock:
                self._state = {"probe": "phantom (idle)", "clip": "virtual (idle)"}

        return SessionInputs(
            frames=frames(),
            pace=True,
            probe={"kind": "phantom", "model": "C3-5 curvilinear (simulated)"},
            source={
                "kind": "phantom-needle",
                "seed": self.seed,
                "fps": self.fps,
                "needle_kind": self.needle_kind,
                "needle_session": ses.info,
            },
            fps_hz=self.fps,
            close=close,
        )

    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state, simulated=True, clip_ok=True)

    def close(self) -> None:
        pass


class ReplayRig:
    """A recorded session replayed as a live probe at `fps` (frames re-timed to now).

    The pixels are decoded once up front, so the replay costs nothing while it runs: what
    is measured is the service, not the source. Like a real probe, frame i is due at
    t0 + i / fps on the probe's clock and carries that time, whether or not the consumer
    keeps up (a slow consumer reads late frames from the queue: its lag grows). The
    recording's content plays `fps / recorded fps` times faster and repeats up to
    `repeat_to_s`; its clip samples are re-timed the same way into a fresh timeline.
    """

    def __init__(self, recording: Path, fps: float, repeat_to_s: float | None = None) -> None:
        from edge_service.recording import open_recording

        rec = open_recording(recording)
        frames = list(rec.frames())
        if len(frames) < 2:
            raise InputError(f"{recording}: too few frames to replay")
        self.frames = frames
        self.fps = fps
        self.t_rec0 = frames[0].t
        try:
            self.imu = [
                (float(s["t"]), float(s["flexion_deg"]), float(s["adduction_deg"]),
                 float(s["rotation_deg"]))
                for s in rec.imu_samples()
            ]  # fmt: skip
        except (InputError, KeyError, TypeError, ValueError):
            self.imu = []
        self.rec_fps = (len(frames) - 1) / max(frames[-1].t - frames[0].t, 1e-6)
        n = len(frames)
        self.n_out = n if repeat_to_s is None else max(n, round(repeat_to_s * fps))
        self.delivered = 0
        self.last_t: float | None = None

    def open(self, side: str, protocol: str) -> SessionInputs:
        timeline = AngleTimeline(capacity=max(len(self.imu) * 8, 1024))
        t0 = time.time() + 0.05
        n = len(self.frames)
        speed = self.fps / self.rec_fps
        imu = self.imu
        pos = [0]
        self.delivered = 0

        def feed(now: float) -> None:
            # the clip's samples up to `now`, so the timeline covers each frame when it is due
            while imu:
                cycle, j = divmod(pos[0], len(imu))
                ts, f, a, r = imu[j]
                t_map = t0 + (ts - self.t_rec0) / speed + cycle * n / self.fps
                if t_map > now + 0.02:
                    return
                timeline.append(t_map, pos[0], 0, f, a, r, 0)
                pos[0] += 1

        def frames() -> Iterator[Frame]:
            for i in range(self.n_out):
                src = self.frames[i % n]
                t = t0 + i / self.fps
                delay = t - time.time()
                if delay > 0:
                    time.sleep(delay)  # the replayed probe delivers at its own rate
                feed(max(time.time(), t))
                self.delivered += 1
                self.last_t = t
                yield Frame(src.pixels, t, i, src.spacing_mm, src.roi)

        return SessionInputs(
            frames=frames(),
            timeline=timeline if imu else None,
            link=None,
            pace=False,
            probe={"kind": "replay"},
            clip={"kind": "replay"} if imu else {},
            source={"kind": "replay", "fps": self.fps},
            fps_hz=self.fps,
        )

    def status(self) -> dict[str, Any]:
        return {"probe": "replay", "clip": "replay" if self.imu else "none", "simulated": True,
                "clip_ok": bool(self.imu)}  # fmt: skip

    def close(self) -> None:
        pass


class ConfiguredRig:
    """The configured probe and clip of `dgs-edge run`: real parts only.

    The clip link stays open across sessions (one timeline); the probe is opened per
    session. Without a clip (or when it is unplugged) sessions still run, without angles,
    and `status()` says so: nothing simulated ever stands in for a missing part.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.timeline: AngleTimeline | None = None
        self.link: Any = None
        self._error: str | None = None
        if cfg.session.use_clip:
            from edge_service.clip.link import ClipLink

            self.timeline = AngleTimeline(cfg.clip.timeline)
            self.link = ClipLink(cfg.clip, timeline=self.timeline)
            try:
                self.link.open()
                if self.link.wait_connected(cfg.clip.handshake_timeout_s * 5):
                    self.link.start()
                else:
                    self._error = f"no clip answered on {self.link.port}"
            except Exception as exc:  # shown on the page; sessions go on without angles
                self._error = f"clip: {exc}"
                log.warning("clip not available: %s", exc)

    def open(self, side: str, protocol: str) -> SessionInputs:
        from edge_service.acquisition.factory import open_source

        src = open_source(self.cfg.source)
        it = iter(src)
        return SessionInputs(
            frames=it,
            timeline=self.timeline,
            link=self.link,
            pace=self.cfg.source.kind == "phantom",
            probe={"source": self.cfg.source.kind},
            clip={"port": getattr(self.link, "port", None)},
            source=self.cfg.source.model_dump(mode="json"),
            close=src.close,
        )

    def status(self) -> dict[str, Any]:
        clip, ok = "not used", True
        if self.link is not None:
            ok = bool(self.link.connected)
            clip = "connected" if ok else (self._error or "disconnected")
            try:
                st = self.link.stats_dict()
                dec = st.get("decoder") or {}
                extra = [f"{k} {v}" for k, v in (("reconnects", st.get("disconnects")),
                         ("reboots", dec.get("reboots")), ("lost", dec.get("lost_frames"))) if v]  # fmt: skip
                if not (st.get("clock") or {}).get("synced"):
                    extra.append("clock not synced")
                if extra:
                    clip += " (" + ", ".join(extra) + ")"
            except Exception as exc:  # status is best effort; the page shows the plain state
                log.debug("clip stats unavailable: %s", exc)
        return {"probe": self.cfg.source.kind, "clip": clip, "clip_ok": ok, "simulated": False}

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
