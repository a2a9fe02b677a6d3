"""Run scripts on the committed Cortex-M0 MicroPython image under qemu-system-arm with
`-icount shift=0` (one guest instruction = 1 ns of virtual time).

The qemu port's ticks_us() on Cortex-M reads SysTick assuming a 25 MHz core clock
(ports/qemu/mcu/arm/ticks.c); QEMU's nRF51 clocks SysTick at 16 MHz of virtual time, so one
reported microsecond is 1562.5 ns of virtual time = 1562.5 instructions. The benchmark
measures that scale with an assembler loop (bench_m0budget.insns_per_tick: 1562.2 here);
with shift=1 the same code reports twice the ticks (virtual, not host, time).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

ELF = Path(__file__).resolve().parents[2] / "tools" / "m0" / "micropython-microbit.elf"


class QemuError(RuntimeError):
    pass


def qemu_cmd(elf: Path | None = None, shift: int = 0) -> list[str]:
    elf = elf or ELF
    return [
        "qemu-system-arm", "-machine", "microbit",
        "-global", "nrf51-soc.flash-size=1048576", "-global", "nrf51-soc.sram-size=262144",
        "-nographic", "-monitor", "null", "-semihosting",
        "-icount", f"shift={shift}", "-kernel", str(elf),
    ]  # fmt: skip


def available() -> str | None:
    """None when qemu and the image are there, else why not."""
    if shutil.which("qemu-system-arm") is None:
        return "qemu-system-arm not installed (apt-get install qemu-system-arm)"
    if not ELF.exists():
        return f"{ELF} missing"
    return None


def run_chunks(
    chunks: list[str], timeout_s: float = 600.0, shift: int = 0, elf: Path | None = None
) -> str:
    """Execute each chunk in the raw REPL (globals persist between chunks); return output."""
    p = subprocess.Popen(qemu_cmd(elf, shift=shift), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdin is not None and p.stdout is not None
    fd = p.stdout.fileno()
    deadline = time.monotonic() + timeout_s

    def read_until(tok: bytes) -> bytes:
        buf = b""
        while tok not in buf:
            if time.monotonic() > deadline:
                raise QemuError(f"qemu: no {tok!r} before the deadline; got {buf[-200:]!r}")
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                d = os.read(fd, 4096)
                if not d:
                    raise QemuError(f"qemu exited; last output {buf[-200:]!r}")
                buf += d
        return buf

    out = []
    try:
        read_until(b">>> ")
        p.stdin.write(b"\x01")
        p.stdin.flush()
        read_until(b"raw REPL; CTRL-B to exit\r\n>")
        for chunk in chunks:
            data = chunk.encode()
            for i in range(0, len(data), 256):  # the emulated UART has a small FIFO
                p.stdin.write(data[i : i + 256])
                p.stdin.flush()
                time.sleep(0.005)
            p.stdin.write(b"\x04")
            p.stdin.flush()
            res = read_until(b"\x04>")
            text = res.decode(errors="replace")
            body, _, err = text.partition("\x04")
            if err.strip("\x04>").strip():
                raise QemuError("MicroPython raised: " + err.strip("\x04>").strip()[-400:])
            out.append(body.removeprefix("OK"))
    finally:
        p.kill()
        p.wait()
    return "".join(out)
