"""Helpers for the firmware tests: drive the firmware App in virtual time, decode its output."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from dgsclip import protocol as P
from dgsclip.app import App
from dgsclip.config import validate
from dgsclip.drivers import detect
from dgsclip.storage import DirFS

from edge_service.clip.decoder import FrameDecoder
from edge_service.sim.fake_i2c import FakeI2C, FakeMPU6050
from edge_service.virtualclip import ScriptedIO, SimClock


class StillSource:
    """A clip lying still, tilted: gravity along +y with a little x, gyro = bias."""

    def __init__(self, bias: tuple[float, float, float] = (0.5, -0.3, 0.2)) -> None:
        self.bias = bias

    def __call__(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.bias, (0.1, 0.995, 0.0)


class Rig:
    def __init__(self, tmp_path: Any, source: Any = None, **cfg: Any) -> None:
        self.clock = SimClock()
        self.dev = FakeMPU6050(0x68, source=source or StillSource(), clock=self.clock)
        self.bus = FakeI2C([self.dev])
        self.io = ScriptedIO(self.clock)
        self.fs = DirFS(str(tmp_path))
        self.imu = detect(self.bus)
        self.app = App(self.imu, self.io, self.clock, self.fs, cfg=validate(cfg))
        self.dec = FrameDecoder()
        self._seen = 0

    def send(self, cmd_id: int, cmd: int, args: bytes = b"", at_s: float | None = None) -> None:
        t = self.clock.elapsed_us() / 1e6 if at_s is None else at_s
        self.io.at(t, P.encode_command(cmd_id, cmd, args))

    def run_for(self, seconds: float) -> list[Any]:
        end = self.clock.elapsed_us() + int(seconds * 1e6)
        while self.clock.elapsed_us() < end and self.app.running:
            self.app.step()
        return self.messages()

    def messages(self) -> list[Any]:
        new = bytes(self.io.out[self._seen :])
        self._seen = len(self.io.out)
        return self.dec.feed(new)


@pytest.fixture
def rig(tmp_path: Any) -> Rig:
    return Rig(tmp_path)


def u16(v: int) -> bytes:
    return struct.pack("<H", v)
