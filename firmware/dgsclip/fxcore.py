"""Fixed-point kernels of the per-sample hot path: units, state layouts, rules and loader.

The kernels live by concern: dgsclip.fxmahony (Mahony step), dgsclip.fxgeom (quaternion
products, CORDIC hip angles, Q14 rounding), dgsclip.fxio (FIFO decode, ring slot copy, the
per-sample fuse-and-queue kernel, SAMPLE frame); dgsclip.fxcheck compares them with their
viper versions at boot. Integers only, so that a sample allocates nothing on any port (a
float result is a heap box on MicroPython builds without float-in-pointer representation,
e.g. the RP2040's).

Each kernel is the pure-Python *twin* of a `@micropython.viper` function in
`dgsclip.fxnative`, generated from those modules (`python -m tests.firmware.test_fxnative`
rewrites it; a test fails when the two drift apart). The viper versions are used only where
a native emitter exists and they reproduce the twins' answers on a set of inputs at boot
(`load()`); everywhere else (CPython, the WebAssembly port) the twins run. Rules for the
kernels, so that the two compute bit-identical results: ints only, no value or intermediate
outside +-2**30 (a MicroPython small int on 32-bit ports: no heap; viper's int is 32 bits),
`>>` on signed values (arithmetic on both), no chained comparisons, no `and`/`or`, module
constants written as literals, calls only to other kernels (`int(kernel(...))`).

Units (see docs/firmware.md "Fixed-point hot path"):
  gyro        2**-15 deg/s   (= raw counts x gyro_range_dps: exact for every range)
  accel       2**-15 g       (= raw counts x accel_range_g)
  bias        2**-19 deg/s   (finer, for the slow low-pass)
  quaternion  Q28 (1.0 = 2**28)
  dt          microseconds
  angles      centidegrees (the wire unit), CORDIC table in centidegrees x 2**14
"""

ONE = 268435456  # 1 << 28
G1 = 32768  # 1 g in accel units

# Mahony state (array('i')).
S_Q = 0  # 4: quaternion body -> reference, Q28
S_BIAS = 4  # 3: gyro bias, 2**-19 deg/s
S_ABIAS = 7  # 3: accel bias, 2**-15 g
S_GSUM = 10  # 3: raw gyro summed over the current still run
S_ASUM = 13  # 3: accel summed over the current still run
S_N = 16  # samples in the current still run
S_STILL = 17  # µs still in the current run
S_LEARNT = 18  # µs of confirmed rest the bias has been learnt from (capped)
S_T = 19  # µs since start (capped at init)
S_FLAGS = 20
S_REJECT = 21  # accel rejections (count)
S_EVENT = 22  # set by the step in which the first bias learning ended; the caller clears it
S_BSUM = 23  # 3: raw gyro summed while the bias is first learnt (plain mean)
S_BN = 26  # samples in that sum
S_SIZE = 27

# Mahony settings (array('i')), made by dgsclip.fusion from the float settings.
C_THR = 0  # still: |rate - bias| below (gyro units)
C_ATH = 1  # still: | |a| - 1 g | below (accel units)
C_BAND = 2  # still: raw rate within this of the run's mean (gyro units)
C_ABAND = 3  # still: accel within this of the run's mean (accel units)
C_STILL_US = 4
C_TRACK_US = 5
C_LEARN_US = 6
C_TAU_US = 7
C_INIT_US = 8
C_KP = 9  # kp x 0.5 x 2**28 / 1e6 x 4 (x dt_us >> 2 = Q28 half-step gain)
C_KP_INIT = 10
C_REJECT = 11  # accel rejection band (accel units)
C_SIZE = 12

FLAG_STATIONARY = 0x0002
FLAG_ACCEL_REJECTED = 0x0004
FLAG_INITIALISING = 0x0100

# Half-step gyro gain: 0.5 x DEG2RAD x 2**-15 x 1e-6 x 2**28 x 2**28 per µs, see fxmul.
KG_PER_US = 19190
DT_MAX_US = 50000  # a longer gap (bus fault) integrates at most this
INV_K = 326016437  # 2**29 / CORDIC gain (22 steps) 1.6467602581210032; hip_cd: 19898, 7605
CORDIC_N = 22


def cordic_table():
    """atan(2**-i) in centidegrees x 2**14, i = 0..CORDIC_N-1 (built once, float is fine)."""
    import math
    from array import array

    return array(
        "i",
        [int(round(math.degrees(math.atan(2.0**-i)) * 100.0 * 16384.0)) for i in range(CORDIC_N)],
    )


_loaded = None


def load():
    """The kernels to use: the viper versions if this port compiles them and they agree
    with these on a set of inputs, else these. Returns (mahony_step, qmul, hip_cd, native,
    sample_frame, ring_push, be6_into, q14_into, fuse_push, frames_out); decided once per boot."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded


def _load():
    # The twins live by concern in fxmahony / fxgeom / fxio (imported here, not at the top:
    # fxcheck imports this module's constants).
    from dgsclip.fxgeom import hip_cd, q14_into, qmul
    from dgsclip.fxio import be6_into, frames_out, fuse_push, ring_push
    from dgsclip.fxmahony import mahony_step

    twins = (
        mahony_step, qmul, hip_cd, False, None, ring_push, be6_into, q14_into, fuse_push, frames_out,
    )  # fmt: skip
    try:
        from dgsclip import fxnative as nat
    except Exception:  # no native emitter (CPython, the WebAssembly port): SyntaxError etc.
        return twins
    try:
        from dgsclip.fxcheck import agree

        if agree(nat):
            _forget()
            return (
                nat.mahony_step, nat.qmul, nat.hip_cd, True, nat.sample_frame, nat.ring_push,
                nat.be6_into, nat.q14_into, nat.fuse_push, nat.frames_out,
            )  # fmt: skip
    except Exception:  # noqa: S110  (a native build that cannot run them: fall back)
        pass
    return twins


def _forget():
    """The viper kernels passed: drop the twins' and the check's bytecode (several kB that
    the ring's blocks can use on a small heap). Nothing else imports them on a board."""
    import sys

    import dgsclip

    for name in ("fxcheck", "fxio", "fxgeom", "fxmahony"):
        sys.modules.pop("dgsclip." + name, None)
        if hasattr(dgsclip, name):
            delattr(dgsclip, name)
