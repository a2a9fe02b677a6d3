"""Preflight: every check `dgs-edge run` needs before it acquires, as one list of problems.

`dgs-edge run --validate-config` prints them (one line each, naming the config key) and
`run` refuses to start on the first batch of them, so a config that validates is a config
that runs: files readable and well-formed (secrets, CA, client certificate, model), ports in
range, directories creatable and writable, calibration finite. Nothing here prints or exits.

`load_detector` and `analysis_for` build the detector and the session analysis from the
config, so every `[detector]` and `[analysis]` key reaches the code that uses it.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge_service.config import AppConfig
from edge_service.errors import ConfigError, DgsError

log = logging.getLogger(__name__)

#: Virtual filesystems: writing recordings there is never what the user meant.
_VIRTUAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


@dataclass(frozen=True)
class Problem:
    """One failed check: the config key it concerns and what is wrong, in one line."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def check_directory(path: Path) -> str | None:
    """Why `path` cannot hold our files (None when it can). Creates nothing: an existing
    directory is probed with a temporary file, a missing one by its nearest existing
    ancestor (which `run` will create it under)."""
    try:
        p = Path(os.path.abspath(path))
    except (OSError, ValueError) as exc:
        return f"{path}: not a usable path ({exc})"
    for root in _VIRTUAL_ROOTS:
        if p == root or root in p.parents:
            return f"{p}: is under {root}, a virtual filesystem"
    probe = p
    while not probe.exists():
        if probe.is_symlink():
            return f"{p}: {probe} is a dangling symlink"
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if not probe.is_dir():
        what = "is a regular file" if probe.is_file() else "is not a directory"
        where = "" if probe == p else f" ({probe} {what})"
        return f"{p}: cannot be a directory{where}" if where else f"{p}: {what}"
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return f"{p}: {probe} is on a read-only filesystem"
    except OSError as exc:
        return f"{p}: cannot stat {probe} ({exc.strerror})"
    try:
        # A real write, not os.access: root ignores permission bits but not immutable
        # directories, read-only bind mounts or full quotas.
        fd, tmp = tempfile.mkstemp(prefix=".dgs-preflight-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return f"{p}: {probe} is not writable ({exc.strerror})"
    return None


def check_secrets_file(path: Path) -> str | None:
    """Why the MQTT secrets file is unusable (None when fine); same rules as credentials."""
    from edge_service.mqtt.credentials import read_secrets_file

    try:
        read_secrets_file(path)
    except ConfigError as exc:
        return str(exc)
    return None


def _check_tls(cfg: AppConfig) -> list[Problem]:
    t = cfg.mqtt.tls
    out: list[Problem] = []
    if t is None:
        return out
    ctx: ssl.SSLContext | None = None
    if t.ca_file is not None:
        key = "mqtt.tls.ca_file"
        if not t.ca_file.is_file():
            out.append(Problem(key, f"{t.ca_file}: no such file"))
        else:
            try:
                ctx = ssl.create_default_context(cafile=str(t.ca_file))
                if not ctx.get_ca_certs():
                    out.append(Problem(key, f"{t.ca_file}: holds no CA certificate"))
            except (ssl.SSLError, OSError, ValueError) as exc:
                out.append(Problem(key, f"{t.ca_file}: not a PEM CA bundle ({exc})"))
    if t.key_file is not None and t.cert_file is None:
        out.append(Problem("mqtt.tls.key_file", "given without mqtt.tls.cert_file"))
    if t.cert_file is not None:
        key = "mqtt.tls.cert_file"
        missing = [f for f in (t.cert_file, t.key_file) if f is not None and not f.is_file()]
        if missing:
            out.append(Problem(key, f"{missing[0]}: no such file"))
        else:
            try:
                c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                c.load_cert_chain(str(t.cert_file), None if t.key_file is None else str(t.key_file))
            except (ssl.SSLError, OSError, ValueError) as exc:
                out.append(Problem(key, f"{t.cert_file}: certificate and key do not load ({exc})"))
    return out


def _check_port(cfg: AppConfig) -> list[Problem]:
    try:
        port = urlsplit(cfg.mqtt.url).port
    except ValueError as exc:
        return [Problem("mqtt.url", f"bad port ({exc})")]
    if port is not None and not 1 <= port <= 65535:
        return [Problem("mqtt.url", f"port {port} outside 1..65535")]
    return []


def _check_model(cfg: AppConfig) -> list[Problem]:
    try:
        load_detector(cfg)
    except DgsError as exc:
        return [Problem("detector.model_path", str(exc))]
    return []


#: `[source]` keys and the source kinds that read them; a key set for another kind would be
#: silently ignored by `run`, so it is a problem instead.
SOURCE_KEYS_BY_KIND: dict[str, tuple[str, ...]] = {
    "device": ("uvc", "dicom", "video", "folder", "recording"),
    "crop_px": ("uvc", "video", "folder"),
    "depth_mm": ("uvc",),
    "width_mm": ("uvc",),
    "spacing_mm": ("uvc", "dicom", "video", "folder"),
    "fps_hz": ("uvc", "folder", "phantom"),
    "capture_size_px": ("uvc",),
    "stall_timeout_s": ("uvc",),
    "reconnect_timeout_s": ("uvc",),
    "freeze_mad_threshold": ("uvc",),
    "phantom_manoeuvre": ("phantom",),
    "phantom_seed": ("phantom",),
}


def _unused_keys(cfg: AppConfig) -> list[Problem]:
    """Keys set in the file that `run` would not read with this configuration."""
    out = []
    kind = cfg.source.kind
    for key in sorted(cfg.source.model_fields_set - {"kind"}):
        kinds = SOURCE_KEYS_BY_KIND.get(key)
        if kinds is not None and kind not in kinds:
            out.append(
                Problem(f"source.{key}", f"is not used by kind {kind!r} (only {', '.join(kinds)})")
            )
    if not cfg.session.use_clip and cfg.clip.model_fields_set:
        out.append(Problem("clip", "settings given but [session] use_clip = false"))
    return out


def preflight(cfg: AppConfig, *, check_model: bool = True) -> list[Problem]:
    """Every check `run` would need before acquiring; an empty list means it can start."""
    out: list[Problem] = []
    s = cfg.session
    for key, d in (
        ("session.recordings_dir", s.recordings_dir),
        ("session.state_dir", s.state_dir),
    ):
        why = check_directory(d)
        if why is not None:
            out.append(Problem(key, why))
    from edge_service.mqtt.credentials import ENV_FILE, ENV_USER

    if not os.environ.get(ENV_USER):
        secrets = cfg.mqtt.secrets_file
        key = "mqtt.secrets_file"
        if secrets is None and os.environ.get(ENV_FILE):
            secrets, key = Path(os.environ[ENV_FILE]), f"{ENV_FILE} (environment)"
        if secrets is not None:
            why = check_secrets_file(secrets)
            if why is not None:
                out.append(Problem(key, why))
    out += _check_tls(cfg)
    out += _check_port(cfg)
    out += _unused_keys(cfg)
    from edge_service.integration.fhirsettings import fhir_problems

    out += [Problem(k, m) for k, m in fhir_problems(cfg.fhir)]
    src = cfg.source
    if src.kind in ("dicom", "video", "folder", "recording") and not Path(src.device).exists():
        out.append(Problem("source.device", f"{src.device}: no such file or directory"))
    if check_model:
        out += _check_model(cfg)
    return out


def require_preflight(cfg: AppConfig, *, check_model: bool = True) -> None:
    """`preflight` as one ConfigError line (all problems, '; '-joined) for `run`."""
    problems = preflight(cfg, check_model=check_model)
    if problems:
        raise ConfigError("; ".join(str(p) for p in problems))


def load_detector(cfg: AppConfig) -> Any:
    """The detector with every `[detector]` key applied (model_path or precision, threads,
    thresholds, minimum areas, shadow ratio)."""
    from edge_service.detector import Detector  # type: ignore[attr-defined]

    return Detector.load(settings=cfg.detector)


def analysis_for(cfg: AppConfig) -> Callable[[Path, Any], dict[str, Any]]:
    """`run_session(analyze=...)`: session analysis with the config's `[analysis]` keys."""
    settings = cfg.analysis

    def analyze(out_dir: Path, detector: Any) -> dict[str, Any]:
        from edge_service.analysis.session import analyze_session

        return analyze_session(out_dir, detector=detector, settings=settings)

    return analyze


__all__ = [
    "Problem",
    "analysis_for",
    "check_directory",
    "check_secrets_file",
    "load_detector",
    "preflight",
    "require_preflight",
]
