"""Bounded, preallocated ring of fused samples between sampling and framing.

The sampler (timer interrupt via micropython.schedule, or the main loop when polling) fuses
every IMU sample as it is read and pushes the result here; the output side frames and sends
the oldest entry whenever the USB port can take it. One producer, one consumer: the
scheduled sampler never runs *inside* itself and the main loop only advances the tail after
it has copied a slot out, so no lock is needed.

When the ring is full a new sample is dropped whole and counted (`dropped`); the fusion has
already seen it, so the angles stay right, only that frame is never sent.

Memory: the slots are packed in bytearrays of BLOCK slots each (`v`, a tuple of them: a
few kB each, so that a fragmented heap still holds them; 2**BLOCK_SHIFT slots each), 20
bytes per slot, little-endian: time (µs, < 2**30, 4), hip angles (3 x int16, centidegrees), thigh
quaternion (4 x int16, Q14), flags (1), mark (1); 8 more (28 bytes) for the pelvis
quaternion when a pelvis IMU is configured. The I2C-error and overrun counters and the number of samples
dropped just before a sample change rarely: they are not stored per slot but as a *mark*
(`m`, 3 ints) queued with the first sample after a change; the consumer takes the mark
when it reaches that slot. When the marks are all in use a sample that needs one is
dropped and counted like a full ring (it needs one only after a change, so the marks run
out only when the counters change in nearly every queued sample).

The producer's and consumer's counters live in one array('i') `r` (the viper kernels
dgsclip.fxio.ring_push / sample_frame / fuse_push read and write it): the producer writes
only its own entries (R_HEAD.., R_LAST_*), the consumer only R_TAIL / R_OUT / the mark tail
and R_CUR_*.
"""

from array import array

from dgsclip import fxcore
from dgsclip.compat import const

_MASK = const(0xFFFFFF)
SLOT = const(20)  # bytes per slot (thigh)
SLOT_PELVIS = const(28)
MARKS = const(64)
BLOCK_SHIFT = const(5)  # 32 slots (640 B thigh, 896 B with pelvis) per block

# r[]: ring state (indices are fixed: the kernels in dgsclip.fxio use the numbers)
R_HEAD = const(0)  # next slot to write
R_TAIL = const(1)  # oldest unsent slot
R_IN = const(2)  # samples queued, modulo 2**24 (small ints on every port)
R_OUT = const(3)  # samples released, modulo 2**24
R_PEAK = const(4)
R_DROPPED = const(5)
R_SKIP = const(6)  # producer: drops since the last sample that was queued
R_CAP = const(7)
R_SLOT = const(8)  # bytes per slot
R_MHEAD = const(9)
R_MTAIL = const(10)
R_MIN = const(11)
R_MOUT = const(12)
R_MCAP = const(13)
R_LAST_ERRS = const(14)  # producer: counters of the last queued sample
R_LAST_OVR = const(15)
R_CUR_ERRS = const(16)  # consumer: counters of the slot being framed
R_CUR_OVR = const(17)
R_SHIFT = const(18)  # slot i is in block i >> R_SHIFT
R_SIZE = const(19)


class SampleRing:
    def __init__(self, capacity, pelvis=False, marks=MARKS):
        self.capacity = capacity
        w = SLOT_PELVIS if pelvis else SLOT
        self.slot = w
        per = 1 << BLOCK_SHIFT
        self.shift = BLOCK_SHIFT
        self.mask = per - 1
        self.v = tuple(bytearray(w * min(per, capacity - k)) for k in range(0, capacity, per))
        self.m = array("i", bytes(12 * marks))  # errors, overruns, dropped before (3 per mark)
        r = self.r = array("i", bytes(4 * R_SIZE))
        r[R_CAP] = capacity
        r[R_SLOT] = w
        r[R_MCAP] = marks
        r[R_SHIFT] = BLOCK_SHIFT
        self.pelvis = pelvis
        self._push = fxcore.load()[5]  # ring_push (viper where available)

    @property
    def count(self):
        r = self.r
        return (r[R_IN] - r[R_OUT]) & _MASK

    @property
    def peak(self):
        return self.r[R_PEAK]

    @property
    def dropped(self):
        return self.r[R_DROPPED]

    @property
    def tail(self):
        return self.r[R_TAIL]

    @property
    def bytes_per_slot(self):
        return self.slot

    def clear(self):
        """Consumer side: forget everything unsent (e.g. on `stop`)."""
        while self.count:
            self.take()
            self.pop()

    def push(self, t_us, cd, q14, flags, i2c_errors, overruns, pq14):
        """Copy one fused sample in (angles cd in centidegrees, quaternions in Q14: ints);
        False (and counted) when full."""
        if pq14 is None:
            pq14 = q14
            flags &= ~0x20
        return bool(
            self._push(self.v, self.r, self.m, cd, q14, pq14, t_us, flags, i2c_errors, overruns)
        )

    def take(self):
        """Consumer side, before framing the tail slot: apply its mark if it has one (the
        I2C-error / overrun counters framed from now on); returns the samples dropped just
        before it (0 without a mark)."""
        r = self.r
        i = r[R_TAIL]
        if not self.v[i >> BLOCK_SHIFT][(i & self.mask) * self.slot + 19]:
            return 0
        return self._take_mark()

    def _take_mark(self):
        r = self.r
        m = self.m
        j = r[R_MTAIL] * 3
        r[R_CUR_ERRS] = m[j]
        r[R_CUR_OVR] = m[j + 1]
        k = r[R_MTAIL] + 1
        r[R_MTAIL] = 0 if k == r[R_MCAP] else k
        r[R_MOUT] = (r[R_MOUT] + 1) & _MASK
        return m[j + 2]

    def pop(self):
        """Release the oldest slot (after it was framed and handed to the port)."""
        r = self.r
        i = r[R_TAIL] + 1
        r[R_TAIL] = 0 if i == self.capacity else i
        r[R_OUT] = (r[R_OUT] + 1) & _MASK


def make_ring(n, pelvis, spare):
    """The largest ring up to n slots (halving) that leaves `spare` bytes in one piece for
    everything else (commands, logs): a spare block is held while the ring's blocks are
    allocated, then freed (the ring's small blocks would otherwise fill every hole)."""
    from gc import collect

    hold = []
    while True:
        try:
            hold.append(bytearray(spare))
            ring = SampleRing(n, pelvis)
            hold.clear()
            collect()
            return ring
        except MemoryError:
            hold.clear()  # (the spare too, before the smaller try)
            if n <= 64:
                raise
            n //= 2
