"""Bounded, preallocated ring of fused samples between sampling and framing.

The sampler (timer interrupt via micropython.schedule, or the main loop when polling) fuses
every IMU sample as it is read and pushes the result here; the output side frames and sends
the oldest entry whenever the USB port can take it. One producer, one consumer: the
scheduled sampler never runs *inside* itself and the main loop only advances `tail` after
it has copied a slot out, so no lock is needed.

When the ring is full a new sample is dropped whole and counted (`dropped`); the fusion has
already seen it, so the angles stay right, only that frame is never sent. Memory per slot:
4 (t_us) + 14 (angles + thigh quaternion) + 6 (flags, i2c_errors, overruns) + 2 (samples
dropped before it) bytes, plus 8 for the pelvis quaternion when a pelvis IMU is configured:
26 or 34 bytes.
"""

from array import array

from dgsclip import fxcore
from dgsclip.compat import const

_MASK = const(0xFFFFFF)
NQ = 7  # flex, add, rot, qw, qx, qy, qz (int16 wire units)


class SampleRing:
    def __init__(self, capacity, pelvis=False):
        self.capacity = capacity
        self.t = array("i", bytes(4 * capacity))
        self.v = array("h", bytes(2 * NQ * capacity))
        self.u = array("H", bytes(6 * capacity))  # flags, i2c_errors, overruns
        self.s = array("H", bytes(2 * capacity))  # samples dropped just before this one
        self.p = array("h", bytes(8 * capacity)) if pelvis else None
        # The producer writes only head/n_in, the consumer only tail/n_out, so a sampler
        # interrupt between two bytecodes of pop() cannot lose an update.
        self.head = 0  # next slot to write
        self.tail = 0  # oldest unsent slot
        self.n_in = 0  # counts modulo 2**24: small ints on every port (no heap)
        self.n_out = 0
        self.peak = 0
        self.dropped = 0
        self._skip = 0  # producer side: drops since the last sample that fitted
        self._put = fxcore.load()[5]  # the slot copy (viper where available)

    @property
    def count(self):
        return (self.n_in - self.n_out) & _MASK

    def clear(self):
        """Consumer side: forget everything unsent (e.g. on `stop`)."""
        while self.count:
            self.pop()

    def push(self, t_us, cd, q14, flags, i2c_errors, overruns, pq14):
        """Copy one fused sample in (angles cd in centidegrees, quaternions in Q14: ints);
        False (and counted) when full."""
        n = (self.n_in - self.n_out) & _MASK
        if n >= self.capacity:
            self.dropped += 1
            self._skip += 1
            return False
        i = self.head
        self._put(
            self.t, self.v, self.u, self.s, cd, q14, i, t_us, flags, i2c_errors, overruns,
            self._skip,
        )  # fmt: skip
        self._skip = 0
        p = self.p
        if p is not None and pq14 is not None:
            b = i * 4
            p[b] = pq14[0]
            p[b + 1] = pq14[1]
            p[b + 2] = pq14[2]
            p[b + 3] = pq14[3]
        i += 1
        self.head = 0 if i == self.capacity else i
        self.n_in = (self.n_in + 1) & _MASK
        if n + 1 > self.peak:
            self.peak = n + 1
        return True

    def pop(self):
        """Release the oldest slot (after it was framed and handed to the port)."""
        i = self.tail + 1
        self.tail = 0 if i == self.capacity else i
        self.n_out = (self.n_out + 1) & _MASK
