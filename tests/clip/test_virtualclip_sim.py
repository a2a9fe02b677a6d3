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
