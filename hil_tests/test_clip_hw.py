"""Hardware-in-the-loop: a real clip on DGS_CLIP_PORT (skipped with the reason otherwise).

Run with `pytest --hil hil_tests/test_clip_hw.py` after `dgs-clip flash --port $DGS_CLIP_PORT`,
with the clip lying still on a table.
"""

from __future__ import annotations

import json
import time

import pytest
from dgsclip import VERSION
from dgsclip import protocol as P

pytestmark = pytest.mark.hil


def _exchange(port, dec, frame: bytes, cmd_id: int, timeout_s: float = 5.0):
    from edge_service.clip.messages import Ack

    port.write(frame)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for m in dec.feed(port.read(4096)):
            if isinstance(m, Ack) and m.cmd_id == cmd_id:
                return m
    raise AssertionError(f"no reply to command {cmd_id} within {timeout_s} s")


def test_real_clip_info_self_test_and_stream(clip_port):
    import serial

    from edge_service.clip.decoder import FrameDecoder
    from edge_service.clip.messages import Sample

    with serial.Serial(clip_port, 115200, timeout=0.05) as port:
        dec = FrameDecoder()
        port.write(b"\x00")
        info = _exchange(port, dec, P.encode_command(101, P.CMD_INFO), 101).info()
        assert info.fw_version == VERSION and info.imu_models
        rep = _exchange(port, dec, P.encode_command(102, P.CMD_SELF_TEST), 102)
        assert rep.ok, rep.text()
        assert json.loads(rep.payload)["reads_ok"] == 20
        _exchange(port, dec, P.encode_command(103, P.CMD_START), 103)
        got: list[Sample] = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and len(got) < 150:
            got += [m for m in dec.feed(port.read(4096)) if isinstance(m, Sample)]
        _exchange(port, dec, P.encode_command(104, P.CMD_STOP), 104)
    assert len(got) >= 150
    span = ((got[149].t_us - got[0].t_us) % P.TICKS_PERIOD) / 1e6
    assert span == pytest.approx(149 / info.rate_hz, rel=0.05)
    assert dec.stats.crc_errors == 0
