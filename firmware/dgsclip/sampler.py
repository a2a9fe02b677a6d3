"""Sampling half of the clip's App: IMU FIFO (or polled registers) -> fusion -> ring.

`App` (dgsclip.app) inherits this. `service()` runs on a machine.Timer callback scheduled
with micropython.schedule (or from `step()` when no timer is injected); it never writes to
the port (replies and LOGs belong to the main loop) and is held while commands run.
"""

from array import array

from dgsclip import fxcore
from dgsclip.compat import const, heap_lock, heap_unlock
from dgsclip.drivers.base import ImuError
from dgsclip.output import Output
from dgsclip.pipeline import FLAG_I2C_ERROR, FLAG_OVERRUN, FLAG_PELVIS_ERROR

BACKOFF_MIN_US = const(20000)  # first pause after the bus failed all retries
BACKOFF_MAX_US = const(500000)


class Sampler(Output):
    def _init_hot(self):
        # fxio.fuse_push's arrays and modes, made once (the heap-locked FIFO drain cannot)
        self._hot_L = self.pipe.hot_arrays(
            self.gyro, self.accel, self.pgyro, self.paccel, self.ring
        )
        self._hot_K = array("i", (0, 0, 0, 0, 0))
        self._fuse_push = fxcore.load()[8]

    def _start_fifo(self):
        pel = self.pelvis_imu
        # Thigh and pelvis samples are paired one to one: only with equal output data rates
        # (e.g. an LSM6DSOX at 104 Hz with an MPU at 100 Hz is polled instead).
        ok = pel is None or pel.odr_hz == self.imu.odr_hz
        ok = ok and self.imu.fifo_start()
        if ok and pel is not None:
            ok = pel.fifo_start()
        if not ok:
            self.imu.fifo_on = False
            if pel is not None:
                pel.fifo_on = False
        self.fifo = bool(ok)
        if self.fifo:
            # Sample period 1e6/ODR µs as whole µs plus a Bresenham remainder (104 Hz:
            # 9615 µs + 40/104), so stamps follow the IMU's clock without drifting.
            odr = int(self.imu.odr_hz)
            self._fodr = odr
            self.fifo_period_us = 1000000 // odr
            self._frem = 1000000 % odr
            self._facc = 0
            self._t_fifo = None  # timestamp of the last sample taken from the FIFO

    def service(self):
        if self._hold or self._locked or not self.running:
            # _locked: this scheduled callback interrupted the main loop while the heap is
            # locked (framing); the FIFO keeps the samples for the next tick.
            return
        clock = self.clock
        now = clock.ticks_us()
        if clock.ticks_diff(now, self._retry_at) < 0:
            return  # the bus failed every retry: back off instead of stalling the loop
        if self.fifo:
            self._service_fifo(now)
        else:
            self._service_poll(now)

    def _bus_failed(self, now):
        b = self._backoff * 2 if self._backoff else BACKOFF_MIN_US
        self._backoff = b if b < BACKOFF_MAX_US else BACKOFF_MAX_US
        self._retry_at = self.clock.ticks_add(now, self._backoff)
        self._flags_extra |= FLAG_I2C_ERROR

    def _service_fifo(self, now):
        imu = self.imu
        errs = self.i2c_errors()
        ovf = self.fifo_overflows()
        n = imu.fifo_level()
        pel = self.pelvis_imu
        if n > 0 and pel is not None:
            pn = pel.fifo_level()
            if pn < 0:
                self._flags_extra |= FLAG_PELVIS_ERROR
                pel = None
            elif pn < n:
                n = pn
        if self.fifo_overflows() != ovf:
            self.overruns += 1
            self._flags_extra |= FLAG_OVERRUN
            self._t_fifo = None
        if n < 0:
            self._bus_failed(now)
            return
        if n == 0:
            self._fifo_silent(now)
            return
        self._rearms = 0
        clock = self.clock
        period = self.fifo_period_us
        # Timestamps from the IMU's sample clock: each sample one ODR period after the
        # previous. The newest sample was taken within the last period, so (re-)anchoring
        # puts it one period before now: never ahead of the truth, at most a period behind,
        # and later reads keep it in [0, 2 periods) unless the clocks drift apart.
        t = self._t_fifo
        last = None if t is None else clock.ticks_add(t, n * period)
        if last is None or not 0 <= clock.ticks_diff(now, last) < 2 * period:
            t = clock.ticks_add(now, -(n + 1) * period)
            self._facc = 0
        lk = self._drain_lock
        if lk is not False and self._lock_ok and self.pipe.settled():
            # The whole drain with the heap locked: the call frames of the driver and the
            # loop stay on the C stack (a heap frame per call costs a gc_alloc + gc_free,
            # py/objfun.c). Only where the bus reads work with the heap locked (checked once:
            # a Python stand-in of the bus may allocate).
            if lk is None:
                lk = self._drain_lock = self._probe_lock(imu, pel)
        else:
            lk = False
        if not lk:
            self._drain(now, n, t, period, errs, pel, False)
            return
        imu.defer_recovery = True
        if pel is not None:
            pel.defer_recovery = True
        heap_lock()
        try:
            self._drain(now, n, t, period, errs, pel, True)
        except MemoryError:
            self._drain_lock = False  # drains unlocked from now on; the sample is lost
            self.overruns += 1
            self._flags_extra |= FLAG_OVERRUN
            self._t_fifo = None
        finally:
            heap_unlock()
            imu.defer_recovery = False
            if pel is not None:
                pel.defer_recovery = False

    def _probe_lock(self, imu, pel):
        """Can the FIFO level be read with the heap locked? (It pops nothing.)"""
        heap_lock()
        try:
            imu.fifo_level()
            if pel is not None:
                pel.fifo_level()
            ok = True
        except MemoryError:
            ok = False
        finally:
            heap_unlock()
        return ok

    def _drain(self, now, n, t, period, errs, pel, locked):
        """Read, stamp, fuse and queue n FIFO samples (locked: the caller holds the heap
        lock; a sample whose fusion has float work to do runs unlocked)."""
        clock = self.clock
        imu = self.imu
        pipe = self.pipe
        g = self.gyro
        a = self.accel
        frem = self._frem  # 0 when the ODR divides 1 s (MPU at 100/200 Hz)
        # Locked drains start settled (checked by the caller; commands, which could change
        # that, run in the main loop while the sampler is held): per sample only a filter's
        # once-only work (fxcore.S_EVENT = S[22], set by the previous step) can appear.
        if locked:
            # One kernel call per sample (dgsclip.fxio.fuse_push: fusion, hip angles, ring
            # push) instead of _process -> update_hot -> ring.push and their kernel calls.
            L = self._hot_L
            K = self._hot_K
            pipe.hot_mode(K)
            K[3] = 1 if self.streaming else 0
            fuse = self._fuse_push
            # The pelvis helper's relative-bias snapshot (pipeline.update_hot's hook, which
            # fuse_push bypasses): the same call after each fused thigh + pelvis sample.
            rb = getattr(pipe, "relbias", None)
            # Drivers that pop several packets per transfer (MPU: fifo_read_batch) are read
            # up to fifo_batch packets at a time and decoded in place by the kernel.
            bt = imu.fifo_batch if imu._be6 is not None else 0
            if pel is not None and (pel.fifo_batch == 0 or pel._be6 is None):
                bt = 0
            if bt:
                be6 = imu._be6
                fb = imu.fbatch
                gs = imu._g_scale
                as_ = imu._a_scale
                if pel is not None:
                    pfb = pel.fbatch
                    pgs = pel._g_scale
                    pas = pel._a_scale
                j = kk = 0
                pok = False
        else:
            bt = 0
        nf = 0
        failed = False
        while n > 0:
            n -= 1
            pg = pa = None
            if bt:
                if j == kk:  # this chunk is used up: the next one in one transfer each
                    kk = n + 1 if n < bt else bt
                    j = 0
                    if not imu.fifo_read_batch(kk):
                        failed = True
                        break
                    if pel is not None:
                        pok = pel.fifo_read_batch(kk)
                be6(fb, g, a, gs, as_, 12 * j)
                if pel is not None:
                    if pok:
                        be6(pfb, self.pgyro, self.paccel, pgs, pas, 12 * j)
                        pg, pa = self.pgyro, self.paccel
                    else:
                        self._flags_extra |= FLAG_PELVIS_ERROR
                j += 1
            elif not imu.fifo_read(g, a):
                failed = True
                break
            elif pel is not None:
                if pel.fifo_read(self.pgyro, self.paccel):
                    pg, pa = self.pgyro, self.paccel
                else:
                    self._flags_extra |= FLAG_PELVIS_ERROR
            e = imu.i2c_errors
            if pel is not None:
                e += pel.i2c_errors
            t = clock.ticks_add(t, period)
            dt = period
            if frem:
                f = self._facc + frem
                if f >= self._fodr:
                    f -= self._fodr
                    t = clock.ticks_add(t, 1)
                    dt += 1
                self._facc = f
            if e != errs:
                self._flags_extra |= FLAG_I2C_ERROR
                errs = e
            if not locked:
                self._fuse(t, dt, pg, pa)
            elif fuse(L, K, dt, t, self._flags_extra, e, self.overruns, pg is not None) >= 0:
                self._flags_extra = 0
                nf += 1
                if rb is not None and pg is not None:
                    rb.us += dt
                    if rb.us >= 50000:
                        rb.take(g, pg, L[4], L[6])
            else:
                # The fusion has once-only float work to do (e.g. the accel bias as the
                # first bias learning ends): this sample runs unlocked.
                heap_unlock()
                try:
                    self._process(t, dt, pg, pa, e, False)
                finally:
                    heap_lock()
        if nf:
            self.fused += nf
            pipe.flags = K[4]
        if failed:
            self._bus_failed(now)
            self._t_fifo = None
            return
        self._t_fifo = t
        self._backoff = 0
        self.t_sample = now

    def _fifo_silent(self, now):
        """The FIFO answers but stays empty for 5 periods: a chip reset to its power-on
        defaults (brown-out of the IMU alone) or a FIFO that never fills. Re-apply the
        configuration (it re-arms the FIFO) up to 3 times, then sample by polling."""
        if self.clock.ticks_diff(now, self.t_sample) < 5 * self.fifo_period_us:
            return
        self.t_sample = now  # one attempt per silent window
        if self._rearms < 3:
            self._rearms += 1
            self.fifo_rearms += 1
            try:
                self.imu.configure()
                if self.pelvis_imu is not None:
                    self.pelvis_imu.configure()
            except (OSError, ImuError):
                self._bus_failed(now)
            self._t_fifo = None
            return
        self.fifo = False
        self.imu.fifo_on = False
        if self.pelvis_imu is not None:
            self.pelvis_imu.fifo_on = False
        self._idle = True
        self._fifo_note = "IMU FIFO stays empty after 3 re-arms; sampling by polling"

    def _service_poll(self, now):
        clock = self.clock
        # The fusion runs from boot whether or not frames are streamed: orientation (and
        # its gyro-only heading) and the bias estimate must be current when `start` comes.
        if self._idle:
            self._idle = False
            self.next_due = now
        wait = clock.ticks_diff(self.next_due, now)
        if wait > 0:
            return
        late = -wait
        if late >= self.period_us:
            # Missed at least one period: count it and re-phase instead of bursting.
            self.overruns += late // self.period_us
            self._flags_extra |= FLAG_OVERRUN
            self.next_due = clock.ticks_add(now, self.period_us)
        else:
            self.next_due = clock.ticks_add(self.next_due, self.period_us)
        errs = self.i2c_errors()
        ok = self.imu.read_into(self.gyro, self.accel)
        pg = pa = None
        if self.pelvis_imu is not None:
            if self.pelvis_imu.read_into(self.pgyro, self.paccel):
                pg, pa = self.pgyro, self.paccel
            else:
                self._flags_extra |= FLAG_PELVIS_ERROR
        if self.i2c_errors() != errs:
            self._flags_extra |= FLAG_I2C_ERROR
        if not ok:
            # No fresh data: keep the flags for the next sample; dt then spans the gap.
            self._bus_failed(now)
            return
        self._backoff = 0
        dt = 0
        if self._have_last:
            dt = clock.ticks_diff(now, self.t_last)
        self.t_last = now
        self._have_last = True
        self.t_sample = now
        self._fuse(now, dt, pg, pa)

    def _fuse(self, t, dt, pg, pa):
        """_process with the heap locked once the pipeline is settled (compat): an
        allocation there raises instead of passing unnoticed, and the call frames stay on
        the C stack. Not the I2C reads: a bus implementation may allocate (and a recovery
        needs the heap)."""
        if self._lock_ok and self.pipe.settled():
            heap_lock()
            try:
                self._process(t, dt, pg, pa, self.i2c_errors(), True)
            except MemoryError:
                self._lock_failed()
            finally:
                heap_unlock()
        else:
            self._process(t, dt, pg, pa, self.i2c_errors(), False)

    def _process(self, t, dt, pg, pa, errs, hot):
        """Fuse one sample taken at device time t (dt µs after the previous one) and queue
        it for output. Integers all the way (dgsclip.fxcore): nothing allocated once the
        pipeline is settled."""
        pipe = self.pipe
        if hot:  # settled (checked by the caller): the lean path, same result
            flags = pipe.update_hot(self.gyro, self.accel, dt, pg, pa)
        else:
            flags = pipe.update_fx(self.gyro, self.accel, dt, pg, pa)
        flags |= self._flags_extra
        self._flags_extra = 0
        self.fused += 1
        if not self.streaming:
            return
        pq = None
        if pg is not None:
            pq = pipe.pq14
            flags |= 0x20
        self.ring.push(t, pipe.cd, pipe.q14, flags & 0xFF, errs, self.overruns, pq)

    def _lock_failed(self):
        # No allocation here either (the heap is still locked): attribute stores only.
        self._lock_ok = False
        self.alloc_faults += 1
        self.overruns += 1  # the sample may be lost: count it like a missed period
        self._fifo_note = "an allocation in the sampling path; heap locking switched off"
