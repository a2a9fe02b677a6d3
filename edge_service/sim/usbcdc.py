"""Model of MicroPython's TinyUSB CDC stdio, for the firmware's transport in virtual time.

Runs on CPython and MicroPython (the WebAssembly tests copy it next to the firmware), so no
typing, dataclasses or f-strings.

Write path as in shared/tinyusb/mp_usbd_cdc.c (mp_usbd_cdc_tx_strn, MicroPython 1.23):
the data goes out in chunks of at most the endpoint size (64); while the port is open and
a chunk does not fit in the 256-byte TX FIFO, it waits in 1 ms steps (mp_event_wait_ms(1),
which runs scheduled callbacks: here `clock.sleep_us`, which fires the virtual timers) for
up to 500 ms, then writes what fits and returns the count. POLLOUT is reported while at
least one byte is free. The host drains the FIFO completely whenever it is reading
(`host_reading`), and collects what it got in `received`.

Read path: `at(t_s, data)` schedules host -> clip bytes; `poll_in()` says whether one is
due and `stdin.readinto(buf)` hands them out one byte at a time (as sys.stdin.buffer does).
"""

TX_FIFO = 256
EP_SIZE = 64
TIMEOUT_MS = 500


class _Stdin:
    def __init__(self, cdc):
        self._cdc = cdc

    def readinto(self, buf):
        c = self._cdc
        data = c._rx[0][1]
        buf[0] = data[c._rx_off]
        c._rx_off += 1
        if c._rx_off >= len(data):
            c._rx.pop(0)
            c._rx_off = 0
        return 1


class CdcModel:
    def __init__(self, clock, tx_fifo=TX_FIFO, timeout_ms=TIMEOUT_MS):
        """clock: elapsed_us() and sleep_us(n) in virtual time (SimClock or alike)."""
        self.clock = clock
        self.tx_fifo = tx_fifo
        self.timeout_us = timeout_ms * 1000
        self.fifo = bytearray()
        self.received = bytearray()
        self.host_reading = True
        self.stall_windows = []  # [(from_us, to_us)] of elapsed time the host does not read
        self.waited_us = 0  # total time writes spent waiting for space
        self._rx = []  # [(elapsed_us, bytes)] sorted
        self._rx_off = 0
        self.stdin = _Stdin(self)

    # host side
    def at(self, t_s, data):
        self._rx.append((int(t_s * 1000000), bytes(data)))
        self._rx.sort(key=lambda x: x[0])

    def reading(self):
        t = self.clock.elapsed_us()
        for a, b in self.stall_windows:
            if a <= t < b:
                return False
        return self.host_reading

    def drain(self):
        if self.fifo and self.reading():
            self.received.extend(self.fifo)
            self.fifo = bytearray()

    def free(self):
        self.drain()
        return self.tx_fifo - len(self.fifo)

    # clip side (what the firmware's UsbIO sees)
    def poll_in(self):
        return bool(self._rx) and self._rx[0][0] <= self.clock.elapsed_us()

    def poll_out(self):
        return self.free() > 0

    def write(self, data):
        """sys.stdout.buffer.write on the clip: may wait, returns the bytes written."""
        n = len(data)
        i = 0
        while i < n:
            k = n - i
            if k > EP_SIZE:
                k = EP_SIZE
            t0 = self.clock.elapsed_us()
            while k > self.free() and self.clock.elapsed_us() - t0 < self.timeout_us:
                self.clock.sleep_us(1000)
                self.waited_us += 1000
            f = self.free()
            if k > f:
                k = f
            if k == 0:
                break
            self.fifo.extend(data[i : i + k])
            i += k
            self.drain()
        return i

    def ticks_ms(self):
        return self.clock.elapsed_us() // 1000
