"""Instructions per sample on the Cortex-M0 (ARMv6-M, the RP2040's instruction set): the
clip's real per-sample path (IMU FIFO drain through the real driver, fusion + hip angles,
ring, SAMPLE frame with CRC + COBS, non-blocking UsbIO write) runs on the committed MicroPython qemu image (tools/m0) under
qemu-system-arm -icount shift=0, where every guest instruction advances virtual time by 1 ns.

The instructions-per-tick scale is measured, not assumed: an inline-assembler loop of known
length (subs + bne, 2 instructions per turn) is timed with the same ticks.
"""

from __future__ import annotations

from benchmarks.m0.appstep import SPIN, chunks
from benchmarks.m0.runner import available, run_chunks

RATE_HZ = 200
SPIN_TURNS = 4_000_000
CPI = (1.2, 2.0)  # RP2040 cycles per instruction, see the text
RP2040_HZ = 133e6
NATIVE = ("fusion", "quat", "hip", "pelvis", "pipeline")


def insns_per_tick() -> float:
    out = run_chunks([SPIN % {"n": SPIN_TURNS}])
    ticks = int(next(x for x in out.splitlines() if x.startswith("SPIN")).split()[1])
    return 2 * SPIN_TURNS / ticks


def measure(pelvis: bool, native: tuple[str, ...] = (), rate_hz: int = RATE_HZ) -> dict[str, float]:
    """Per-sample figures of one configuration (in port ticks; x insns_per_tick)."""
    n = rate_hz  # one second of samples: the once-a-second STATUS frame is in the window
    out = run_chunks(chunks(pelvis, rate_hz, n, native))
    res: dict[str, float] = {}
    for line in out.splitlines():
        if line.startswith("NATIVE"):
            res["viper"] = int(line.split()[1])
        elif line.startswith("FXNATIVE"):
            res["fx_viper"] = int(line.split()[1])
        elif line.startswith("STEP"):
            f = line.split()
            ticks, nsamp, fake, alloc, nbytes, per, free, ring = (int(x) for x in f[2:10])
            res["step"] = (ticks - fake) / nsamp
            res["fake"] = fake / nsamp
            res["alloc_bytes"] = alloc
            res["frame_bytes"] = nbytes
            res["per_drain"] = per
            res["heap_free"] = free
            res["ring"] = ring
        elif line.startswith("PREAPP"):
            res["heap_before_app"] = int(line.split()[1])
        elif line.startswith("IDLE"):
            _, ticks, fake = line.split()
            res["idle_step"] = (int(ticks) - int(fake)) / n
        elif line.startswith("PART"):
            name, ticks = line[5:].rsplit(" ", 1)
            res["part:" + name] = int(ticks) / n
    return res


def _ms(insns: float, cpi: float) -> float:
    return insns * cpi / RP2040_HZ * 1e3


IDLE_MS = 20.0  # dgsclip.app.IDLE_MAX_US: longest idle sleep of the main loop
ESP_HZ = 240e6
ESP_CPI = (1.0, 2.0)  # estimate (another ISA): not measured


def run(quick: bool = False) -> str:
    why = available()
    if why:
        return f"## Cortex-M0 instruction budget\n\nNot measured: {why}.\n"
    k = insns_per_tick()
    rows, parts, idle = [], [], []
    configs = [("thigh", False, (), 200), ("thigh + pelvis", True, (), 200)]
    if not quick:
        configs += [
            ("thigh", False, (), 100),
            ("thigh + pelvis", True, (), 100),
        ]
        # ("thigh, fusion modules native", False, NATIVE, 200): fusion/quat/hip/pelvis/
        # pipeline as -X emit=native crash this port since the per-sample path became one
        # viper call ("uncaught NLR", not investigated); that variant was slower anyway
        # (156 k vs 136 k instructions per sample before).
    viper = None
    for label, pelvis, native, rate in configs:
        r = measure(pelvis, native, rate)
        viper = r["viper"]
        n = r["step"] * k
        period_ms = 1000.0 / rate
        lo, hi = _ms(n, CPI[0]), _ms(n, CPI[1])
        rows.append(
            f"| {label} | {rate} Hz | {r['per_drain']:.0f} | {n / 1e3:.0f} k | "
            f"{r['fake'] * k / 1e3:.1f} k | {lo:.2f}-{hi:.2f} ms | "
            f"{100 * lo / period_ms:.0f}-{100 * hi / period_ms:.0f} % | "
            f"{100 * n * ESP_CPI[0] / ESP_HZ * 1e3 / period_ms:.0f}-"
            f"{100 * n * ESP_CPI[1] / ESP_HZ * 1e3 / period_ms:.0f} % | "
            f"{r['alloc_bytes']:.0f} B | {r['heap_before_app'] / 1024:.0f} kB | "
            f"{r['heap_free'] / 1024:.0f} kB, {r['ring']:.0f} |"
        )
        i = r["idle_step"] * k
        ilo, ihi = _ms(i, CPI[0]), _ms(i, CPI[1])
        idle.append(
            f"| {label} | {rate} Hz | {i / 1e3:.0f} k | {ilo:.2f}-{ihi:.2f} ms | "
            f"{100 * ilo / IDLE_MS:.1f}-{100 * ihi / IDLE_MS:.1f} % |"
        )
        if not native and rate == RATE_HZ:
            for key, v in r.items():
                if key.startswith("part:"):
                    parts.append(f"| {label} | {key[5:]} | {v * k:,.0f} |")
    budget = 0.25 * (1000.0 / RATE_HZ) / 1e3 * RP2040_HZ
    fx_native = r.get("fx_viper", 0)
    vtext = (
        [
            "Viper: the image's native emitter compiles dgsclip/fastpath.py and",
            "dgsclip/fxnative.py; framing's and fxcore.load()'s self-checks accept them",
            f"(framing.NATIVE {bool(viper)}, fixed-point kernels native {bool(fx_native)}):",
            "the Mahony step, quaternion products, hip angles (CORDIC), ring push and the",
            "SAMPLE frames (header, CRC-16, COBS) run as ARMv6-M machine code: one call per",
            "sample in the FIFO drain (fxio.fuse_push: both filters, hip angles, Q14, ring",
            "push) and one per main-loop pass (fxio.frames_out: every queued sample framed",
            "back to back, <= 192 bytes, one UsbIO.write_nb).",
        ]
        if viper
        else [
            "Framing: framing's self-check refused dgsclip/fastpath.py on this image",
            "(framing.NATIVE is False): frames use the pure-Python CRC-16 + COBS.",
        ]
    )
    return "\n".join(
        [
            "## Cortex-M0 instruction budget (measured under qemu -icount)",
            "",
            "MicroPython ports/qemu BOARD=MICROBIT (ARMv6-M, soft float, native emitter on as on",
            "the RP2040 port, 192 kB heap; tools/m0/PROVENANCE.md). The firmware is compiled by",
            "mpy-cross -march=armv6m and imported from a RAM filesystem in dependency order. The",
            "App is built as main.py builds it (default config, autostart, FIFO sampling, a",
            "timer, UsbIO as the transport) and runs one virtual second per row: every timer",
            "period (20 ms) the MPU-6050's FIFO holds rate x 20 ms samples; the timer callback",
            "drains them (driver fifo_level, then up to 8 packets per I2C read with",
            "fifo_read_batch), fuses each (Mahony + hip angles) and pushes it into the ring;",
            "the main-loop step frames them (SAMPLE: CRC-16 + COBS) and hands them to",
            "UsbIO.write_nb; one STATUS frame per second. Stand-ins: the FIFO",
            "registers (a lean Python object after the register-map fake configured the chip),",
            "the Python ticks_us of the virtual clock, the USB stdout (the C builtin `len`);",
            "the first two are measured and subtracted, the polls are Python lambdas (a board's",
            "`usbio._ready` is a Python function around the C ipoll).",
            *vtext,
            f"Scale: {k:.1f} instructions per port tick, measured with a {SPIN_TURNS}-turn",
            "2-instruction assembler loop. (Debian's qemu 7.2 ships no TCG plugins such as",
            "libinsn.so, hence -icount; the count is of executed guest instructions either way.)",
            "",
            "| configuration | rate | samples / drain | instructions / sample |"
            " (stand-ins, subtracted) | RP2040 @133 MHz | share of a core |"
            " ESP32-S3 share (estimate) | heap allocated / sample |"
            " heap free before the App | heap free after boot, ring slots |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Goal: <= 25 % of one RP2040 core at 200 Hz = {budget / 1e3:.0f} k cycles per sample.",
            "The per-sample path is integers only (dgsclip/fxcore.py: Q28 quaternions,",
            "2**-15 deg/s and g from the drivers' raw counts, centidegree angles) and runs with",
            "the heap locked (micropython.heap_lock), which also keeps the call frames of",
            "functions with many locals on the C stack instead of a gc_alloc + gc_free per",
            "call (py/objfun.c). Heap per sample: measured over one timer period with the",
            "collector off (the same path in the WebAssembly port measures 0 B over 200",
            "samples, tests/firmware/test_wasm_runtime.py). The heap holds what a board's",
            "does: every firmware module main.py imports (main itself included, imported, not",
            "run), the register-map fake dropped before the App is built, REPL chunks of <= 3",
            "kB. Ring: 20 bytes per slot (28 with the pelvis quaternion; time, angles, Q14",
            "quaternion(s), flags; the I2C-error/overrun counters and drops only as marks when",
            "they change) in blocks of 32 slots, allocated while an 8 kB spare block is held",
            "(freed after: the heap keeps one piece that size for everything else). The",
            "default 3000 slots (30 s at 100 Hz: 60 kB thigh, 84 kB with pelvis) do not fit",
            "that way next to the code in this 192 kB heap and are halved (with a LOG) to the",
            "number shown. Without the spare the thigh ring's 3000 slots fit here, but the",
            "heap left is then too fragmented for a 776-byte allocation (measured).",
            "",
            "The main loop with nothing to send sleeps until just after the next timer tick",
            f"(<= {IDLE_MS:.0f} ms; it used to poll every 1 ms): cost of one such pass (its share",
            "of the once-a-second STATUS included) and its share of a core at one pass per",
            f"{IDLE_MS:.0f} ms. While streaming, the one pass per tick that frames the samples is",
            "in the per-sample figure above.",
            "",
            "| configuration | rate | instructions / idle pass | RP2040 @133 MHz |"
            f" share of a core (one pass per {IDLE_MS:.0f} ms) |",
            "|---|---:|---:|---:|---:|",
            *idle,
            "",
            "Where it goes (each piece alone, same image, heap not locked: the calls with",
            "many locals pay their heap frame here, so these are indicative):",
            "",
            "| configuration | piece | instructions |",
            "|---|---|---:|",
            *parts,
            "",
            f"RP2040 time = instructions x CPI {CPI[0]}-{CPI[1]} / 133 MHz. The Cortex-M0+ runs most",
            "ALU instructions in 1 cycle, loads/stores and taken branches in 2; MicroPython's VM",
            "is load- and branch-heavy and runs from XIP flash through a 16 kB cache (misses cost",
            "more), hence 1.2-2.0. The RP2040's ROM float routines are faster than the libgcc",
            "soft-float of this build, which makes the low end likelier. Not included: the I2C",
            "transfers themselves (FIFO_COUNT + INT_STATUS per drain, 12 bytes per sample: bus",
            "time at 400 kHz, the CPU waits in machine.I2C) and the USB stack (TinyUSB, C).",
            "ESP32-S3 (Xtensa LX7, 240 MHz): another instruction set, not measured; the",
            f"column is an estimate only: the same instruction count at CPI {ESP_CPI[0]}-{ESP_CPI[1]}",
            "(flash-cache misses) at 240 MHz.",
        ]
    )


if __name__ == "__main__":
    print(run())
