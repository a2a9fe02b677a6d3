"""The committed Cortex-M0 MicroPython image runs the firmware's fusion under qemu -icount
and the instruction count per sample is sane (benchmarks/bench_m0budget.py)."""

from __future__ import annotations

import pytest

from benchmarks.m0.runner import available

pytestmark = pytest.mark.sim


def test_m0_image_runs_the_firmware_step_with_a_sane_instruction_count():
    why = available()
    if why:
        pytest.skip(why)
    from benchmarks.bench_m0budget import measure

    res = measure()
    thigh, pelvis, framed = res[(0, 0)], res[(1, 0)], res[(0, 1)]
    # A Mahony update in soft-float MicroPython bytecode: tens of k to ~1 M instructions.
    assert 20e3 < thigh < 1e6
    assert pelvis > thigh * 1.3 and framed > thigh
