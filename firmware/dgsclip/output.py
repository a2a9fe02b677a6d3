"""Output half of the clip's App: frames out of the ring, never waiting on the host.

`App` (dgsclip.app) inherits this. Frames go through `io.write_nb` when the transport has it
(dgsclip.usbio): the part of a frame the port did not take is kept in `_txbuf` and sent
first, so a frame is never cut; until then nothing else is encoded (the encoder's buffer
would be reused). Without `write_nb` (tests, the virtual clip's scripted IO) `io.write` is
taken to accept everything. Where the viper kernels run (dgsclip.fxcore.load), a pass
frames all queued samples (up to BATCH_BYTES) in one kernel call and writes them at once.
"""

from dgsclip import fxcore
from dgsclip.compat import const, heap_lock, heap_unlock
from dgsclip.framing import _crc_table

BATCH_BYTES = const(192)  # frames per port write: 4 thigh (38-41 bytes) or 3 pelvis frames


class Output:
    def _init_batch(self):
        # Batch framing (one fxio.frames_out call per pass) only where the viper kernels
        # run; elsewhere (CPython, the WebAssembly port) the per-sample path through
        # Encoder, which the tests and the golden vectors check byte for byte.
        k = fxcore.load()
        self._frames = k[9] if k[3] else None
        self._batch = bytearray(BATCH_BYTES)
        self._bmv = memoryview(self._batch)
        self._bviews = {}
        self._crc_tab = _crc_table() if self._frames else None

    def _tx_idle(self):
        """Push the pending frame on; True when the port has nothing of ours pending."""
        if self._tx is None:
            return True
        w = self._write_nb(memoryview(self._tx)[self._tx_off : self._tx_n])
        self._tx_off += w
        if self._tx_off < self._tx_n:
            return False
        self._tx = None
        return True

    def _send(self, frame):
        """Hand one whole frame to the port. Without write_nb the port never blocks (tests,
        the virtual clip's pty). Returns False when the port still holds a partial frame:
        the caller must not encode another one (the encoder buffer is in use)."""
        if self._write_nb is None:
            self.io.write(frame)
            return True
        n = len(frame)
        w = self._write_nb(frame)
        if w < n:
            # Keep the rest in our own buffer (the encoder's is reused by the next frame);
            # only at the onset of a host stall, so the copy is rare.
            rest = n - w
            self._txbuf[:rest] = frame[w:]
            self._tx = self._txbuf
            self._tx_off = 0
            self._tx_n = rest
        return True

    def _can_send(self):
        return self._write_nb is None or self._tx_idle()

    def _send_ctl(self, build, *args):
        """Status/log/hello: built only if the port is free, else dropped and counted."""
        if not self._can_send():
            self.tx_dropped += 1
            return
        self._send(build(*args))

    def _output(self, now):
        """Frame and send what the sampler queued, while the port takes it; then STATUS."""
        if self._frames is not None and self._lock_ok and self._write_nb is not None:
            sent = self._output_batch()
        else:
            sent = self._output_each()
        if (
            self.streaming
            and self.clock.ticks_diff(now, self.t_status) >= self.cfg["status_period_ms"] * 1000
        ):
            self.t_status = now
            self._send_ctl(self.enc.status, None, now, *self._status_args(now))
        return sent

    def _output_batch(self):
        """Where the viper kernels run: the queued samples framed back to back in one call
        (dgsclip.fxio.frames_out, heap locked) and handed to the port in one write of at most
        BATCH_BYTES (well inside the CDC's 256-byte buffer, so a host that reads never makes
        it wait)."""
        ring = self.ring
        r = ring.r
        enc = self.enc
        sa = enc.seqa
        sent = False
        while (r[2] - r[3]) & 0xFFFFFF:
            if self._tx is not None and not self._tx_idle():
                return sent
            seq = enc.seq
            sa[0] = seq & 0xFFFF
            sa[1] = seq >> 16
            n0 = r[3]
            self._locked = True
            heap_lock()
            try:
                n = self._frames(
                    self._batch, enc._raw, ring.v, r, ring.m, sa, enc._ver, self._crc_tab,
                    BATCH_BYTES,
                )  # fmt: skip
            except MemoryError:
                n = -1  # not seen on the measured ports: a build whose kernel calls allocate
            finally:
                heap_unlock()
                self._locked = False
            enc.seq = sa[0] | (sa[1] << 16)
            k = (r[3] - n0) & 0xFFFFFF
            if n < 0:
                # The slots it framed are released and their sequence numbers used: the
                # host counts them as lost; here they count as dropped frames. From now on
                # frames are built one at a time without the lock.
                self.tx_dropped += k
                self._lock_failed()
                return sent
            self.samples += k
            v = self._bviews.get(n)
            if v is None:  # one view per batch length (a few dozen), made once
                v = self._bmv[:n]
                self._bviews[n] = v
            self._send(v)
            sent = True
        return sent

    def _output_each(self):
        ring = self.ring
        sent = False
        enc = self.enc
        r = ring.r  # ring state (dgsclip.ring: R_IN 2, R_OUT 3, R_TAIL 1)
        v = ring.v
        w = ring.slot
        sh = ring.shift
        mk = ring.mask
        cap = ring.capacity
        while (r[2] - r[3]) & 0xFFFFFF:  # ring.count, without a property call
            if self._write_nb is not None and self._tx is not None and not self._tx_idle():
                return sent  # (self._can_send() inlined: this runs once per sample)
            i = r[1]
            if v[i >> sh][(i & mk) * w + 19]:  # the slot has a mark (ring.take(), inlined)
                skipped = ring.take()
                if skipped:
                    enc.seq = (enc.seq + skipped) & 0xFFFFFFFF  # host counts them as lost
            # Framing allocates nothing once warm: with the heap locked (see compat) its
            # call frames live on the C stack. The sampler skips a tick landing in here.
            locked = self._lock_ok
            seq0 = enc.seq
            if locked:
                self._locked = True
                heap_lock()
            try:
                fr = enc.sample_slot(ring, i)
            except MemoryError:
                if not locked:
                    raise
                fr = None  # e.g. the encoder's first frame of a length makes its view
            finally:
                if locked:
                    heap_unlock()
                self._locked = False
            if fr is None:
                self._frame_faults += 1
                if self._frame_faults > 4:  # not a warm-up: something allocates each time
                    self._lock_failed()
                enc.seq = seq0
                fr = enc.sample_slot(ring, i)
            self._send(fr)
            # ring.pop() inlined (once per sample): release the slot
            i += 1
            r[1] = 0 if i == cap else i
            r[3] = (r[3] + 1) & 0xFFFFFF
            self.samples += 1
            sent = True
        return sent
