"""`session.json`: what a recording is (side, protocol, probe, clip, calibration, identity)."""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from edge_service.acquisition.frame import Roi
from edge_service.errors import InputError

FORMAT = "dgs.session/1"
SIDES = ("left", "right")


def pseudonym() -> str:
    """A random, non-identifying patient id (no name, date or hospital number in it)."""
    return "DGS-" + secrets.token_hex(6).upper()


@dataclass
class SessionMeta:
    """Everything in `session.json` except the frames and IMU samples themselves.

    spacing_mm is (dx lateral, dy depth) in mm/px, or None when uncalibrated (then the
    analysis must refuse mm). roi is the B-mode region. Identity fields (pseudonymous
    patient id, DICOM UIDs, session id) are generated; never put real patient data here.
    """

    side: str
    protocol: str
    probe: dict[str, Any] = field(default_factory=dict)
    clip: dict[str, Any] = field(default_factory=dict)
    spacing_mm: tuple[float, float] | None = None
    roi: Roi | None = None
    fps_hz: float | None = None
    source: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    session_id: str = field(default_factory=lambda: secrets.token_hex(8))
    patient_id: str = field(default_factory=pseudonym)
    study_uid: str = field(default_factory=lambda: str(generate_uid()))
    series_uid: str = field(default_factory=lambda: str(generate_uid()))
    sop_uid: str = field(default_factory=lambda: str(generate_uid()))
    started_t: float = field(default_factory=time.time)
    ended_t: float | None = None
    n_frames: int | None = None
    n_imu: int | None = None
    complete: bool = False
    format: str = FORMAT

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise InputError(f"side must be one of {SIDES}, got {self.side!r}")
        if not isinstance(self.protocol, str) or not self.protocol:
            raise InputError("protocol must be a non-empty string")
        if self.spacing_mm is not None:
            dx, dy = (float(v) for v in self.spacing_mm)
            if not (math.isfinite(dx) and math.isfinite(dy) and dx > 0 and dy > 0):
                raise InputError(f"spacing_mm must be positive, got {self.spacing_mm!r}")
            self.spacing_mm = (dx, dy)
        if isinstance(self.roi, list | tuple):
            self.roi = Roi(*(int(v) for v in self.roi))
        elif self.roi is not None:  # plain ints (numpy ints upset JSON and DICOM encoders)
            r = self.roi
            self.roi = Roi(int(r.x0), int(r.y0), int(r.x1), int(r.y1))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spacing_mm"] = None if self.spacing_mm is None else list(self.spacing_mm)
        d["roi"] = (
            None if self.roi is None else [self.roi.x0, self.roi.y0, self.roi.x1, self.roi.y1]
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionMeta:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        try:
            extra = dict(kwargs.get("extra") or {})
            # Keep fields written by a newer minor version instead of dropping them.
            extra.update({k: v for k, v in d.items() if k not in known})
            kwargs["extra"] = extra
            if kwargs.get("spacing_mm") is not None:
                kwargs["spacing_mm"] = tuple(kwargs["spacing_mm"])
            return cls(**kwargs)
        except (TypeError, ValueError, AttributeError) as exc:
            # Missing fields, or values of the wrong shape (a number where a list belongs).
            raise InputError(f"session.json has missing or malformed fields: {exc}") from exc


def json_default(o: Any) -> Any:
    """numpy scalars/arrays (common in probe/clip dicts and ROIs) as plain JSON."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write-then-rename so a crash leaves either the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(obj, indent=2, sort_keys=True, default=json_default).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_meta(path: Path) -> SessionMeta:
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{path.parent}: not a session recording (no session.json)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: corrupt session.json ({exc})") from exc
    if not isinstance(d, dict):
        raise InputError(f"{path}: session.json is not an object")
    fmt = str(d.get("format", FORMAT))
    if not fmt.startswith("dgs.session/"):
        raise InputError(f"{path}: unknown format {fmt!r}")
    if fmt.split("/")[-1] != FORMAT.split("/")[-1]:
        raise InputError(
            f"{path}: unsupported recording version {fmt!r} (this build reads {FORMAT})"
        )
    return SessionMeta.from_dict(d)
