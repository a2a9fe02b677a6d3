"""`dgs-edge detect FILE [--spacing DX,DY] [--json]`: per-frame detections with the view score.

Reads any frame source `dgs-edge inspect` reads (DICOM single/multi-frame, video, image
file or folder, session recording). With --json: one JSON object per line and frame (the
shape is a contract, docs/model.md "dgs-edge detect"). Without a pixel spacing (from the
file or --spacing) structures are still found but every mm value is null with
"measure_reason": "no_spacing".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from typing import Any

from edge_service.errors import InputError

# A B-mode pixel is between ~0.01 mm (high-frequency, small field) and ~2 mm (a 300 mm deep
# image in 150 px); anything outside is a typo (cm, um, px/mm) and is refused.
SPACING_RANGE_MM = (0.01, 2.0)
# A file's own calibration and --spacing agree when within 1 % (rounding in exports).
SPACING_AGREE_REL = 0.01


def parse_spacing(text: str) -> tuple[float, float]:
    """'DX,DY' (or one value for both) in mm/px: finite, positive and plausible."""
    try:
        parts = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"spacing must be DX,DY in mm/px, got {text!r}") from exc
    if len(parts) == 1:
        parts = parts * 2
    lo, hi = SPACING_RANGE_MM
    if len(parts) != 2 or not all(math.isfinite(v) and lo <= v <= hi for v in parts):
        raise argparse.ArgumentTypeError(
            f"spacing must be two finite numbers DX,DY in mm/px within {lo}..{hi}, got {text!r}"
        )
    return (parts[0], parts[1])


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "detect",
        help="per-frame nerve/calcification detections with the view (OOD) score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", metavar="FILE")
    p.add_argument(
        "--spacing",
        type=parse_spacing,
        metavar="DX,DY",
        help="mm/px when the source has no calibration of its own (must agree with it if it has)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line and frame")
    p.add_argument(
        "--precision", choices=("fp32", "int8"), default="fp32", help="shipped model to use"
    )
    p.add_argument(
        "--needle",
        choices=("learned", "classical"),
        default="learned",
        help="needle locator (learned: models/needle.onnx; classical: ridge filter + line fit)",
    )
    p.set_defaults(func=run)


def frame_record(
    det: Any, spacing: tuple[float, float] | None, origin: str | None, needle: Any = None
) -> dict[str, Any]:
    """The JSON line of one frame (the contract in docs/model.md; `needle` in docs/needle.md)."""
    from edge_service.needle.types import NeedleResult

    d = det.to_dict()
    return {
        "needle": (needle if needle is not None else NeedleResult()).to_dict(),
        "frame": det.index,
        "t": det.t,
        "view_ok": det.view_ok,
        "view_score": d["view_score"],
        "view_reason": det.view_reason,
        "spacing_mm": None if spacing is None else [float(spacing[0]), float(spacing[1])],
        "spacing_origin": origin,
        "measure_reason": det.measure_reason,
        "nerve": d["nerve"],
        "calcification": d["calcification"],
        "model": det.model,
    }


def _text_line(rec: dict[str, Any]) -> str:
    head = f"frame {rec['frame']:>4}  view {'ok ' if rec['view_ok'] else 'NO '}"
    score = rec["view_score"]
    head += f" score {score:.4f}" if score is not None else " score -"
    if not rec["view_ok"]:
        return f"{head}  ({rec['view_reason']}: no measurement)"
    n, c = rec["nerve"], rec["calcification"]
    parts = []
    if n["found"]:
        if n["ap_mm"] is None:
            parts.append("nerve found (no mm: no spacing)")
        else:
            parts.append(
                f"nerve AP {n['ap_mm']:.2f} W {n['width_mm']:.2f} mm CSA {n['csa_mm2']:.1f} mm2"
            )
    else:
        parts.append("no nerve")
    if c["present"]:
        if c["long_axis_mm"] is None:
            parts.append("calcification (no mm: no spacing)")
        else:
            parts.append(f"calcification {c['long_axis_mm']:.1f} x {c['thickness_mm']:.1f} mm")
    nd = rec.get("needle") or {}
    if nd.get("found"):
        r, c2 = nd["tip_px"]
        txt = f"needle tip ({r:.0f}, {c2:.0f}) px [{nd['cue']}]"
        if nd.get("nerve_distance_mm") is not None:
            txt += f" {nd['nerve_distance_mm']:.1f} mm from the nerve"
        parts.append(txt)
    return f"{head}  " + ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    from edge_service.acquisition.factory import open_path
    from edge_service.detector import Detector, DetectorSettings

    # Open once without the user's spacing to learn the file's own calibration: a user value
    # that contradicts it is an error, not silently ignored.
    with open_path(args.path) as probe:
        own = probe.info.spacing_mm
        own_origin = probe.info.spacing_origin
    spacing = own
    origin = own_origin
    if args.spacing is not None:
        if own is not None:
            if any(
                abs(u - f) > SPACING_AGREE_REL * f for u, f in zip(args.spacing, own, strict=True)
            ):
                raise InputError(
                    f"--spacing {args.spacing[0]:g},{args.spacing[1]:g} contradicts the file's "
                    f"own calibration {own[0]:.4g},{own[1]:.4g} mm/px ({own_origin})"
                )
        else:
            spacing, origin = args.spacing, "user"
    from edge_service.needle.guide import NeedleGuide, make_locator

    det = Detector.load(settings=DetectorSettings(precision=args.precision))
    guide = NeedleGuide(make_locator(args.needle))
    n = rejected = nerves = calcs = needles = 0
    with open_path(args.path) as src:
        for frame in src.frames():
            if frame.spacing_mm is None and spacing is not None:
                frame = dataclasses.replace(frame, spacing_mm=spacing)
            d = det.detect(frame, require_spacing=False)
            nd = guide.analyse(frame, d)
            needles += nd.found
            rec = frame_record(d, frame.spacing_mm, origin if frame.spacing_mm else None, nd)
            n += 1
            rejected += not d.view_ok
            nerves += d.nerve.found
            calcs += d.calcification.present
            print(json.dumps(rec, sort_keys=True) if args.json else _text_line(rec), flush=True)
    if n == 0:
        raise InputError(f"{args.path}: no frames")
    if not args.json:
        print(
            f"{n} frames: {rejected} not a deep-gluteal view (no measurement), "
            f"nerve in {nerves}, calcification in {calcs}, needle in {needles}"
            + ("" if spacing else "; no pixel spacing: mm values omitted (give --spacing DX,DY)"),
            file=sys.stderr,
        )
    return 0
