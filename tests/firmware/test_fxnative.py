"""dgsclip/fxnative.py (viper) is generated from dgsclip/fxcore.py (the pure-Python twins):
the two must not drift apart. Regenerate with `python -m tests.firmware.test_fxnative`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FW = Path(__file__).resolve().parents[2] / "firmware" / "dgsclip"
KERNELS = ("mahony_step", "qmul", "hip_cd", "sample_frame", "ring_put", "be6_into", "q14_into")

HEADER = '''"""GENERATED from dgsclip/fxcore.py by `python -m tests.firmware.test_fxnative`: do not edit.

The fixed-point kernels as @micropython.viper machine code, for ports with a native emitter
(RP2040, ESP32). fxcore.load() imports this in a try/except and uses it only if it gives
the pure-Python twins' answers on a set of inputs; see fxcore.py for the rules both follow.
"""

import micropython
'''


def generate() -> str:
    src = (FW / "fxcore.py").read_text()
    tree = ast.parse(src)
    out = [HEADER]
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name not in KERNELS:
            continue
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
    return "".join(out)


def test_fxnative_is_generated_from_fxcore() -> None:
    assert (FW / "fxnative.py").read_text() == generate(), (
        "regenerate: python -m tests.firmware.test_fxnative"
    )


if __name__ == "__main__":
    (FW / "fxnative.py").write_text(generate())
    sys.stdout.write("wrote firmware/dgsclip/fxnative.py\n")
