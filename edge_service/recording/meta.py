"""`session.json`: what a recording is (side, protocol, probe, clip, calibration, identity).

Recordings written by other tools are read within design contract 2: `probe`/`clip` as a
free-text string or an object, pixel spacing as a list, a "dx,dy" string, one number or
an object, extra fields kept, optional fields missing. Anything else is refused with one
`InputError` line naming the file and the field.

Privacy: a recording never stores the path of the file or device it came from (a file
named after a patient would put the name on disk); `source` keeps only what kind of
source it was plus a random, pseudonymous `source_id`.
"""

from __future__ import annotations

import json
import math
import os
import re
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


# Keys of a source description that can hold a file path (and so a patient's name).
_PATH_KEYS = ("path", "file", "filename", "file_name", "device", "uri", "url", "dir", "directory")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _looks_like_path(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    if v.startswith("/dev/"):  # a device node names hardware, not a patient
        return False
    return "/" in v or "\\" in v or bool(re.search(r"\.[A-Za-z0-9]{2,5}$", v))


def scrub_source(source: dict[str, Any]) -> dict[str, Any]:
    """`source` without anything that can be a file path; adds a pseudonymous `source_id`.

    The id is random (not a hash of the path: a hash of a guessable file name would be
    reversible by trying names), so it tells sessions apart without naming anything.
    """
    out: dict[str, Any] = {}
    dropped = False
    for k, v in source.items():
        if isinstance(v, dict):
            out[k] = scrub_source(v)
            out[k].pop("source_id", None)
            continue
        if (k.lower() in _PATH_KEYS and isinstance(v, str) and _looks_like_path(v)) or (
            isinstance(v, str) and _looks_like_path(v) and ("/" in v or "\\" in v)
        ):
            dropped = True
            continue
        out[k] = v
    if dropped or "source_id" not in out:
        out.setdefault("source_id", "src-" + secrets.token_hex(6))
    return out


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
    # prefix=None: 2.25.<uuid> UIDs, never pydicom's shared example root; a site root comes
    # from [dicom] uid_root (edge_service/integration/session.py attach_order).
    study_uid: str = field(default_factory=lambda: str(generate_uid(prefix=None)))
    series_uid: str = field(default_factory=lambda: str(generate_uid(prefix=None)))
    sop_uid: str = field(default_factory=lambda: str(generate_uid(prefix=None)))
    started_t: float = field(default_factory=time.time)
    ended_t: float | None = None
    n_frames: int | None = None
    n_imu: int | None = None
    complete: bool = False
    format: str = FORMAT

    def __post_init__(self) -> None:
        self.probe = _as_object(self.probe, "probe")
        self.clip = _as_object(self.clip, "clip")
        self.source = scrub_source(_as_object(self.source, "source"))
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
        # Again here: `source` may have been changed after construction.
        self.source = scrub_source(dict(self.source))
        d = asdict(self)
        d["spacing_mm"] = None if self.spacing_mm is None else list(self.spacing_mm)
        d["roi"] = (
            None if self.roi is None else [self.roi.x0, self.roi.y0, self.roi.x1, self.roi.y1]
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "session.json") -> SessionMeta:
        """Build from a parsed session.json (ours or another tool's, within contract 2).

        Raises InputError "<where>: field 'X': what is wrong" for anything outside it.
        """
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = kwargs.get("extra")
        extra = dict(extra) if isinstance(extra, dict) else {}
        # Keep fields written by a newer minor version (or another tool) instead of dropping them.
        extra.update({k: v for k, v in d.items() if k not in known})
        kwargs["extra"] = extra
        try:
            kwargs.update(_normalise(kwargs))
            return cls(**kwargs)
        except _FieldError as exc:
            raise InputError(f"{where}: field {exc.field!r}: {exc.problem}") from exc
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            # Missing fields, or values of the wrong shape (a number where a list belongs).
            raise InputError(f"{where}: missing or unusable fields ({exc})") from exc


class _FieldError(ValueError):
    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


def _as_object(v: Any, name: str) -> dict[str, Any]:
    """probe/clip/source: an object as is, a free-text string as {"description": text}."""
    if v is None:
        return {}
    if isinstance(v, dict):
        return dict(v)
    if isinstance(v, str):
        return {"description": v} if v.strip() else {}
    raise InputError(f"field {name!r}: expected an object or a text, got {type(v).__name__}")


def parse_spacing(v: Any, name: str = "spacing_mm") -> tuple[float, float] | None:
    """Pixel spacing in mm/px from the forms other tools write.

    [dx, dy], "dx,dy" / "dx x dy" / "dx dy", one number (square pixels), or an object
    {"dx": .., "dy": ..} / {"x": .., "y": ..} / {"col": .., "row": ..}. Both values must be
    finite and positive; None / null means uncalibrated.
    """
    if v is None:
        return None
    vals: list[Any]
    if isinstance(v, bool):
        raise _FieldError(name, f"expected two numbers in mm/px, got {v!r}")
    if isinstance(v, int | float):
        vals = [v, v]
    elif isinstance(v, str):
        parts = [p for p in re.split(r"[\s,;xX\\]+", v.strip()) if p]
        vals = parts * 2 if len(parts) == 1 else parts
    elif isinstance(v, list | tuple):
        vals = list(v)
    elif isinstance(v, dict):
        low = {str(k).lower(): x for k, x in v.items()}
        for kx, ky in (("dx", "dy"), ("x", "y"), ("col", "row"), ("column", "row")):
            if kx in low and ky in low:
                vals = [low[kx], low[ky]]
                break
        else:
            raise _FieldError(name, f"expected keys dx and dy, got {sorted(v)!r}")
    else:
        raise _FieldError(name, f"expected two numbers in mm/px, got {type(v).__name__}")
    if len(vals) != 2:
        raise _FieldError(name, f"expected two numbers (dx, dy) in mm/px, got {len(vals)}")
    try:
        dx, dy = (float(x) for x in vals)
    except (TypeError, ValueError) as exc:
        raise _FieldError(name, f"not numbers: {v!r}") from exc
    if not (math.isfinite(dx) and math.isfinite(dy) and dx > 0 and dy > 0):
        raise _FieldError(name, f"must be finite and positive, got {v!r}")
    return (dx, dy)


def _number(v: Any, name: str, *, optional: bool = True) -> float | None:
    if v is None and optional:
        return None
    if isinstance(v, bool):
        raise _FieldError(name, f"expected a number, got {v!r}")
    if isinstance(v, str):
        try:
            from datetime import datetime

            return datetime.fromisoformat(v.strip().replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    try:
        f = float(v)
    except (TypeError, ValueError) as exc:
        raise _FieldError(name, f"expected a number, got {v!r}") from exc
    if not math.isfinite(f):
        raise _FieldError(name, f"must be finite, got {v!r}")
    return f


def _normalise(k: dict[str, Any]) -> dict[str, Any]:
    """Coerce the known fields of a foreign session.json into SessionMeta's types."""
    out: dict[str, Any] = {}
    if "side" not in k:
        raise _FieldError("side", "missing (left or right)")
    side = k["side"]
    if not isinstance(side, str):
        raise _FieldError("side", f"expected left or right, got {side!r}")
    side = {"l": "left", "r": "right"}.get(side.strip().lower(), side.strip().lower())
    if side not in SIDES:
        raise _FieldError("side", f"expected left or right, got {k['side']!r}")
    out["side"] = side
    proto = k.get("protocol")
    if proto is None or (isinstance(proto, str) and not proto.strip()):
        raise _FieldError("protocol", "missing (fair, piriformis, neutral or the tool's own name)")
    if not isinstance(proto, str):
        raise _FieldError("protocol", f"expected a text, got {type(proto).__name__}")
    out["protocol"] = proto.strip()
    for name in ("probe", "clip", "source"):
        if name in k:
            try:
                out[name] = _as_object(k[name], name)
            except InputError as exc:
                raise _FieldError(name, "expected an object or a text") from exc
    if "spacing_mm" in k:
        out["spacing_mm"] = parse_spacing(k["spacing_mm"])
    if k.get("roi") is not None:
        r = k["roi"]
        try:
            vals = [int(x) for x in (r.values() if isinstance(r, dict) else r)]
        except (TypeError, ValueError) as exc:
            raise _FieldError("roi", f"expected [x0, y0, x1, y1] pixels, got {r!r}") from exc
        if len(vals) != 4 or vals[2] <= vals[0] or vals[3] <= vals[1] or min(vals) < 0:
            raise _FieldError("roi", f"expected [x0, y0, x1, y1] pixels, got {r!r}")
        out["roi"] = vals
    for name in ("fps_hz", "ended_t"):
        if name in k:
            out[name] = _number(k[name], name)
    if "started_t" in k:
        st = _number(k["started_t"], "started_t")
        if st is None:
            out["started_t"] = time.time()
        else:
            out["started_t"] = st
    for name in ("n_frames", "n_imu"):
        if k.get(name) is not None:
            f = _number(k[name], name)
            if f is None or f < 0 or f != int(f):
                raise _FieldError(name, f"expected a count, got {k[name]!r}")
            out[name] = int(f)
    if "complete" in k:
        out["complete"] = bool(k["complete"])
    if "session_id" in k:
        sid = k["session_id"]
        if sid is None:
            out.pop("session_id", None)
            k.pop("session_id")
        else:
            out["session_id"] = safe_id(str(sid))
    for name in ("patient_id", "study_uid", "series_uid", "sop_uid"):
        if name in k:
            if k[name] is None:
                k.pop(name)
            else:
                out[name] = str(k[name])
    return out


def safe_id(text: str) -> str:
    """A session id usable in MQTT topics and the result schema (other tools use any text)."""
    if _ID_RE.fullmatch(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:64]
    return cleaned if cleaned and cleaned[0].isalnum() else secrets.token_hex(8)


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
    fmt = d.get("format", FORMAT)
    # Other tools may leave the format out (contract 2 names the content, not the tag).
    if fmt is None:
        fmt = FORMAT
    if not isinstance(fmt, str) or not fmt.startswith("dgs.session/"):
        raise InputError(f"{path}: field 'format': unknown format {fmt!r}")
    # Minor versions (1.x) only add fields: read them; another major is another contract.
    if fmt.split("/")[-1].split(".")[0] != FORMAT.split("/")[-1]:
        raise InputError(
            f"{path}: field 'format': unsupported recording version {fmt!r} (this build reads {FORMAT})"
        )
    d = dict(d)
    d["format"] = FORMAT
    return SessionMeta.from_dict(d, where=str(path))
