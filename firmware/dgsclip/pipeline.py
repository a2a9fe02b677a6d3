"""Per-sample processing: fusion -> segment orientation -> hip angles, plus calibration.

Shared by the app loop (samples from the IMU drivers), `dgs-clip replay` (samples from a
CSV) and the virtual clip. Inputs are gyro deg/s and accel g in the board frame; dt comes
from device ticks.
"""

from array import array

from dgsclip import quat
from dgsclip.calib import Calibration, CalibrationError, Calibrator
from dgsclip.fusion import FLAG_ACCEL_REJECTED, FLAG_INITIALISING, FLAG_STATIONARY, Mahony
from dgsclip.hip import HipAngles
from dgsclip.pelvis import PelvisAlign

# Sample status flags: the protocol's SAMPLE flag bits (stationary/accel_rejected come
# from the fusion with the same values).
FLAG_CALIBRATED = 0x0001
FLAG_I2C_ERROR = 0x0008
FLAG_OVERRUN = 0x0010
FLAG_PELVIS = 0x0020
FLAG_CALIBRATING = 0x0040
FLAG_PELVIS_ERROR = 0x0080

MODE_RUN = 0
MODE_NEUTRAL = 1
MODE_FUNCTIONAL = 2

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
        self.cal = Calibration()
        self.calibrator = Calibrator()
        self.hip = HipAngles(side)
        self.q_thigh_seg = array("f", (1.0, 0.0, 0.0, 0.0))
        self.q_pelvis_seg = array("f", (1.0, 0.0, 0.0, 0.0))
        self.angles = self.hip.out
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

    def update(self, g, a, dt, pg=None, pa=None):
        """g, a: thigh gyro (deg/s) and accel (g) 3-sequences; pg/pa: pelvis. -> flags."""
        th = self.thigh
        flags = th.update(g[0], g[1], g[2], a[0], a[1], a[2], dt)
        pel = self.pelvis
        if pel is not None and pg is not None:
            flags |= pel.update(pg[0], pg[1], pg[2], pa[0], pa[1], pa[2], dt) & FLAG_ACCEL_REJECTED
            flags |= FLAG_PELVIS
        cal = self.cal
        mode = self.mode
        if mode != MODE_RUN:
            flags |= FLAG_CALIBRATING
            if mode == MODE_NEUTRAL:
                self.calibrator.add_neutral(
                    a[0], a[1], a[2], th.q, pel.q if pel is not None else None
                )
                th.window_add(g[0], g[1], g[2])
                if pel is not None and pg is not None:
                    self.palign.add_neutral(pel.q)
                    pel.window_add(pg[0], pg[1], pg[2])
            else:
                b = th.bias
                gx, gy, gz = g[0] - b[0], g[1] - b[1], g[2] - b[2]
                self.calibrator.add_functional(gx, gy, gz)
                if pel is not None and pg is not None:
                    pb = pel.bias
                    self.palign.add_functional(
                        pg[0] - pb[0], pg[1] - pb[1], pg[2] - pb[2], gx, gy, gz
                    )
            self._left -= 1
            if self._left <= 0:
                self._finish_calibration()
        quat.mul_into(self.q_thigh_seg, th.q, cal.mount)
        if cal.restore_pending and not flags & FLAG_INITIALISING and pel is None:
            # First settled sample after a reboot with a stored calibration (thigh mode).
            cal.restore_heading(self.q_thigh_seg)
            self.calibrator.restored(cal.up)
        pa = self.palign
        if pa is not None and cal.calibrated and pa.ready:
            pa.segment_into(self.q_pelvis_seg, pel.q, cal)
            self.hip.compute(self.q_pelvis_seg, self.q_thigh_seg)
        else:
            self.hip.compute(cal.pelvis_ref, self.q_thigh_seg)
        if cal.calibrated:
            flags |= FLAG_CALIBRATED
        self.flags = flags
        return flags
