"""`dgs-clip flash` end to end: real mpremote subprocesses against a virtual MicroPython board.

The board (edge_service.sim.replboard) is a real pty whose REPL is the real MicroPython
interpreter (WebAssembly port under Node); mpremote talks the raw REPL / raw-paste protocol
to it exactly as to a clip on USB. mpy-cross compiles for the .mpy version the board reports.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dgsclip
import pytest
from dgsclip import config as fwconfig

from edge_service.cli.clip import main as clip_main
from edge_service.cli.clip_flash import MANIFEST, flash, mpy_version_of
from edge_service.errors import DeviceError
from edge_service.sim.replboard import ReplBoard

pytestmark = pytest.mark.sim

FIRMWARE = Path(dgsclip.__file__).resolve().parents[1]
# What a flash installs: boot.py/main.py as source, every package module as .mpy under /lib.
EXPECTED = {"boot.py", "main.py"} | {
    "lib/"
    + (
        p.relative_to(FIRMWARE).as_posix()  # viper code: the board compiles it (SOURCE_ONLY)
        if p.name in ("fastpath.py", "fxnative.py")
        else p.relative_to(FIRMWARE).with_suffix(".mpy").as_posix()
    )
    for p in (FIRMWARE / "dgsclip").rglob("*.py")
}


def wait_until(pred: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


def mpremote(port: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def board(mpwasm: object) -> Iterator[ReplBoard]:  # mpwasm: skips when node/the port is missing
    b = ReplBoard()
    try:
        yield b
    finally:
        b.close()


def flash_and_settle(board: ReplBoard, *args: object, **kw: object) -> list[str]:
    """flash(), then wait for the hard reset it ends with (mpremote does not wait for it)."""
    before = board.hard_resets
    copied = flash(board.port, *args, **kw)  # type: ignore[arg-type]
    wait_until(lambda: board.hard_resets == before + 1)
    return copied


def test_first_flash_installs_everything_and_micropython_runs_the_mpy(board, tmp_path):
    cfg = tmp_path / "dgsclip.json"
    cfg.write_text(json.dumps({"side": "right", "rate_hz": 50}))

    copied = flash_and_settle(board, cfg)

    assert set(copied) == EXPECTED and len(copied) == len(EXPECTED)
    on_board = board.files()
    assert {"/" + d for d in EXPECTED} | {"/" + MANIFEST, "/" + fwconfig.CONFIG_FILE} <= set(
        on_board
    )
    # Byte for byte what was built: the manifest's hashes are those of the board's files.
    manifest = json.loads(board.read_file("/" + MANIFEST) or b"")
    assert set(manifest) == EXPECTED
    for dev, digest in manifest.items():
        assert hashlib.sha256(board.read_file("/" + dev) or b"").hexdigest() == digest, dev
    assert board.read_file("/boot.py") == (FIRMWARE / "boot.py").read_bytes()
    written = json.loads(board.read_file("/" + fwconfig.CONFIG_FILE) or b"")
    assert written == fwconfig.validate({"side": "right", "rate_hz": 50})

    # The interpreter's own word: its .mpy version is what mpy-cross emitted, and importing
    # the package loads the flashed .mpy files (there is no .py of them on the board).
    res = mpremote(
        board.port,
        "exec",
        "import sys, dgsclip, dgsclip.app\n"
        "print(sys.implementation._mpy)\nprint(dgsclip.app.__file__)\nprint(dgsclip.VERSION)",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    mpy, app_file, version = res.stdout.split()
    assert app_file == "/lib/dgsclip/app.mpy" and version == dgsclip.VERSION
    assert board.paste_execs > 0  # mpremote used raw-paste with the board's flow control
    app = board.read_file("/lib/dgsclip/app.mpy") or b""
    assert app[:2] == b"M" + bytes([int(mpy) & 0xFF])
    assert mpy_version_of(int(mpy)) == "6.3"


def test_second_flash_copies_nothing_and_force_copies_everything(board):
    flash_and_settle(board, None)
    manifest = board.read_file("/" + MANIFEST)
    execs = board.execs

    assert flash_and_settle(board, None) == []
    # Only the version query, manifest rewrite, verification and reset ran on the board;
    # copying one file alone takes several code blocks per 256 bytes. (The verification's
    # import list grows with the number of modules: 20 blocks for 31 of them.)
    assert board.execs - execs < 30
    assert board.read_file("/" + MANIFEST) == manifest

    # Same size, other content, manifest untouched: only --force notices.
    boot = board.read_file("/boot.py") or b""
    board.write_file("/boot.py", boot.replace(b"trivial", b"TRIVIAL"))
    assert flash_and_settle(board, None) == []
    assert board.read_file("/boot.py") != boot

    execs = board.execs
    assert set(flash_and_settle(board, None, force=True)) == EXPECTED
    assert board.read_file("/boot.py") == boot
    # Every file really went over the wire: at least one code block per 256-byte chunk.
    chunks = sum(-(-n // 256) for p, n in board.files().items() if p.lstrip("/") in EXPECTED)
    assert board.execs - execs >= chunks


def test_a_file_damaged_on_the_clip_is_copied_again(board):
    flash_and_settle(board, None)
    good = board.read_file("/lib/dgsclip/app.mpy") or b""
    board.write_file("/lib/dgsclip/app.mpy", good[:100])  # e.g. a copy cut short
    board.write_file("/lib/dgsclip/quat.mpy", b"")

    copied = flash_and_settle(board, None)

    assert sorted(copied) == ["lib/dgsclip/app.mpy", "lib/dgsclip/quat.mpy"]
    assert board.read_file("/lib/dgsclip/app.mpy") == good


def test_flash_interrupted_by_a_reset_is_repaired_by_the_next_one(board):
    flash_and_settle(board, None)
    board.fault_after(40, "reset")  # mid-copy: the board reboots, a file is half written
    with pytest.raises(DeviceError):
        flash(board.port, None, force=True, timeout_s=3)
    wait_until(lambda: board.hard_resets == 2)
    assert board.read_file("/" + MANIFEST) is None  # no manifest vouching for half a copy

    assert set(flash_and_settle(board, None)) == EXPECTED
    manifest = json.loads(board.read_file("/" + MANIFEST) or b"")
    for dev, digest in manifest.items():
        assert hashlib.sha256(board.read_file("/" + dev) or b"").hexdigest() == digest, dev


def test_board_that_stops_answering_is_one_line_not_a_hang(board, capsys):
    board.fault_after(30, "hang")  # the interpreter dies while files are being copied
    t0 = time.monotonic()
    assert clip_main(["flash", "--port", board.port, "--timeout", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dgs-clip: error: no answer from the clip") and err.count("\n") == 1
    assert "copying" in err
    assert time.monotonic() - t0 < 30  # bounded by --timeout, not mpremote's blocking reads


def test_clip_unplugged_mid_flash_is_one_line(board, capsys):
    board.fault_after(30, "unplug")
    assert clip_main(["flash", "--port", board.port, "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dgs-clip: error: mpremote failed on {board.port} (copying")
    assert err.count("\n") == 1


def test_friendly_repl_answers_like_a_board(board):
    import serial

    with serial.Serial(board.port, 115200, timeout=5) as ser:

        def read_until(end: bytes) -> bytes:
            data = ser.read_until(end)
            assert data.endswith(end), data
            return data

        ser.write(b"\x02")  # Ctrl-B: banner and prompt
        banner = read_until(b">>> ")
        assert b"MicroPython v" in banner and b'Type "help()"' in banner
        ser.write(b"6 * 7\r")
        assert read_until(b">>> ").endswith(b"6 * 7\r\n42\r\n>>> ")
        ser.write(b"for i in range(2):\r print(i)\r\r")
        assert read_until(b">>> ").endswith(b"0\r\n1\r\n>>> ")
        ser.write(b"import os; os.stat('nope')\r")  # MicroPython's errno, as on a clip
        assert b"OSError: [Errno 2] ENOENT\r\n>>> " in read_until(b">>> ")


def test_plain_raw_repl_without_raw_paste(mpwasm, tmp_path):
    src = tmp_path / "big.py"
    src.write_text("DATA = %r\n" % ("x" * 3000))  # > one 256-byte write of the raw REPL
    with ReplBoard(raw_paste=False) as b:
        res = mpremote(
            b.port, "fs", "cp", str(src), ":big.py", "+", "exec", "import big; print(len(big.DATA))"
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.split()[-1] == "3000" and b.paste_execs == 0
        assert b.read_file("/big.py") == src.read_bytes()
