"""MicroPython/CPython shims so the core imports on both (no `machine` here, ever)."""

try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython: const() is just the identity

    def const(x):
        return x


try:
    # The sampling path runs with the heap locked: any allocation there raises MemoryError
    # instead of passing unnoticed, and MicroPython then puts the call frames of functions
    # with many locals on the C stack instead of the heap (py/objfun.c, fun_bc_call:
    # a heap frame costs a gc_alloc + gc_free per call, whose search grows with the heap's
    # fragmentation).
    from micropython import heap_lock, heap_unlock  # noqa: F401
except ImportError:  # CPython

    def heap_lock():
        pass

    def heap_unlock():
        return 0


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
