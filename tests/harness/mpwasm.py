"""Run firmware code in the real MicroPython interpreter (WebAssembly port under Node).

`mpwasm` fixture -> MpWasm with `.run(script, files=..., export=...)`: a small Node driver
loads the pinned port (tools/mpwasm), writes the given files into its in-memory
filesystem (the firmware package under /lib, a fake `machine` module, the fake I2C register
map), runs the script with `mp.runPython`, and returns stdout, the Python exception (if
any) and the files the script wrote that were asked for. Skips with a reason only when node
or the npm package is missing.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MJS = (
    REPO / "tools/mpwasm/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"
)

# The Node side: args = spec.json. Files are base64 so .py and binary data travel alike.
DRIVER_MJS = r"""
import { readFileSync, writeFileSync } from "fs";
const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { loadMicroPython } = await import(spec.mjs);
const out = [];
const mp = await loadMicroPython({
  heapsize: spec.heapsize, pystack: 8192,
  stdout: (line) => out.push(line), stderr: (line) => out.push(line),
});
function mkdirs(path) {
  let cur = "";
  for (const part of path.split("/").slice(1, -1)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}
for (const [dest, b64] of Object.entries(spec.files)) {
  mkdirs(dest);
  mp.FS.writeFile(dest, Buffer.from(b64, "base64"));
}
let error = null;
try {
  mp.runPython("import sys\nsys.path.insert(0, '/lib')\n" + spec.script);
} catch (e) {
  error = String(e && e.message ? e.message : e);
}
const exported = {};
for (const p of spec.export) {
  try { exported[p] = Buffer.from(mp.FS.readFile(p)).toString("base64"); } catch (e) { /* missing */ }
}
writeFileSync(spec.result, JSON.stringify({ stdout: out.join("\n"), error, exported }));
"""

# Just enough of `machine` for boot.py/main.py on the fake bus.
FAKE_MACHINE = """
import fake_i2c
_BUS = None
def set_bus(bus):
    global _BUS
    _BUS = bus
I2C_KWARGS = []
class I2C:
    def __new__(cls, id=0, scl=None, sda=None, freq=400000, timeout=None):
        I2C_KWARGS.append({"freq": freq, "timeout": timeout})
        return _BUS
class Pin:
    def __init__(self, n, *a, **k):
        self.n = n
class WDT:
    fed = 0
    def __init__(self, timeout=5000):
        self.timeout = timeout
    def feed(self):
        WDT.fed += 1
def unique_id():
    return b"\\xde\\xad\\xbe\\xef"
RESETS = []
def reset():
    RESETS.append(1)
"""


@dataclass
class MpResult:
    stdout: str
    error: str | None
    files: dict[str, bytes] = field(default_factory=dict)

    def check(self) -> MpResult:
        if self.error:
            raise AssertionError(f"MicroPython raised: {self.error}\n--- stdout ---\n{self.stdout}")
        return self


def firmware_files(with_fakes: bool = True) -> dict[str, bytes]:
    """The firmware tree as it would sit on the clip's flash (/lib), plus the fakes."""
    files: dict[str, bytes] = {}
    fw = REPO / "firmware"
    for p in sorted(fw.rglob("*.py")):
        rel = p.relative_to(fw).as_posix()
        dest = "/" + rel if rel in ("main.py", "boot.py") else "/lib/" + rel
        files[dest] = p.read_bytes()
    if with_fakes:
        files["/lib/fake_i2c.py"] = (REPO / "edge_service/sim/fake_i2c.py").read_bytes()
        files["/lib/machine.py"] = FAKE_MACHINE.encode()
    return files


class MpWasm:
    def __init__(self, node: str) -> None:
        self.node = node

    def run(
        self,
        script: str,
        files: dict[str, bytes] | None = None,
        export: tuple[str, ...] = (),
        heapsize: int = 8 * 1024 * 1024,
        timeout_s: float = 120.0,
    ) -> MpResult:
        all_files = firmware_files()
        all_files.update(files or {})
        with tempfile.TemporaryDirectory(prefix="mpwasm-") as tmp:
            d = Path(tmp)
            (d / "driver.mjs").write_text(DRIVER_MJS)
            spec = {
                "mjs": MJS.as_uri(),
                "heapsize": heapsize,
                "script": script,
                "files": {k: base64.b64encode(v).decode() for k, v in all_files.items()},
                "export": list(export),
                "result": str(d / "result.json"),
            }
            (d / "spec.json").write_text(json.dumps(spec))
            proc = subprocess.run(
                [self.node, str(d / "driver.mjs"), str(d / "spec.json")],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
            res_path = d / "result.json"
            if not res_path.exists():
                raise AssertionError(
                    f"node driver failed (rc={proc.returncode}): {proc.stderr[-2000:]}"
                )
            res = json.loads(res_path.read_text())
        return MpResult(
            res["stdout"],
            res["error"],
            {k: base64.b64decode(v) for k, v in res["exported"].items()},
        )


@pytest.fixture(scope="session")
def mpwasm() -> MpWasm:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the MicroPython WebAssembly port needs Node.js >= 18")
    if not MJS.exists():
        pytest.skip(f"MicroPython WebAssembly port missing at {MJS}: run `npm ci` in tools/mpwasm")
    return MpWasm(node)
