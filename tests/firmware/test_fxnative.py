"""dgsclip/fxnative.py (viper) is generated from the pure-Python twins in dgsclip/fxmahony.py,
fxgeom.py and fxio.py:
the two must not drift apart. Regenerate with `python -m tests.firmware.test_fxnative`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FW = Path(__file__).resolve().parents[2] / "firmware" / "dgsclip"
# Twin modules and their kernels, in the order they appear in fxnative.py (one module: a
# kernel may call another by its global name).
KERNELS = {
    "fxmahony": ("mahony_step",),
    "fxgeom": ("qmul", "hip_cd", "q14_into"),
    "fxio": ("sample_frame", "frames_out", "ring_push", "fuse_push", "be6_into"),
}

HEADER = '''"""GENERATED from dgsclip/fxmahony.py, fxgeom.py, fxio.py by `python -m tests.firmware.test_fxnative`: do not edit.

The fixed-point kernels as @micropython.viper machine code, for ports with a native emitter
(RP2040, ESP32). fxcore.load() imports this in a try/except and uses it only if it gives
the pure-Python twins' answers on a set of inputs; see fxcore.py for the rules both follow.
"""

import micropython
'''


def generate() -> str:
    out = [HEADER]
    for module, names in KERNELS.items():
        out.extend(_module(module, names))
    return "".join(out)


def _module(module: str, names: tuple[str, ...]) -> list[str]:
    src = (FW / f"{module}.py").read_text()
    tree = ast.parse(src)
    out = []
    found = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name not in names:
            continue
        found.add(node.name)
        seg = ast.get_source_segment(src, node)
        assert seg is not None
        lines = seg.splitlines()
        params = []
        for a in node.args.args:
            params.append(a.arg if a.arg.isupper() else f"{a.arg}: int")
        lines[0] = f"def {node.name}({', '.join(params)}) -> int:"
        if len(lines[0]) > 99:  # as ruff format wraps it
            lines[0] = f"def {node.name}(\n    {', '.join(params)}\n) -> int:"
        body = []
        for ln in lines[1:]:
            if "# viper: ptr" in ln:
                code, kind = ln.split("# viper: ")
                name, rhs = code.split("=")
                ln = f"{name.rstrip()} = {kind.strip()}({rhs.strip()})  # noqa: F821  (viper built-in)"
            body.append(ln)
        out.append("\n\n@micropython.viper\n" + "\n".join([lines[0], *body]) + "\n")
    assert found == set(names), f"{module}: missing {set(names) - found}"
    return out


def test_fxnative_is_generated_from_fxcore() -> None:
    assert (FW / "fxnative.py").read_text() == generate(), (
        "regenerate: python -m tests.firmware.test_fxnative"
    )


if __name__ == "__main__":
    (FW / "fxnative.py").write_text(generate())
    sys.stdout.write("wrote firmware/dgsclip/fxnative.py\n")
