"""MicroPython/CPython shims so the core imports on both (no `machine` here, ever)."""

try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython: const() is just the identity

    def const(x):
        return x


try:
    import ujson as json  # noqa: F401
except ImportError:
    import json  # noqa: F401


TICKS_PERIOD = const(1 << 30)  # time.ticks_us() wraps at 2**30 on MicroPython ports
TICKS_HALF = const(1 << 29)


def ticks_diff(a, b):
    """Signed a - b on the 30-bit tick circle (same result as time.ticks_diff)."""
    return ((a - b + TICKS_HALF) % TICKS_PERIOD) - TICKS_HALF


def ticks_add(a, delta):
    return (a + delta) % TICKS_PERIOD
