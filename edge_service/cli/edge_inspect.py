"""`dgs-edge inspect FILE_OR_DIR [--json]`: what a source holds before analysing it."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _spacing(text: str) -> tuple[float, float]:
    # One --spacing rule for every command: finite, positive and plausible for ultrasound.
    from edge_service.cli.edge_detect import parse_spacing

    return parse_spacing(text)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inspect",
        help="show frames, size, spacing, region, frame rate, transfer syntax, vendor",
        description="Inspect a DICOM file, a video, an image folder or a session recording.",
    )
    p.add_argument("path", metavar="FILE_OR_DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--spacing",
        type=_spacing,
        metavar="DX,DY",
        help="mm/px to use when the source has no calibration of its own (one that "
        "contradicts the file's own calibration is an error, exit 2)",
    )
    p.add_argument(
        "--spacing-override",
        action="store_true",
        help="use --spacing even where it contradicts the file's own calibration",
    )
    p.add_argument("--count", action="store_true", help="decode every frame to count them exactly")
    p.set_defaults(func=run)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return " x ".join(_fmt(x) for x in v)
    return str(v)


def run(args: argparse.Namespace) -> int:
    from edge_service.acquisition.factory import open_path
    from edge_service.errors import InputError

    if args.spacing_override and args.spacing is None:
        raise InputError("--spacing-override needs --spacing DX,DY")
    with open_path(
        args.path, spacing_mm=args.spacing, spacing_override=args.spacing_override
    ) as src:
        info: dict[str, Any] = src.info.to_dict()
        if args.count:
            info["n_frames"] = sum(1 for _ in src.frames())
    spacing = info["spacing_mm"]
    info["mm_measurements"] = spacing is not None
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
        return 0
    roi = info["roi"]
    rows = [
        ("source", info["kind"]),
        ("path", info["path"]),
        ("frames", info["n_frames"]),
        ("size", f"{info['width']} x {info['height']} px"),
        (
            "spacing",
            f"{_fmt(spacing)} mm/px ({info['spacing_origin']})"
            if spacing
            else "none - mm measurements refused (give --spacing DX,DY)",
        ),
        ("region", f"x {roi[0]}..{roi[2]}, y {roi[1]}..{roi[3]}" if roi else "whole frame"),
        ("frame rate", f"{_fmt(info['fps_hz'])} fps" if info["fps_hz"] else "-"),
        ("transfer syntax", info["transfer_syntax"]),
        ("photometric", info["photometric"]),
        ("vendor", " / ".join(v for v in (info["vendor"], info["model"]) if v) or None),
    ]
    rows += [(k.replace("_", " "), v) for k, v in sorted(info["extra"].items())]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {_fmt(v)}")
    return 0
