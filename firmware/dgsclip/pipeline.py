"""Per-sample processing: fusion -> segment orientation -> hip angles, plus calibration.

Shared by the app loop (samples from the IMU drivers), `dgs-clip replay` (samples from a
CSV) and the virtual clip. Inputs are gyro and accel in the board frame; dt comes from
device ticks. Two entry points compute the same thing:
  update_fx(G, A, dt_us, ...)  fixed-point units of dgsclip.fxcore (the drivers' raw_units
                               mode): the clip's sampling path; allocates nothing per sample
                               while no calibration step runs.
  update(g, a, dt, ...)        floats (deg/s, g, s), for replay and tests: converts, calls
                               update_fx and fills the float views angles, q_thigh_seg,
                               q_pelvis_seg.
Outputs of update_fx: cd (centidegrees, the wire unit), seg / pseg (Q28 segment
quaternions), q14 / pq14 (the wire's Q14).
"""

from array import array

from dgsclip import fxcore as fx
from dgsclip.calib import Calibration, CalibrationError, Calibrator
from dgsclip.compat import const
from dgsclip.fusion import FLAG_ACCEL_REJECTED, FLAG_INITIALISING, FLAG_STATIONARY, Mahony
from dgsclip.hip import HipAngles
from dgsclip.pelvis import PelvisAlign

# Sample status flags: the protocol's SAMPLE flag bits (stationary/accel_rejected come
# from the fusion with the same values).
FLAG_CALIBRATED = const(0x0001)
FLAG_I2C_ERROR = const(0x0008)
FLAG_OVERRUN = const(0x0010)
FLAG_PELVIS = const(0x0020)
FLAG_CALIBRATING = const(0x0040)
FLAG_PELVIS_ERROR = const(0x0080)

MODE_RUN = const(0)
MODE_NEUTRAL = const(1)
MODE_FUNCTIONAL = const(2)

__all__ = [
    "FLAG_ACCEL_REJECTED",
    "FLAG_CALIBRATED",
    "FLAG_CALIBRATING",
    "FLAG_I2C_ERROR",
    "FLAG_INITIALISING",
    "FLAG_OVERRUN",
    "FLAG_PELVIS",
    "FLAG_PELVIS_ERROR",
    "FLAG_STATIONARY",
    "Pipeline",
]


class Pipeline:
    def __init__(self, side="right", pelvis=False, fusion=None):
        fusion = fusion or {}
        self.thigh = Mahony(**fusion)
        self.pelvis = Mahony(**fusion) if pelvis else None
        self.palign = PelvisAlign() if pelvis else None
        # pelvis: relative gyro-bias learner (dgsclip.relbias.RelBias; snapshot here, the
        # float work in slow())
        self.relbias = None
        if pelvis:
            from dgsclip.relbias import RelBias  # only in pelvis mode (see its docstring)

            self.relbias = RelBias()
        self.cal = Calibration()
        self.calibrator = Calibrator()
        self.hip = HipAngles(side)
        self.q_thigh_seg = array("f", (1.0, 0.0, 0.0, 0.0))
        self.q_pelvis_seg = array("f", (1.0, 0.0, 0.0, 0.0))
        self.angles = self.hip.out
        # Fixed-point state of the hot path (Q28 quaternions, centidegree angles).
        k = fx.load()
        self._qmul, self._hip, self._q14 = k[1], k[2], k[7]
        self._tab = fx.cordic_table()
        self.seg = array("i", (fx.ONE, 0, 0, 0))
        self.pseg = array("i", (fx.ONE, 0, 0, 0))
        self._t = array("i", (fx.ONE, 0, 0, 0))
        self._rel = array("i", (fx.ONE, 0, 0, 0))
        self._mount = array("i", (fx.ONE, 0, 0, 0))
        self._pmount = array("i", (fx.ONE, 0, 0, 0))
        self._pref = array("i", (fx.ONE, 0, 0, 0))
        self._pframe = array("i", (fx.ONE, 0, 0, 0))
        self.cd = array("i", (0, 0, 0))
        self.q14 = array("h", (16384, 0, 0, 0))
        self.pq14 = array("h", (16384, 0, 0, 0))
        self._g = array("i", (0, 0, 0))
        self._a = array("i", (0, 0, 0))
        self._pg = array("i", (0, 0, 0))
        self._pa = array("i", (0, 0, 0))
        self._cal_ver = -1
        self._mirror = 0
        self.mode = MODE_RUN
        self._left = 0
        self.cal_done = None  # (kind, error message or None) once a calibration step ends
        self.flags = 0

    def begin_calibration(self, kind, n_samples):
        """kind: MODE_NEUTRAL or MODE_FUNCTIONAL, collected over the next n_samples."""
        if kind == MODE_NEUTRAL:
            self.calibrator.start_neutral()
            self.thigh.window_start()
            if self.pelvis is not None:
                self.pelvis.window_start()
        elif kind == MODE_FUNCTIONAL:
            self.calibrator.start_functional()
            if self.palign is not None:
                self.palign.start_functional()
        else:
            raise ValueError("unknown calibration kind")
        self.mode = kind
        self._left = n_samples
        self.cal_done = None

    def _finish_calibration(self):
        kind = self.mode
        self.mode = MODE_RUN
        try:
            if kind == MODE_NEUTRAL:
                self.calibrator.finish_neutral(self.cal)
                self.thigh.window_seed_bias()
                if self.pelvis is not None:
                    self.pelvis.window_seed_bias()
                    self.relbias.anchor(self.thigh.S, self.pelvis.S)  # pelvis hook
            else:
                self.calibrator.finish_functional(self.cal)
                pa = self.palign
                if pa is not None and pa.n_functional > 0:
                    pa.finish_functional(self.cal)
            if self.palign is not None and self.cal.calibrated:
                self.palign.update_frame(self.cal)
            self.cal_done = (kind, None)
        except CalibrationError as exc:
            self.cal_done = (kind, str(exc))

    def _sync_cal(self):
        """Fixed-point copies of the calibration's quaternions (after any change)."""
        cal = self.cal
        _to_fx(self._mount, cal.mount)
        _to_fx(self._pmount, cal.pelvis_mount)
        _to_fx(self._pref, cal.pelvis_ref)
        if self.palign is not None:
            _to_fx(self._pframe, self.palign.frame)
        self._mirror = 1 if self.hip.mirror else 0
        self._cal_ver = cal.ver

    def settled(self):
        """True when update_fx allocates nothing: no calibration step running, no stored
        calibration waiting for its heading, both filters settled (see Mahony.settled)."""
        cal = self.cal
        th = self.thigh
        # Mahony.settled inlined (S[22] is fxcore.S_EVENT): this runs once per sample.
        if self.mode != MODE_RUN or cal.restore_pending or not th._started or th.S[22]:
            return False
        if cal.ver != self._cal_ver or self.hip.mirror != self._mirror:
            return False  # the fixed-point copies of the calibration are made first
        pel = self.pelvis
        return pel is None or (pel._started and not pel.S[22])

    def update(self, g, a, dt, pg=None, pa=None):
        """g, a: thigh gyro (deg/s) and accel (g) 3-sequences; pg/pa: pelvis. -> flags."""
        G = self._g
        A = self._a
        for i in range(3):
            G[i] = int(round(g[i] * 32768.0))
            A[i] = int(round(a[i] * 32768.0))
        PG = PA = None
        if pg is not None:
            PG = self._pg
            PA = self._pa
            for i in range(3):
                PG[i] = int(round(pg[i] * 32768.0))
                PA[i] = int(round(pa[i] * 32768.0))
        flags = self.update_fx(G, A, int(round(dt * 1e6)), PG, PA)
        self.slow()  # on the clip the main loop calls it (low rate, outside the heap lock)
        self.thigh.sync()
        if self.pelvis is not None:
            self.pelvis.sync()
        out = self.angles
        cd = self.cd
        for i in range(3):
            out[i] = cd[i] * 0.01
        _to_float(self.q_thigh_seg, self.seg)
        _to_float(self.q_pelvis_seg, self.pseg)
        return flags

    def update_fx(self, G, A, dt_us, PG=None, PA=None):
        """G, A: thigh gyro (2**-15 deg/s) and accel (2**-15 g) int arrays; PG/PA: pelvis;
        dt in µs. -> flags."""
        th = self.thigh
        flags = th.update_fx(G, A, dt_us)
        pel = self.pelvis
        if pel is not None and PG is not None:
            flags |= pel.update_fx(PG, PA, dt_us) & FLAG_ACCEL_REJECTED
            flags |= FLAG_PELVIS
            # >>> pelvis relative-bias hook (dgsclip.relbias.RelBias): ints only
            rb = self.relbias
            rb.us += dt_us
            if rb.us >= 50000:  # relbias.REL_PERIOD_US
                rb.take(G, PG, th.S, pel.S)
            # <<< pelvis relative-bias hook
        cal = self.cal
        if self.mode != MODE_RUN:
            flags |= FLAG_CALIBRATING
            self._calibrating(G, A, PG)
        if cal.ver != self._cal_ver or self.hip.mirror != self._mirror:
            self._sync_cal()
        qmul = self._qmul
        seg = self.seg
        qmul(seg, th.S, self._mount, 0)
        if cal.restore_pending and not flags & FLAG_INITIALISING and pel is None:
            # First settled sample after a reboot with a stored calibration (thigh mode).
            _to_float(self.q_thigh_seg, seg)
            cal.restore_heading(self.q_thigh_seg)
            self.calibrator.restored(cal.up)
            self._sync_cal()
        calibrated = cal.has_mount and cal.has_neutral  # cal.calibrated, no property call
        pa = self.palign
        rel = self._rel
        if pa is not None and calibrated and pa.ready:
            t = self._t
            pseg = self.pseg
            qmul(t, pel.S, self._pmount, 0)
            qmul(pseg, self._pframe, t, 0)
            qmul(rel, pseg, seg, 1)
            self._q14(self.pq14, pseg)
        else:
            qmul(rel, self._pref, seg, 1)
        self._hip(self.cd, rel, self._tab, self._mirror)
        self._q14(self.q14, seg)
        if calibrated:
            flags |= FLAG_CALIBRATED
        self.flags = flags
        return flags

    def update_hot(self, G, A, dt_us, PG, PA):
        """update_fx for a settled pipeline (settled() is True: no calibration step, no
        restore pending, the fixed-point calibration current, no once-only fusion work):
        the same result with less bytecode. The sampler's heap-locked path."""
        th = self.thigh
        flags = th._step(th.S, G, A, th.C, dt_us)
        pel = self.pelvis
        if pel is not None and PG is not None:
            flags |= (pel._step(pel.S, PG, PA, pel.C, dt_us) & FLAG_ACCEL_REJECTED) | FLAG_PELVIS
            # >>> pelvis relative-bias hook (dgsclip.relbias.RelBias): ints only
            rb = self.relbias
            rb.us += dt_us
            if rb.us >= 50000:  # REL_PERIOD_US (a literal: no global lookup per sample)
                rb.take(G, PG, th.S, pel.S)
            # <<< pelvis relative-bias hook
        qmul = self._qmul
        seg = self.seg
        qmul(seg, th.S, self._mount, 0)
        cal = self.cal
        calibrated = cal.has_mount and cal.has_neutral
        pa = self.palign
        rel = self._rel
        if pa is not None and calibrated and pa.ready:
            t = self._t
            pseg = self.pseg
            qmul(t, pel.S, self._pmount, 0)
            qmul(pseg, self._pframe, t, 0)
            qmul(rel, pseg, seg, 1)
            self._q14(self.pq14, pseg)
        else:
            qmul(rel, self._pref, seg, 1)
        self._hip(self.cd, rel, self._tab, self._mirror)
        self._q14(self.q14, seg)
        if calibrated:
            flags |= FLAG_CALIBRATED
        self.flags = flags
        return flags

    def hot_arrays(self, G, A, PG, PA, ring):
        """The arrays dgsclip.fxio.fuse_push works on (its L), in its order; built once by
        the sampler (none of them is ever replaced)."""
        th = self.thigh
        pel = th if self.pelvis is None else self.pelvis
        return (
            G, A, PG, PA, th.S, th.C, pel.S, pel.C, self.seg, self._rel, self._t, self.pseg,
            self._mount, self._pmount, self._pref, self._pframe, self.cd, self.q14, self.pq14,
            self._tab, ring.v, ring.r, ring.m,
        )  # fmt: skip

    def hot_mode(self, K):
        """fuse_push's K[0..2] (pelvis frame mode, mirror, calibrated) from the current
        calibration, as update_hot decides them; valid while settled() holds."""
        cal = self.cal
        calibrated = cal.has_mount and cal.has_neutral
        pa = self.palign
        K[0] = 1 if pa is not None and calibrated and pa.ready else 0
        K[1] = self._mirror
        K[2] = 1 if calibrated else 0

    def slow(self):
        """Low-rate float work of the pelvis mode (main loop, heap unlocked, sampler held):
        the relative gyro-bias learner's pending snapshot. True when biases changed."""
        rb = self.relbias
        if rb is None or not rb.snap[15]:
            return False
        pa = self.palign
        cal = self.cal
        if self.mode != MODE_RUN or not (cal.has_mount and cal.has_neutral and pa.ready):
            return rb.idle()
        cd = self.cd
        lim = rb.POSE_CD
        neutral = -lim < cd[0] < lim and -lim < cd[1] < lim and -lim < cd[2] < lim
        if rb.process(self.thigh.S, self.pelvis.S, pa.frame, True, neutral):
            _to_fx(self._pframe, pa.frame)  # the bridge may have turned the frame
            return True
        return False

    def _calibrating(self, G, A, PG):
        """A calibration step collects this sample (floats: a few seconds, allocates)."""
        th = self.thigh
        pel = self.pelvis
        th.sync()
        if pel is not None:
            pel.sync()
        if self.mode == MODE_NEUTRAL:
            k = 1.0 / fx.G1
            self.calibrator.add_neutral(
                A[0] * k, A[1] * k, A[2] * k, th.q, pel.q if pel is not None else None
            )
            th.window_add_fx(G)
            if pel is not None and PG is not None:
                self.palign.add_neutral(pel.q)
                pel.window_add_fx(PG)
        else:
            k = 1.0 / 32768.0
            b = th.bias
            gx, gy, gz = G[0] * k - b[0], G[1] * k - b[1], G[2] * k - b[2]
            self.calibrator.add_functional(gx, gy, gz)
            if pel is not None and PG is not None:
                pb = pel.bias
                self.palign.add_functional(
                    PG[0] * k - pb[0], PG[1] * k - pb[1], PG[2] * k - pb[2], gx, gy, gz
                )
        self._left -= 1
        if self._left <= 0:
            self._finish_calibration()
            self.cal.ver += 1


def _to_fx(dst, src):
    for i in range(4):
        dst[i] = int(round(src[i] * fx.ONE))


def _to_float(dst, src):
    for i in range(4):
        dst[i] = src[i] * (1.0 / fx.ONE)
