"""The committed Cortex-M0 MicroPython image runs the clip's App step under qemu -icount
and the instruction count per sample is sane (benchmarks/bench_m0budget.py)."""

from __future__ import annotations

import pytest

from benchmarks.m0.runner import available

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def qemu():
    why = available()
    if why:
        pytest.fail(f"{why}: scripts/setup installs qemu-system-arm")
    return True


def test_icount_ticks_are_instructions(qemu):
    """2 instructions per turn of the assembler loop: 1562.5 per tick (16 MHz SysTick read
    as 25 MHz under 1 ns per instruction)."""
    from benchmarks.bench_m0budget import insns_per_tick

    assert insns_per_tick() == pytest.approx(1562.5, rel=0.01)


def test_m0_image_runs_the_app_step_with_a_sane_instruction_count(qemu):
    """The whole per-sample path of the current App (FIFO drain, fusion, ring, framing
    through the viper fastpath, UsbIO) runs on the image; the count is in the expected range."""
    from benchmarks.bench_m0budget import measure

    r = measure(pelvis=False)
    # framing's import-time self-check accepted the viper CRC/COBS on ARMv6-M
    assert r["viper"] == 1
    assert r["per_drain"] == 4  # 200 Hz, 20 ms timer period
    # One streamed sample is a SAMPLE frame of a few dozen bytes.
    assert 30 <= r["frame_bytes"] <= 60
    insns = r["step"] * 1562.5
    # one viper call per sample (fuse_push) and per pass (frames_out): ~80 k; the per-kernel
    # bytecode path before it took ~136 k, floats ~530 k
    assert 40e3 < insns < 120e3
    assert r["ring"] >= 1500  # packed 20-byte slots in small blocks (750 with 26-byte slots)
    assert r["part:fxio.frames_out (per sample of a 4-sample batch)"] > 0
    assert r["fx_viper"] == 1  # the fixed-point kernels run as viper (self-check passed)
    assert r["part:Mahony.update_fx (moving)"] < r["part:Pipeline.update_fx"] < r["step"]
    assert r["alloc_bytes"] <= 8  # per sample (the wasm test pins the same path to 0)
    # the viper framing is cheaper than the pure-Python one it replaces
    assert (
        r["part:Encoder.sample (frame: CRC + COBS, active path)"]
        < r["part:Encoder.sample (frame: CRC + COBS, pure Python)"]
    )
    assert 0 < r["idle_step"] < r["step"]
