"""One persistent MicroPython (WebAssembly port under Node) acting as a board's CPU and flash.

`MpNode` starts `node` with a small ES-module driver that loads the pinned MicroPython
WebAssembly port (tools/mpwasm) and answers JSON lines on stdin/stdout, one request at a
time. Requests: `exec` (run a code block in the persistent `__main__`, capture its output
byte for byte, return the exception text), `reset` (a new interpreter instance, i.e. a fresh
Python heap, with the filesystem copied over, as flash survives a reset on a real board),
`run_file` (boot.py/main.py after a reset), `read`/`write`/`list` (the filesystem, for test
assertions and seeding, without touching the interpreter state).

The driver gives the interpreter a `machine` module like a board without an IMU wired: its
`reset()`/`soft_reset()` end the running code with SystemExit and tell the board which reset
was asked for (hard: the REPL side reboots the interpreter and runs boot.py and main.py);
I2C transfers fail with EIO as on an empty bus.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_service.errors import DeviceError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
MPWASM_MJS = (
    REPO / "tools/mpwasm/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"
)

# `machine` for the virtual board. A class stands in for the module because the pyscript
# build cannot create module objects from Python; `from machine import Pin` works alike.
MACHINE_PY = r"""
import _board
def reset():
    _board.reset(1)
    raise SystemExit
def soft_reset():
    raise SystemExit
def unique_id():
    return bytes(_board.unique_id())
def freq(*a):
    return 125000000
def idle():
    pass
class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    def __init__(self, n, *a, **k):
        self.n = n
        self._v = 0
    def value(self, *v):
        if v:
            self._v = v[0]
        return self._v
class I2C:
    # Nothing wired: every transfer fails like a bus with no device answering.
    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=None):
        self.id = id
    def scan(self):
        return []
    def _nodev(self, *a, **k):
        raise OSError(5)  # EIO
    readfrom_mem_into = writeto_mem = readfrom_mem = readfrom = writeto = _nodev
class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
    def feed(self):
        pass
"""

# The board's flash: the port's POSIX filesystem remounted at "/" through a Python VFS that
# raises OSError with MicroPython's errno numbers. The WebAssembly port raises Emscripten's
# (ENOENT is 44 there, 2 in its own `errno` module and on every real board), which breaks
# `e.errno == errno.ENOENT` checks and mpremote's error mapping (`fs cp` fails on a missing
# file instead of creating it).
FLASH_PY = """
import vfs
class Flash:
    def __init__(self, errmap):
        self._v = vfs.VfsPosix('/')
        self._e = errmap
    def _do(self, name, *args):
        try:
            return getattr(self._v, name)(*args)
        except OSError as e:
            raise OSError(self._e.get(e.errno, e.errno))
    def mount(self, readonly, mkfs):
        pass
    def umount(self):
        pass
    def open(self, path, mode):
        return self._do('open', path, mode)
    def ilistdir(self, path):
        ents = list(self._do('ilistdir', path))
        if path in ('', '/'):
            # The port's own /dev, /proc, /tmp and /home are not part of the board's flash.
            ents = [e for e in ents if e[0] not in ('dev', 'proc', 'tmp', 'home')]
        # (name, type, inode, size) as littlefs/FAT on a real board; VfsPosix gives no size.
        base = path.rstrip('/') + '/'
        return iter([(e[0], e[1], e[2], self._v.stat(base + e[0])[6]) for e in ents])
    def stat(self, path):
        return self._do('stat', path)
    def statvfs(self, path):
        return self._do('statvfs', path)
    def mkdir(self, path):
        return self._do('mkdir', path)
    def rmdir(self, path):
        return self._do('rmdir', path)
    def remove(self, path):
        return self._do('remove', path)
    def rename(self, old, new):
        return self._do('rename', old, new)
    def chdir(self, path):
        return self._do('chdir', path)
    def getcwd(self):
        return self._do('getcwd')
"""

# Runs in every new interpreter before anything else; leaves no names behind in __main__.
PRELUDE_PY = """
import sys, vfs
_ns = {}
exec(%r, _ns)
_ns.pop('__builtins__', None)
sys.modules['machine'] = type('machine', (), _ns)
_ns = {}
exec(%r, _ns)
_f = _ns['Flash'](%r)
vfs.umount('/')
vfs.mount(_f, '/')
del _ns, _f, sys, vfs
"""

# Fallback when the port's table cannot be read: the codes a filesystem raises.
_EMSCRIPTEN_ERRNO = {
    "ENOENT": 44,
    "EEXIST": 20,
    "EISDIR": 31,
    "ENOTDIR": 54,
    "ENOTEMPTY": 55,
    "EINVAL": 28,
    "EIO": 29,
    "EACCES": 2,
    "EPERM": 63,
    "ENOSPC": 51,
    "EBADF": 8,
}


def errno_map(mjs: Path) -> dict[int, int]:
    """Emscripten errno -> MicroPython (Linux) errno, from the port's own ERRNO_CODES."""
    m = re.search(r"ERRNO_CODES=\{([^}]*)\}", mjs.read_text(errors="replace"))
    pairs = re.findall(r"(E[A-Z0-9]+):(\d+)", m.group(1)) if m else []
    table = {name: int(num) for name, num in pairs} or _EMSCRIPTEN_ERRNO
    return {num: getattr(errno, name) for name, num in table.items() if hasattr(errno, name)}


DRIVER_MJS = r"""
import { createInterface } from "readline";
const [mjsUrl, heapsize, uid, prelude] = [process.argv[2], +process.argv[3], process.argv[4],
                                          Buffer.from(process.argv[5], "base64").toString()];
const { loadMicroPython } = await import(mjsUrl);
const SKIP = new Set(["/dev", "/proc"]);
let mp = null, out = [], resetAsked = 0;

function walk(fs, dir, acc) {
  for (const name of fs.readdir(dir)) {
    if (name === "." || name === "..") continue;
    const p = (dir === "/" ? "" : dir) + "/" + name;
    if (SKIP.has(p)) continue;
    const st = fs.stat(p);
    if (fs.isDir(st.mode)) { acc.push([p, null]); walk(fs, p, acc); }
    else acc.push([p, fs.readFile(p)]);
  }
  return acc;
}
function mkdirs(fs, path) {
  let cur = "";
  for (const part of path.split("/").slice(1, -1)) {
    cur += "/" + part;
    try { fs.mkdir(cur); } catch (e) { /* exists */ }
  }
}
async function boot() {
  const files = mp ? walk(mp.FS, "/", []) : [];
  out = [];
  mp = await loadMicroPython({
    heapsize, pystack: 8192, linebuffer: false,
    stdout: (b) => out.push(...b), stderr: (b) => out.push(...b),
  });
  for (const [p, data] of files) {
    if (data === null) { try { mp.FS.mkdir(p); } catch (e) { /* exists */ } }
    else { mkdirs(mp.FS, p); mp.FS.writeFile(p, data); }
  }
  mp.registerJsModule("_board", {
    reset: (kind) => { resetAsked = kind; },
    unique_id: () => Array.from(Buffer.from(uid, "hex")),
  });
  mp.runPython(prelude);
}
function run(code) {
  out = []; resetAsked = 0;
  let error = null, exit = null;
  try { mp.runPython(code); }
  catch (e) {
    if (e && e.name === "PythonError") {
      if (e.type === "SystemExit") exit = resetAsked ? "hard" : "soft";
      else error = String(e.message);
    } else { throw e; }
  }
  return { out: Buffer.from(out).toString("base64"), error, exit };
}
async function handle(req) {
  switch (req.op) {
    case "reset": await boot(); return { ok: true };
    case "exec": return run(Buffer.from(req.code, "base64").toString());
    case "run_file": {
      let src;
      try { src = mp.FS.readFile(req.path, { encoding: "utf8" }); }
      catch (e) { return { missing: true }; }
      return run(src);
    }
    case "read":
      try { return { data: Buffer.from(mp.FS.readFile(req.path)).toString("base64") }; }
      catch (e) { return { data: null }; }
    case "write":
      mkdirs(mp.FS, req.path); mp.FS.writeFile(req.path, Buffer.from(req.data, "base64"));
      return { ok: true };
    case "list":
      return { files: walk(mp.FS, "/", []).filter(([, d]) => d !== null).map(([p, d]) => [p, d.length]) };
    default: return { fatal: "unknown op " + req.op };
  }
}
await boot();
process.stdout.write(JSON.stringify({ ready: true }) + "\n");
for await (const line of createInterface({ input: process.stdin })) {
  let reply;
  try { reply = await handle(JSON.parse(line)); }
  catch (e) { reply = { fatal: String(e && e.stack ? e.stack : e) }; }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
"""


class NodeGone(DeviceError):
    """The Node process running MicroPython died or was killed (the board hangs)."""


@dataclass
class ExecResult:
    out: bytes
    error: str | None  # exception text (traceback) or None
    exit: str | None  # "soft" / "hard" when the code ended with SystemExit (a reset)


class MpNode:
    """A persistent Node process hosting the MicroPython interpreter; thread-safe requests."""

    def __init__(
        self,
        node: str | None = None,
        mjs: Path | None = None,
        heap_bytes: int = 256 * 1024,
        unique_id: bytes = b"\xe6\x61\x38\x62\x4b\x2c\x1a\x2f",
        start_timeout_s: float = 30.0,
    ) -> None:
        node = node or shutil.which("node")
        if node is None:
            raise DeviceError("node is not installed: the MicroPython WebAssembly port needs it")
        mjs = mjs or Path(os.environ.get("DGS_MPWASM_MJS", MPWASM_MJS))
        if not mjs.exists():
            raise DeviceError(
                f"MicroPython WebAssembly port missing at {mjs}: npm ci in tools/mpwasm"
            )
        self._tmp = tempfile.TemporaryDirectory(prefix="mpnode-")
        driver = Path(self._tmp.name) / "driver.mjs"
        driver.write_text(DRIVER_MJS)
        prelude_py = PRELUDE_PY % (MACHINE_PY, FLASH_PY, errno_map(mjs))
        prelude = base64.b64encode(prelude_py.encode()).decode()
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [node, str(driver), mjs.as_uri(), str(heap_bytes), unique_id.hex(), prelude],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # The first line says the interpreter is loaded; a timer kills a wedged start.
        timer = threading.Timer(start_timeout_s, self.proc.kill)
        timer.start()
        try:
            first = self._read_line()
        finally:
            timer.cancel()
        if not first.get("ready"):
            raise NodeGone(f"MicroPython did not start: {first}")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = b""
            if self.proc.stderr is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read()[-500:]
            raise NodeGone(f"MicroPython process ended: {err.decode(errors='replace').strip()}")
        reply: dict[str, Any] = json.loads(line)
        if "fatal" in reply:
            raise NodeGone(f"MicroPython crashed: {reply['fatal'][:500]}")
        return reply

    def request(self, **req: Any) -> dict[str, Any]:
        with self._lock:
            if not self.alive or self.proc.stdin is None:
                raise NodeGone("MicroPython process is not running")
            try:
                self.proc.stdin.write(json.dumps(req).encode() + b"\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                raise NodeGone(f"MicroPython process is gone: {exc}") from None
            return self._read_line()

    def exec(self, code: bytes) -> ExecResult:
        r = self.request(op="exec", code=base64.b64encode(code).decode())
        return ExecResult(base64.b64decode(r["out"]), r["error"], r["exit"])

    def run_file(self, path: str) -> ExecResult | None:
        r = self.request(op="run_file", path=path)
        if r.get("missing"):
            return None
        return ExecResult(base64.b64decode(r["out"]), r["error"], r["exit"])

    def reset(self) -> None:
        """Fresh interpreter (new heap), same filesystem."""
        self.request(op="reset")

    def read(self, path: str) -> bytes | None:
        data = self.request(op="read", path=path)["data"]
        return None if data is None else base64.b64decode(data)

    def write(self, path: str, data: bytes) -> None:
        self.request(op="write", path=path, data=base64.b64encode(data).decode())

    def files(self) -> dict[str, int]:
        return {p: n for p, n in self.request(op="list")["files"]}

    def kill(self) -> None:
        """Kill the interpreter process (a board that hangs hard)."""
        if self.alive:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.alive and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        self._tmp.cleanup()
