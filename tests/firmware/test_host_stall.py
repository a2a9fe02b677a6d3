"""The real App against a model of MicroPython's blocking TinyUSB CDC, in virtual time.

The host stops reading for 30 s in the middle of a FAIR manoeuvre. The CDC model waits up
to 500 ms per write while the port is open but unread (as mp_usbd_cdc_tx_strn does), the
sampler runs on a (virtual) machine.Timer, and the firmware's own UsbIO decides what to
write. Every run is compared with a run whose host never stalls: the same samples must
arrive, bit for bit, with the same device timestamps.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dgsclip import protocol as P
from dgsclip.app import App
from dgsclip.config import validate
from dgsclip.drivers import detect
from dgsclip.storage import DirFS
from dgsclip.usbio import UsbIO

from edge_service.clip.decoder import FrameDecoder
from edge_service.clip.messages import Ack, Sample, Status
from edge_service.sim.fake_i2c import FakeI2C, FakeMPU6050
from edge_service.sim.imu import CAL_FUNCTIONAL_S, CAL_NEUTRAL_S, simulate_imu, with_calibration
from edge_service.sim.motion import manoeuvre
from edge_service.sim.usbcdc import CdcModel
from edge_service.virtualclip import SimClock, SimSource, SimTimer, _AtSource

RATE = 100
MOTION = manoeuvre("fair", repetitions=4)
FULL, OFFSET = with_calibration(MOTION)
IMU = simulate_imu(FULL, side="left", rate_hz=RATE, seed=21)
STALL_S = (OFFSET + 5.0, OFFSET + 35.0)  # 30 s without the host reading


@dataclass
class Run:
    app: App
    cdc: CdcModel
    io: UsbIO
    msgs: list[Any]

    @property
    def samples(self) -> list[Sample]:
        return [m for m in self.msgs if isinstance(m, Sample)]


def _cmd(cdc: CdcModel, t: float, cmd_id: int, cmd: int, ms: int | None = None) -> None:
    args = b"" if ms is None else struct.pack("<H", ms)
    cdc.at(t, P.encode_command(cmd_id, cmd, args))


def run(tmp: Path, stall: tuple[float, float] | None, ring_samples: int = 3000) -> Run:
    clock = SimClock()
    src = SimSource(IMU, RATE, clock, loop_from=int(OFFSET * RATE))
    dev = FakeMPU6050(0x68, source=_AtSource(src.thigh, src.thigh_at), clock=clock)
    imu = detect(FakeI2C([dev]), odr_hz=RATE)
    cdc = CdcModel(clock)
    io = UsbIO(cdc.stdin, cdc, cdc.poll_in, cdc.poll_out, cdc.ticks_ms, lambda a, b: a - b)
    n0, n1 = CAL_NEUTRAL_S
    f0, f1 = CAL_FUNCTIONAL_S
    _cmd(cdc, n0, 1, P.CMD_CALIBRATE_NEUTRAL, int((n1 - n0) * 1000))
    _cmd(cdc, f0, 2, P.CMD_CALIBRATE_FUNCTIONAL, int((f1 - f0) * 1000))
    _cmd(cdc, OFFSET, 3, P.CMD_START)
    tmp.mkdir(exist_ok=True)
    cfg = validate({"side": "left", "rate_hz": RATE, "ring_samples": ring_samples})
    app = App(imu, io, clock, DirFS(str(tmp)), cfg=cfg, timer=SimTimer(clock))
    end_us = int((OFFSET + MOTION.duration_s) * 1e6)
    while clock.elapsed_us() < end_us:
        t = clock.elapsed_us() / 1e6
        cdc.host_reading = stall is None or not (stall[0] <= t < stall[1])
        app.step()
    # Stop sampling; let the ring drain to the (reading) host.
    _cmd(cdc, clock.elapsed_us() / 1e6, 4, P.CMD_GET_STATUS)
    app.streaming = False
    drain_end = clock.elapsed_us() + 2_000_000
    while clock.elapsed_us() < drain_end:
        app.step()
    return Run(app, cdc, io, FrameDecoder().feed(bytes(cdc.received)))


def _by_t(samples: list[Sample]) -> dict[int, tuple[int, ...]]:
    return {
        s.t_us: (s.flex_cdeg, s.add_cdeg, s.rot_cdeg, *s.quat, s.flags & ~P.FLAG_OVERRUN)
        for s in samples
    }


def test_30_s_host_stall_loses_no_sample_and_angles_stay_exact(tmp_path: Path) -> None:
    ref = run(tmp_path / "ref", None)
    got = run(tmp_path / "stall", STALL_S)
    # The stall really happened: one write met the full buffer and waited (TinyUSB's 500 ms,
    # twice: once for the part that still fitted, once for the rest), then UsbIO stopped
    # offering more than POLLOUT allows; the ring held ~30 s of samples meanwhile.
    assert got.io.stalls == 1 and got.cdc.waited_us == 1_000_000
    assert got.app.ring.peak >= 30 * RATE - 50 and got.app.ring.dropped == 0
    assert ref.app.ring.peak < 10
    # 0 samples lost: the same samples, contiguous, at the same device times, bit for bit.
    acks = {m.cmd_id: m for m in got.msgs if isinstance(m, Ack)}
    assert all(acks[i].ok for i in (1, 2, 3))
    s = got.samples
    assert len(s) == len(ref.samples) > (MOTION.duration_s - 1) * RATE
    dec = FrameDecoder()
    dec.feed(bytes(got.cdc.received))
    assert dec.stats.lost_frames == 0 and dec.stats.crc_errors == 0 and dec.stats.resyncs == 0
    dts = np.diff(np.array([x.t_us for x in s], dtype=np.int64)) % P.TICKS_PERIOD
    assert set(dts.tolist()) == {10_000}
    assert _by_t(s) == _by_t(ref.samples)
    # ...and they are right: ISB angles against the simulated truth, after the stall too.
    t = OFFSET + np.arange(len(s)) / RATE + 0.01
    truth = MOTION.angles(t - OFFSET)
    ang = np.array([[x.flexion_deg, x.adduction_deg, x.rotation_deg] for x in s])
    after = t >= STALL_S[1]
    rmse = np.sqrt(((ang[after] - truth[after]) ** 2).mean(0))
    assert rmse.max() < 2.0, rmse
    st = [m for m in got.msgs if isinstance(m, Status)][-1].status
    assert st.ring_dropped == 0 and st.ring_peak == got.app.ring.peak and st.tx_stalls >= 1


def test_stall_beyond_the_ring_drops_whole_samples_and_counts_them(tmp_path: Path) -> None:
    ref = run(tmp_path / "ref", None, ring_samples=500)
    got = run(tmp_path / "stall", STALL_S, ring_samples=500)
    dropped = got.app.ring.dropped
    assert dropped > 2000  # 30 s at 100 Hz into a 5 s ring
    dec = FrameDecoder()
    msgs = dec.feed(bytes(got.cdc.received))
    # Never corrupted: every frame checks, and the host sees the gap as lost frames.
    assert dec.stats.crc_errors == 0 and dec.stats.resyncs == 0
    assert dec.stats.lost_frames == dropped
    s = [m for m in msgs if isinstance(m, Sample)]
    assert len(s) + dropped == len(ref.samples)
    # What arrived is exactly what the clip measured at that instant (fusion never paused).
    r = _by_t(ref.samples)
    assert all(r[k] == v for k, v in _by_t(s).items())
    st = [m for m in msgs if isinstance(m, Status)][-1].status
    assert st.ring_dropped == dropped and st.ring_capacity == 500
