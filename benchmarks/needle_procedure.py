"""Parts of the needle benchmark (bench_needle.py) about whole procedures and error sources:

- injections found by the procedure logic (edge_service.procedure, the same ProcedureAnalyzer
  as the live session) with the phantom's true tip and with the shipped learned locator
  (as the appliance runs it: the view gate applies; and with the view gate not applied to
  the needle, to tell the locator's share from the gate's), matched to the phantom's
  aliquots; the estimated/true volume of each found injection;
- false injections / on-target / nerve alarms in the needle-free and reflector sessions;
- the tip error broken down by what the frame shows (entry, faint shaft, bolus, redirect,
  near the epineurium).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.needle.learned import LearnedLocator
from edge_service.needle.types import NeedleResult
from edge_service.procedure.analyzer import ProcedureAnalyzer

MATCH_BEFORE_S = 0.5  # an injection found this much before an aliquot's start still matches
MATCH_AFTER_S = 3.0  # ... and this much after it
ENTRY_S = 3.0  # the first seconds of a pass (the shaft enters from the skin)
BOLUS_TAIL_S = 2.0  # a bolus disturbs the image for its duration + this
REDIRECT_DEG_S = 0.5  # the true shaft angle changes faster than this: redirecting
NEAR_NERVE_S = 3.0  # intraneural frames this close to the crossing: at the epineurium


class TruthTip:
    """The phantom's true tip as a locator (the procedure logic without locator error)."""

    name = "phantom-truth"

    def __init__(self) -> None:
        self.truth: dict[str, Any] = {}

    def reset(self) -> None:
        pass

    def locate(self, frame: Frame) -> NeedleResult:
        n = self.truth.get("needle") or {}
        if not n.get("present") or not n.get("tip_in_image") or n.get("tip_visibility", 0) < 0.2:
            return NeedleResult()
        vis = float(n.get("visible_fraction", 0.0))
        dr, dc = n["direction"]
        angle = math.degrees(math.atan2(dr, abs(dc))) * (1 if dc >= 0 else -1)
        start = n.get("shaft_start_px")
        return NeedleResult(
            found=True,
            tip_px=(n["tip_px"][0], n["tip_px"][1]),
            angle_deg=angle,
            shaft_start_px=None if start is None else (start[0], start[1]),
            shaft_visible_fraction=vis,
            confidence=1.0,
            cue="shaft" if vis >= 0.3 else "motion",
        )


class FrameDet:
    """A detector that answers with the detection already made for this frame (the nerve
    detector runs once per frame for every analyzer). no_gate: the view gate's verdict is
    not applied (the row that separates the locator from the gate)."""

    def __init__(self, no_gate: bool = False) -> None:
        self.no_gate = no_gate
        self.det: Any = None

    def reset(self) -> None:
        pass

    def detect(self, frame: Frame, **_: Any) -> Any:
        if self.no_gate and not self.det.view_ok:
            return dataclasses.replace(self.det, view_ok=True)
        return self.det


VARIANTS = {
    "truth": "phantom's true tip",
    "learned": "learned locator (appliance: view gate applies)",
    "learned_nogate": "learned locator, view gate not applied to the needle",
}


@dataclass
class ProcTally:
    aliquots: int = 0
    found: int = 0
    extra: int = 0  # injections that match no aliquot
    delays: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # estimated / true volume
    on_target: int = 0
    sessions: int = 0


@dataclass
class NegTally:
    sessions: int = 0
    minutes: float = 0.0
    injections: int = 0
    on_target_frames: int = 0
    nerve_alarms: int = 0


class SessionProcedure:
    """The analyzers of one session, fed frame by frame alongside the locator benchmark."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        names = ["truth", "learned", "learned_nogate"] if kind == "procedure" else ["learned"]
        self.dets = {n: FrameDet(no_gate=n == "learned_nogate") for n in names}
        self.truth_loc = TruthTip()
        self.an: dict[str, ProcedureAnalyzer] = {}
        for n in names:
            loc: Any = self.truth_loc if n == "truth" else LearnedLocator()
            self.an[n] = ProcedureAnalyzer(self.dets[n], loc, session={"session_id": n})
        self.on_target = dict.fromkeys(names, 0)

    def add(self, frame: Frame, det: Any, truth: dict[str, Any]) -> None:
        self.truth_loc.truth = truth
        for n, an in self.an.items():
            self.dets[n].det = det
            st, _, _ = an.add_frame(frame)
            self.on_target[n] += int(st.on_target)

    def finish(
        self,
        aliquots: list[tuple[float, float]],
        proc: dict[str, ProcTally],
        neg: dict[str, NegTally],
        minutes: float,
    ) -> None:
        """aliquots: (t_start, volume_ml) of the session's true injections."""
        for n, an in self.an.items():
            res = an.finish()
            injs = res["injections"]
            if self.kind == "procedure":
                pt = proc.setdefault(n, ProcTally())
                pt.sessions += 1
                pt.aliquots += len(aliquots)
                used: set[int] = set()
                for t0, vol in aliquots:
                    k = next(
                        (
                            k
                            for k, i in enumerate(injs)
                            if k not in used
                            and t0 - MATCH_BEFORE_S <= i["t_start"] <= t0 + MATCH_AFTER_S
                        ),
                        None,
                    )
                    if k is None:
                        continue
                    used.add(k)
                    pt.found += 1
                    pt.delays.append(injs[k]["t_start"] - t0)
                    pt.ratios.append(float(injs[k]["volume_ml_est"] or 0.0) / vol)
                    pt.on_target += int(bool(injs[k]["on_target"]))
                pt.extra += len(injs) - len(used)
            else:
                nt = neg.setdefault(n, NegTally())
                nt.sessions += 1
                nt.minutes += minutes
                nt.injections += len(injs)
                nt.on_target_frames += self.on_target[n]
                nt.nerve_alarms += sum(
                    v
                    for k, v in res["alarm_counts"].items()
                    if k in ("nerve_stop", "nerve_caution", "spread_at_nerve")
                )


# -- tip error by cause -------------------------------------------------------------------
CATEGORIES = (
    "entry (first 3 s after insertion)",
    "faint shaft",
    "during a bolus",
    "redirecting",
    "at the epineurium (intraneural, 3 s around the crossing)",
    "other (visible shaft, steady)",
)


def category(
    kind: str, truth: dict[str, Any], t: float, info: dict[str, Any], prev_angle: float | None
) -> str:
    n = truth["needle"]
    t_ins = info.get("t_insert")
    if t_ins is not None and t - t_ins < ENTRY_S:
        return CATEGORIES[0]
    if n["visible_fraction"] < 0.5:
        return CATEGORIES[1]
    for b in truth.get("boluses", []):
        dur = info.get("bolus_durations", {}).get(b["index"], 0.0)
        if b["t_start"] is not None and t - b["t_start"] <= dur + BOLUS_TAIL_S:
            return CATEGORIES[2]
    fps = info.get("fps", 8.0)
    if prev_angle is not None and abs(n["angle_from_skin_deg"] - prev_angle) * fps > REDIRECT_DEG_S:
        return CATEGORIES[3]
    tc = info.get("epineurium_cross_t")
    if kind == "intraneural" and tc is not None and abs(t - tc) <= NEAR_NERVE_S:
        return CATEGORIES[4]
    return CATEGORIES[5]


def _q(v: list[float], q: float) -> str:
    return "n/a" if not v else f"{float(np.percentile(v, q)):.2f}"


def breakdown_rows(errs: dict[str, dict[str, list[float]]]) -> list[str]:
    """errs[locator][category] -> tip errors (mm)."""
    lines = [
        "| frames | learned: n | median | p95 | > 2 mm | classical: n | median | p95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total = sum(len(v) for v in errs.get("learned", {}).values())
    for c in CATEGORIES:
        lv = errs.get("learned", {}).get(c, [])
        cv = errs.get("classical", {}).get(c, [])
        big = sum(1 for e in lv if e > 2.0)
        lines.append(
            f"| {c} | {len(lv)} | {_q(lv, 50)} | {_q(lv, 95)} | {big} "
            f"({100.0 * big / total if total else 0:.1f} % of all) | {len(cv)} | {_q(cv, 50)} "
            f"| {_q(cv, 95)} |"
        )
    return lines


def procedure_rows(proc: dict[str, ProcTally], neg: dict[str, NegTally]) -> list[str]:
    lines = [
        "| needle from | aliquots found | found within (s) median / max | extra injections "
        "| volume estimated / true: median (range) | on target |",
        "|---|---|---|---|---|---|",
    ]
    for n, label in VARIANTS.items():
        pt = proc.get(n)
        if pt is None:
            continue
        d = pt.delays
        r = pt.ratios
        lines.append(
            f"| {label} | {pt.found}/{pt.aliquots} "
            f"| {'n/a' if not d else f'{statistics.median(d):.1f} / {max(d):.1f}'} "
            f"| {pt.extra} "
            f"| {'n/a' if not r else f'{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})'} "
            f"| {pt.on_target}/{pt.found} |"
        )
    nt = neg.get("learned")
    if nt is not None:
        lines += [
            "",
            f"Needle-free and reflector sessions through the same procedure logic (learned "
            f"locator, appliance): {nt.sessions} sessions, {nt.minutes:.1f} min: "
            f"{nt.injections} false injections, {nt.on_target_frames} frames 'on target', "
            f"{nt.nerve_alarms} nerve/spread alarms.",
        ]
    return lines
