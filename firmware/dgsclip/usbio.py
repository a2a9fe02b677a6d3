"""USB CDC stdio transport that never waits on the host.

MicroPython's TinyUSB CDC write (shared/tinyusb/mp_usbd_cdc.c) waits up to 500 ms for
buffer space while the port is open but nobody reads it, then writes what fits. Polling
stdout for POLLOUT only says that at least one byte is free, so:
- normal mode: a frame is written in one call when POLLOUT is set (the host is reading,
  so the 256-byte buffer is nearly empty); a short write or a slow one means the host
  stopped reading: switch to
- trickle mode: one byte per call, each only while POLLOUT is set. A one-byte write with a
  free byte never waits. When a whole frame went through this way the host drains again
  and normal mode resumes.
write_nb() returns how many bytes were taken; the caller keeps the rest and offers it again
later, so a frame is never cut (the host sees it whole once it reads again). Only the first
write after the host stalls waits: up to 2 x 500 ms (TinyUSB waits once for the part that
still fits and once more for the rest) per stall; the timer-driven
sampler keeps running during it because MicroPython runs scheduled callbacks while the CDC
write waits, and the IMU FIFO holds the samples meanwhile.

Everything is injected (stdin/stdout buffers, poll objects, ticks_ms) so CPython tests run
this class against a model of the TinyUSB CDC.
"""

SLOW_WRITE_MS = 20  # a frame write that took longer than this met a full buffer


class UsbIO:
    def __init__(self, stdin, stdout, poll_in, poll_out, ticks_ms, ticks_diff):
        """stdin/stdout: binary streams (sys.stdin.buffer, sys.stdout.buffer);
        poll_in/poll_out: callables -> bool (select.poll(...).poll(0) non-empty);
        ticks_ms/ticks_diff: the `time` functions."""
        self._in = stdin
        self._out = stdout
        self._poll_in = poll_in
        self._poll_out = poll_out
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._buf = bytearray(64)
        self._mv = memoryview(self._buf)
        self._b1 = bytearray(1)
        self.trickle = False
        self.stalls = 0  # times the host was found not reading
        self.slow_writes = 0  # writes that waited (the <= 500 ms TinyUSB timeout)

    def read(self):
        n = 0
        while n < 64 and self._poll_in():
            self._in.readinto(self._mv[n : n + 1])
            n += 1
        return self._mv[:n] if n else None

    def write(self, buf):
        """Blocking write (REPL text, the boot delimiter)."""
        self._out.write(buf)

    def write_nb(self, mv):
        n = len(mv)
        if not self._poll_out():
            return 0
        out = self._out
        if self.trickle:
            b1 = self._b1
            i = 0
            while i < n and self._poll_out():
                b1[0] = mv[i]
                w = out.write(b1)
                if w == 0:
                    break
                i += 1
            if i == n:
                self.trickle = False
            return i
        t0 = self._ticks_ms()
        w = out.write(mv)
        if w is None:
            w = n
        if w < n or self._ticks_diff(self._ticks_ms(), t0) > SLOW_WRITE_MS:
            if self._ticks_diff(self._ticks_ms(), t0) > SLOW_WRITE_MS:
                self.slow_writes += 1
            self.trickle = True
            self.stalls += 1
        return w


def usb_stdio():
    """The clip's real USB CDC stdio (MicroPython only)."""
    import select
    import sys
    import time

    pin = select.poll()
    pin.register(sys.stdin, select.POLLIN)
    pout = select.poll()
    pout.register(sys.stdout, select.POLLOUT)
    return UsbIO(
        sys.stdin.buffer,
        sys.stdout.buffer,
        lambda: _ready(pin),
        lambda: _ready(pout),
        time.ticks_ms,
        time.ticks_diff,
    )


def _ready(p):
    # ipoll reuses one tuple: no heap allocation per check (poll() builds a list)
    for _ in p.ipoll(0):
        return True
    return False
