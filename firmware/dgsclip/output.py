"""Output half of the clip's App: frames out of the ring, never waiting on the host.

`App` (dgsclip.app) inherits this. Frames go through `io.write_nb` when the transport has it
(dgsclip.usbio): the part of a frame the port did not take is kept in `_txbuf` and sent
first, so a frame is never cut; until then nothing else is encoded (the encoder's buffer
would be reused). Without `write_nb` (tests, the virtual clip's scripted IO) `io.write` is
taken to accept everything.
"""

from dgsclip.compat import heap_lock, heap_unlock


class Output:
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
        ring = self.ring
        sent = False
        enc = self.enc
        while (ring.n_in - ring.n_out) & 0xFFFFFF:  # ring.count, without a property call
            if self._write_nb is not None and self._tx is not None and not self._tx_idle():
                return sent  # (self._can_send() inlined: this runs once per sample)
            i = ring.tail
            skipped = ring.s[i]
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
            ring.tail = 0 if i == ring.capacity else i
            ring.n_out = (ring.n_out + 1) & 0xFFFFFF
            self.samples += 1
            sent = True
        if (
            self.streaming
            and self.clock.ticks_diff(now, self.t_status) >= self.cfg["status_period_ms"] * 1000
        ):
            self.t_status = now
            self._send_ctl(self.enc.status, None, now, *self._status_args(now))
        return sent
