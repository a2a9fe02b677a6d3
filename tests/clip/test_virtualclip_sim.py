"""The host link against the firmware's own app (edge_service.virtualclip) on a real pty."""

from __future__ import annotations

import numpy as np
import pytest
from dgsclip import protocol as P

from edge_service.clip.link import ClipLink
from edge_service.clip.settings import ClipLinkSettings
from edge_service.clip.timeline import AngleTimeline
from edge_service.sim.motion import manoeuvre
from tests.harness.serialpty import wait_until

pytestmark = pytest.mark.sim


def test_link_streams_calibrated_fair_angles_from_virtual_clip() -> None:
    from edge_service.virtualclip import start_virtual_clip

    tl = AngleTimeline(capacity=20_000)
    with (
        start_virtual_clip(manoeuvre("fair"), rate_hz=100, seed=1) as clip,
        ClipLink(ClipLinkSettings(command_timeout_s=1.0), port=clip.port, timeline=tl) as link,
    ):
        info = link.get_info()
        assert info.proto_major == P.PROTO_MAJOR and info.cal_state == P.CAL_FULL
        assert "6050" in info.imus[0]  # the virtual clip simulates an MPU-6050 by default
        link.start()
        wait_until(lambda: len(tl) >= 150, timeout_s=20, what="150 samples from the firmware")
        link.stop()
        assert clip.error is None
    d = link.decoder.stats
    assert d.crc_errors == 0 and d.resyncs == 0 and d.reboots == 0
    w = tl.window(tl.t_first or 0, tl.t_last or 0)
    assert np.all(w.status & P.FLAG_CALIBRATED)
    # FAIR: flexion and internal rotation within the manoeuvre's physiological range.
    assert np.all(np.abs(w.flexion_deg) < 130) and np.all(np.abs(w.rotation_deg) < 60)
    rate = (len(w) - 1) / (w.t[-1] - w.t[0])
    assert 80 < rate < 120
    mid = (w.t[0] + w.t[-1]) / 2
    assert tl.angles_at(mid) is not None


def test_clip_brownout_mid_session_resumes_calibrated_with_an_alarm() -> None:
    """The firmware App reboots (RAM lost, same flash) while the host link streams: the link
    sees the new boot id, raises the alarm with the reset cause, re-sends start, and the
    samples come back calibrated from the stored calibration."""
    from edge_service.clip.link import Alarm
    from edge_service.clip.timeline import TimedSample
    from edge_service.virtualclip import start_virtual_clip

    got: list[TimedSample] = []
    alarms: list[Alarm] = []
    with (
        start_virtual_clip(manoeuvre("fair", repetitions=3), rate_hz=100, seed=6) as clip,
        ClipLink(ClipLinkSettings(command_timeout_s=1.0), port=clip.port) as link,
    ):
        link.subscribe(got.append)
        link.on_alarm(alarms.append)
        boot = link.get_info().boot_id
        assert boot is not None
        link.start()
        wait_until(lambda: len(got) >= 100, timeout_s=20, what="samples before the reboot")
        clip.reboot(P.RESET_HARD)
        wait_until(lambda: link.stats.stream_restarts == 1, timeout_s=20, what="start re-sent")
        n = len(got)
        wait_until(lambda: len(got) >= n + 250, timeout_s=20, what="samples after the reboot")
        d = link.stats_dict()
        assert clip.error is None
    assert d["data_quality"]["clip_reboots"] == 1 and d["clip_reboots"] == 1
    assert d["clip"]["reset_cause"] == "hard_reset" and d["clip"]["boot_id"] == boot + 1
    assert d["alarms"] == []  # nothing left active: it came back calibrated and streaming
    (rebooted,) = [a for a in alarms if a.code == "clip_rebooted"]
    assert rebooted.details["reset_cause"] == "hard_reset"
    after = [ts.sample for ts in got[n:]]
    # The fusion re-initialises for ~1 s, then the stored calibration is re-applied.
    assert all(s.calibrated for s in after[150:])
    assert link.decoder.stats.crc_errors == 0
