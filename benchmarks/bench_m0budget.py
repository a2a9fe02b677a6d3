"""Instructions per sample on the Cortex-M0 (ARMv6-M, the RP2040's instruction set): the
firmware's fusion (+ pelvis) and SAMPLE framing run on the committed MicroPython qemu image
(tools/m0) under qemu-system-arm -icount shift=0. Not App.step: no I2C read or USB write
(the qemu board has neither); see the notes in the table."""

from __future__ import annotations

from benchmarks.m0.bundle import bundle
from benchmarks.m0.runner import INSNS_PER_TICK, available, run_chunks

N = 200
BENCH = r"""
import time, gc
from array import array
p = Pipeline("right", True)
enc = Encoder()
g = array("f", (1.0, -2.0, 30.0)); a = array("f", (0.05, 0.99, 0.1))
pg = array("f", (0.2, 0.1, -0.3)); pa = array("f", (0.0, 1.0, 0.02))
q14 = array("h", (16384, 0, 0, 0))
def step(n, pel, frame):
    for i in range(n):
        if pel:
            p.update(g, a, 0.01, pg, pa)
        else:
            p.update(g, a, 0.01)
        if frame:
            ang = p.angles
            enc.sample(None, i, int(ang[0]*100.0), int(ang[1]*100.0), int(ang[2]*100.0), q14, 1, 0, 0, None)
for pel, frame in ((False, False), (True, False), (False, True), (True, True)):
    step(10, pel, frame)
    gc.collect()
    t = time.ticks_us(); step(%(n)d, pel, frame); d = time.ticks_diff(time.ticks_us(), t)
    t = time.ticks_us(); step(0, pel, frame); d0 = time.ticks_diff(time.ticks_us(), t)
    print("RES", int(pel), int(frame), d - d0)
"""
CPI = (1.2, 2.0)  # RP2040 cycles per instruction, see the text
RP2040_HZ = 133e6


def measure() -> dict[tuple[int, int], float]:
    chunks = ["# " + c for c in bundle().split("# ---- ") if c.strip()]
    out = run_chunks([*chunks, BENCH % {"n": N}])
    res = {}
    for line in out.splitlines():
        if line.startswith("RES"):
            _, pel, frame, ticks = line.split()
            res[(int(pel), int(frame))] = int(ticks) * INSNS_PER_TICK / N
    return res


def run(quick: bool = False) -> str:
    why = available()
    if why:
        return f"## Cortex-M0 instruction budget\n\nNot measured: {why}.\n"
    res = measure()
    rows = []
    names = {
        (0, 0): "fusion + hip angles (thigh)",
        (1, 0): "fusion + hip angles (thigh + pelvis)",
        (0, 1): "fusion + hip angles + SAMPLE frame (thigh)",
        (1, 1): "fusion + hip angles + SAMPLE frame (thigh + pelvis)",
    }
    for key, name in names.items():
        n = res[key]
        lo, hi = (n * c / RP2040_HZ * 1e3 for c in CPI)
        rows.append(
            f"| {name} | {n / 1e3:.0f} k | {lo:.2f}-{hi:.2f} ms | "
            f"{100 * lo / 5:.0f}-{100 * hi / 5:.0f} % | {100 * lo / 10:.0f}-{100 * hi / 10:.0f} % |"
        )
    return "\n".join(
        [
            "## Cortex-M0 instruction budget (measured under qemu -icount)",
            "",
            "MicroPython ports/qemu BOARD=MICROBIT (ARMv6-M, soft float), tools/m0; the firmware",
            "modules are sent over the raw REPL and compiled there; instructions per sample =",
            f"virtual-time ticks over {N} samples x {INSNS_PER_TICK:.1f} instructions/tick",
            "(-icount shift=0; shift=1 doubles the count, checked).",
            "",
            "| step | instructions / sample | RP2040 @133 MHz | share of a core @200 Hz | @100 Hz |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
            f"RP2040 time = instructions x CPI {CPI[0]}-{CPI[1]} / 133 MHz. Cortex-M0+ executes most",
            "ALU instructions in 1 cycle, loads/stores and taken branches in 2; MicroPython's VM",
            "is load- and branch-heavy and runs from XIP flash through a 16 kB cache (misses cost",
            "more), hence 1.2-2.0. The RP2040's ROM float routines are faster than libgcc's",
            "soft-float used here, so the real time is likely at the low end or below.",
            "Not included: the I2C read (~0.45 ms per 6-axis sample at 400 kHz, mostly waiting) and",
            "the USB write. ESP32-S3 (Xtensa LX7 with FPU) has another instruction set: not converted.",
        ]
    )


if __name__ == "__main__":
    print(run())
