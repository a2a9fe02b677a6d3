"""Bundle the firmware modules of the sample step into one script for a bare MicroPython
(the qemu port has no filesystem to import from): `from dgsclip...` imports are dropped and
`quat.f(` becomes `f(` so all modules share one namespace."""

from __future__ import annotations

import re
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware" / "dgsclip"
MODULES = ("quat", "fusion", "hip", "calib", "pelvis", "pipeline", "framing", "protocol")


def bundle(modules: tuple[str, ...] = MODULES) -> str:
    parts = []
    for name in modules:
        src = (FIRMWARE / f"{name}.py").read_text()
        src = re.sub(r"^from dgsclip[\w.]* import \((?:.|\n)*?^\)\n", "", src, flags=re.M)
        src = re.sub(r"^from dgsclip[\w.]* import [^\n]*\n", "", src, flags=re.M)
        src = re.sub(r"\bquat\.(\w+)\(", r"\1(", src)
        src = re.sub(r'^"""(?:.|\n)*?"""\n', "", src, count=1)  # module docstring: RAM
        parts.append(f"# ---- dgsclip/{name}.py\n{src}")
    return "\n".join(parts)
