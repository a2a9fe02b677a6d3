"""`ProcedureTracker`: one injection procedure, frame by frame (see the package doc).

Guards against a false "on target" (issue 16, bad input): the tip must belong to a needle
that was seen moving since it was acquired (a bone edge or fascia line that looks like a
shaft never advances) and did not jump between frames (the locator switching reflectors);
its shaft must be in plane (cue "shaft", enough of the shaft visible: an out-of-plane shaft's
cross-section looks like a tip); the probe must not be frozen; the nerve must be seen and
further than caution_mm.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any

from edge_service.needle.types import NeedleResult
from edge_service.procedure.alarms import AlarmBook
from edge_service.procedure.injections import InjectionDetector
from edge_service.procedure.motion import TipMotion
from edge_service.procedure.observation import FrameState, Observation
from edge_service.procedure.settings import ProcedureSettings

#: the share of the expected in-plane shaft that must be visible for "on target"
MIN_SHAFT_FRACTION = 0.5
#: A resting tip seen through a locator's jitter (a learned tip wanders 0.2-1 mm from frame
#: to frame around a still needle, more than the motion state's stationary_mm over its short
#: window): over the last REST_WINDOW_S, the median tip of the older half and of the newer
#: half are within REST_SHIFT_MM and the tips' median distance from their median is within
#: REST_SPREAD_MM. An advancing tip (>= 1 mm/s) shifts the halves by >= 0.5 mm.
REST_WINDOW_S = 1.0
REST_SHIFT_MM = 0.4
REST_SPREAD_MM = 0.8
REST_MIN_SAMPLES = 4


def _direction(n: NeedleResult) -> tuple[float, float] | None:
    """Unit (depth, lateral) along the shaft towards the tip, from the visible shaft."""
    if n.shaft_start_px is None or n.tip_px is None:
        return None
    dr, dc = n.tip_px[0] - n.shaft_start_px[0], n.tip_px[1] - n.shaft_start_px[1]
    norm = math.hypot(dr, dc)
    if norm < 5.0:  # a few pixels of shaft give no direction
        return None
    return dr / norm, dc / norm


class ProcedureTracker:
    def __init__(self, settings: ProcedureSettings | None = None) -> None:
        self.s = settings or ProcedureSettings()
        self.alarms = AlarmBook()
        self.motion = TipMotion(self.s)
        self.inj = InjectionDetector(self.s)
        self.t0: float | None = None
        self.t_last: float | None = None
        self._last_seen_t: float | None = None
        self._last_tip: tuple[float, float] | None = None
        self._frozen_since: float | None = None
        self._was_stationary = False
        self.holding = False  # the tip rests at one spot (the spread meter keeps its reference)
        self.min_nerve: tuple[float, float, int] | None = None  # (mm, t, frame)
        self.min_path: float | None = None
        self.entered_nerve = False
        self.on_target_s = 0.0
        self.first_on_target_t: float | None = None
        self._prev_t: float | None = None
        self._dist_hist: deque[tuple[float, float]] = deque()
        self._rest_hist: deque[tuple[float, float, float]] = deque()  # t, depth, lateral
        self.q: dict[str, Any] = {
            "frames": 0,
            "frames_needle_found": 0,
            "frames_low_confidence": 0,
            "frames_frozen": 0,
            "frames_nerve_found": 0,
            "frames_calcification_present": 0,
            "frames_motion_cue_only": 0,
            "track_resets": 0,
            "needle_unseen_s": 0.0,
        }

    # -- per frame --------------------------------------------------------------------------
    def update(self, o: Observation) -> FrameState:
        s, q = self.s, self.q
        if self.t0 is None:
            self.t0 = o.t
        dt = 0.0 if self._prev_t is None else max(0.0, o.t - self._prev_t)
        self._prev_t = o.t
        self.t_last = o.t
        q["frames"] += 1
        q["frames_nerve_found"] += int(o.nerve_found)
        q["frames_calcification_present"] += int(o.calc_present)
        n = o.needle
        found = bool(n.found and n.tip_mm is not None)
        if n.found and n.confidence < s.min_confidence:
            q["frames_low_confidence"] += 1
            found = False
        if o.frozen:
            q["frames_frozen"] += 1
            self._frozen_since = o.t if self._frozen_since is None else self._frozen_since
        else:
            self._frozen_since = None
        frozen_long = (
            self._frozen_since is not None and o.t - self._frozen_since >= s.frozen_after_s
        )
        wanted: dict[str, tuple[str, float | None]] = {}
        keep: set[str] = set()
        motion = "lost"
        tip = None
        jumped = False
        if found and not o.frozen:
            assert n.tip_mm is not None
            tip = (float(n.tip_mm[0]), float(n.tip_mm[1]))
            q["frames_needle_found"] += 1
            q["frames_motion_cue_only"] += int(n.cue == "motion")
            jumped = False
            if self._last_tip is not None and math.dist(tip, self._last_tip) > s.jump_mm:
                # Not the same needle tip a frame later: another reflector took over.
                self.motion.reset_track()
                q["track_resets"] += 1
                jumped = True
                self._dist_hist.clear()  # no closing speed across a jump
            if jumped:
                self._rest_hist.clear()
            self._rest_hist.append((o.t, tip[0], tip[1]))
            self.motion.add(o.t, tip, n.angle_deg, _direction(n))
            self._last_tip = tip
            self._last_seen_t = o.t
            motion = self.motion.state(o.t)
        elif o.frozen:
            motion = "unknown"
        else:
            if self._last_seen_t is not None:
                q["needle_unseen_s"] += dt
        # A tip that jumped here is confirmed by the next frame before it raises a distance
        # alarm (one frame later; a continuous approach is never delayed): a needle does not
        # move jump_mm in one frame, a locator switching to a bright edge by the nerve does.
        # A tip that never moved alarm_track_mm is a still needle-like reflector (a bright edge
        # by the nerve): no distance alarm from it (a real needle got there by moving).
        confirmed = (
            found and not o.frozen and not jumped and self.motion.excursion_mm >= s.alarm_track_mm
        )
        if found and not o.frozen and n.nerve_distance_mm is None and not o.nerve_found:
            wanted["nerve_not_seen"] = (
                "Nerve not seen: the tip-to-nerve distance is unknown",
                None,
            )
        self._distance_alarms(o, confirmed, motion, wanted, keep)
        self._lost_alarm(o, found, wanted)
        if frozen_long:
            wanted["probe_frozen"] = (
                "Image frozen: the probe sends the same image; guidance suspended",
                None,
            )
        on, why = self._on_target(o, found, motion)
        if on:
            self.on_target_s += dt
            if self.first_on_target_t is None:
                self.first_on_target_t = o.t
        stationary = self._holding(o, tip, motion)
        if self._was_stationary and not stationary:
            self.inj.new_spot()
        self._was_stationary = stationary
        self.holding = stationary
        ctx = {
            "tip_mm": tip,
            "calc_offset_mm": o.calc_offset_mm,
            "calcification_distance_mm": n.calcification_distance_mm,
            "nerve_distance_mm": n.nerve_distance_mm,
            "on_target": on,
        }
        self.inj.update(
            o.t, o.index, stationary, o.spread_mm2 if stationary else None, o.spread_nerve_mm, ctx
        )
        cur = self.inj.current
        if cur is not None and cur.reached_epineurium:
            wanted["spread_at_nerve"] = (
                "STOP: the injectate spread reaches the epineurium",
                cur.min_spread_nerve_mm,
            )
        raised, cleared = self.alarms.update(o.t, o.index, wanted, keep)
        return FrameState(
            t=o.t,
            index=o.index,
            needle_found=found and not o.frozen,
            motion=motion,
            tip_mm=tip,
            nerve_distance_mm=n.nerve_distance_mm if found else None,
            path_nerve_distance_mm=n.path_nerve_distance_mm if found else None,
            calcification_distance_mm=n.calcification_distance_mm if found else None,
            on_target=on,
            on_target_reason=why,
            alarms=list(self.alarms.active.values()),
            level=self.alarms.level(),
            raised=raised,
            cleared=cleared,
            injecting=cur is not None,
            injections=len(self.inj.injections),
            volume_ml=sum(i.volume_ml for i in self.inj.injections),
            passes=self.motion.advances,
            redirects=self.motion.redirects,
        )

    def _distance_alarms(
        self,
        o: Observation,
        seen: bool,
        motion: str,
        wanted: dict[str, tuple[str, float | None]],
        keep: set[str],
    ) -> None:
        s, n, act = self.s, o.needle, self.alarms.active
        if not seen:
            # Unseen: distance alarms hold (the needle did not move away by vanishing).
            keep.update(k for k in ("nerve_stop", "nerve_caution", "path_caution") if k in act)
            return
        d = n.nerve_distance_mm
        if d is None:
            return
        if self.min_nerve is None or d < self.min_nerve[0]:
            self.min_nerve = (d, o.t, o.index)
        if d <= 0:
            self.entered_nerve = True
        closing = self._closing_speed(o.t, d)
        # where the tip will be after lead_s at its closing speed (never further than now)
        d_ahead = d - closing * s.lead_s
        how = f" (closing {closing:.1f} mm/s)" if closing > 0.5 else ""
        if d_ahead <= s.stop_mm:
            msg = (
                "STOP: the tip is inside the nerve outline"
                if d <= 0
                else f"STOP: tip {d:.1f} mm from the nerve{how}"
            )
            wanted["nerve_stop"] = (msg, d)
        elif "nerve_stop" in act and d <= s.stop_mm + s.clear_margin_mm:
            keep.add("nerve_stop")
        if d_ahead <= s.caution_mm:
            wanted["nerve_caution"] = (f"Caution: tip {d:.1f} mm from the nerve{how}", d)
        elif "nerve_caution" in act and d <= s.caution_mm + s.clear_margin_mm:
            keep.add("nerve_caution")
        p = n.path_nerve_distance_mm
        if p is not None and (self.min_path is None or p < self.min_path):
            self.min_path = p
        if s.path_alarm and p is not None:
            if motion == "advancing" and p <= s.caution_mm:
                wanted["path_caution"] = (
                    f"Caution: the projected path passes {max(p, 0.0):.1f} mm from the nerve",
                    p,
                )
            elif "path_caution" in act and p <= s.caution_mm + s.clear_margin_mm:
                # Held while the needle pauses on that line: it still points at the nerve.
                keep.add("path_caution")

    def _holding(self, o: Observation, tip: tuple[float, float] | None, motion: str) -> bool:
        """The tip rests at one spot. During an injection the bolus pushes the tissue (and
        the tip, and may hide it): the spot holds until the tip has moved pass_min_mm from
        where the injection started, or is unseen for injection_end_s."""
        cur = self.inj.current
        if cur is None:
            if tip is None and self._was_stationary:
                # a resting needle the locator stops reporting (no motion cue) still rests
                # where it was: the spot holds for injection_end_s
                seen = self._last_seen_t
                return seen is not None and o.t - seen < self.s.injection_end_s
            return motion == "stationary" or (tip is not None and self._resting(o.t))
        if tip is None:
            return (
                self._last_seen_t is not None and o.t - self._last_seen_t < self.s.injection_end_s
            )
        start = cur.tip_mm or tip
        return math.dist(tip, start) < self.s.pass_min_mm

    def _resting(self, t: float) -> bool:
        """The tip rests although the locator's tip jitters (REST_* above)."""
        h = self._rest_hist
        while h and t - h[0][0] > REST_WINDOW_S:
            h.popleft()
        if len(h) < REST_MIN_SAMPLES or h[-1][0] - h[0][0] < 0.6 * REST_WINDOW_S:
            return False
        pts = [(d, lat) for _, d, lat in h]
        half = len(pts) // 2

        def med(p: list[tuple[float, float]]) -> tuple[float, float]:
            return statistics.median(x[0] for x in p), statistics.median(x[1] for x in p)

        if math.dist(med(pts[:half]), med(pts[half:])) > REST_SHIFT_MM:
            return False
        m = med(pts)
        return statistics.median(math.dist(x, m) for x in pts) <= REST_SPREAD_MM

    def _closing_speed(self, t: float, d: float) -> float:
        """mm/s the tip approaches the epineurium, over the motion window (0 when not)."""
        h = self._dist_hist
        h.append((t, d))
        # the window, but always the previous sample too: when frames are dropped for
        # detection (a loaded machine) the look-ahead matters most
        while len(h) > 2 and t - h[0][0] > self.s.motion_window_s:
            h.popleft()
        if len(h) == 2 and t - h[0][0] > 2.0:
            h.popleft()  # too old to say how fast the tip moves now
        if len(h) < 2 or h[-1][0] - h[0][0] <= 0:
            return 0.0
        return max(0.0, (h[0][1] - h[-1][1]) / (h[-1][0] - h[0][0]))

    def _lost_alarm(
        self, o: Observation, found: bool, wanted: dict[str, tuple[str, float | None]]
    ) -> None:
        s, m = self.s, self.motion
        if found or o.frozen or self._last_seen_t is None:
            return
        unseen = o.t - self._last_seen_t
        was_advancing = (
            m.last_advancing_t is not None
            and self._last_seen_t - m.last_advancing_t <= s.motion_window_s
        )
        if unseen >= s.lost_after_s and was_advancing:
            wanted["needle_lost"] = (
                f"Needle lost while advancing: tip unseen for {unseen:.1f} s",
                None,
            )

    def _on_target(self, o: Observation, found: bool, motion: str) -> tuple[bool, str]:
        s, n = self.s, o.needle
        if o.frozen:
            return False, "probe frozen"
        if not found:
            return False, "needle not seen"
        if n.cue != "shaft" or (n.shaft_visible_fraction or 0.0) < MIN_SHAFT_FRACTION:
            return False, "shaft not in plane: the tip position is uncertain"
        if self.motion.excursion_mm < s.pass_min_mm:
            return (
                False,
                "no advancing needle tracked to this tip (a still reflector is not a needle)",
            )
        if not o.calc_present or n.calcification_distance_mm is None:
            return False, "calcification not seen"
        if n.nerve_distance_mm is None:
            return False, "nerve not seen"
        if n.nerve_distance_mm <= s.caution_mm:
            return False, "too close to the nerve"
        if n.calcification_distance_mm > s.on_target_mm:
            return False, f"tip {n.calcification_distance_mm:.1f} mm from the calcification"
        return True, "on target"

    # -- end ---------------------------------------------------------------------------------
    def finish(self) -> None:
        t = self.t_last if self.t_last is not None else 0.0
        self.inj.finish(t)
        self.alarms.close(t)
