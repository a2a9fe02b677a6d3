"""The 9-clock I2C bus clear against a model of a slave stuck mid-byte, and the bus factory
main.py builds (timeout passed to machine.I2C, clear before every (re)init)."""

from __future__ import annotations

from typing import Any

import pytest
from dgsclip.busclear import bus_clear


class StuckBus:
    """SDA and SCL lines; a slave holding SDA low until it has seen `pending` SCL pulses."""

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.scl_level = 1
        self.sda_driven_low = False  # by the master
        self.pulses = 0
        self.stop_seen = False

    def sda(self) -> int:
        return 0 if (self.pending > 0 or self.sda_driven_low) else 1


def pin_class(bus: StuckBus) -> Any:
    class Pin:
        OPEN_DRAIN = 2

        def __init__(self, n: int, mode: int, value: int = 1) -> None:
            self.n = n
            self.value(value)

        def value(self, *v: int) -> int:
            if v:
                if self.n == 5:  # SCL
                    if bus.scl_level == 0 and v[0] == 1 and bus.pending > 0:
                        bus.pending -= 1  # the slave clocks out one bit per pulse
                    if bus.scl_level == 0 and v[0] == 1:
                        bus.pulses += 1
                    bus.scl_level = v[0]
                else:  # SDA
                    if bus.sda_driven_low and v[0] == 1 and bus.scl_level == 1:
                        bus.stop_seen = True
                    bus.sda_driven_low = v[0] == 0
                return v[0]
            return bus.sda() if self.n == 4 else bus.scl_level

    return Pin


@pytest.mark.parametrize("pending", [1, 5, 9])
def test_stuck_sda_is_released_with_clocks_and_a_stop(pending: int) -> None:
    bus = StuckBus(pending)
    n = bus_clear(pin_class(bus), 5, 4, lambda us: None)
    assert n == pending and bus.pending == 0
    assert bus.stop_seen and bus.sda() == 1 and bus.scl_level == 1


def test_free_bus_is_left_alone_and_a_dead_one_is_reported() -> None:
    free = StuckBus(0)
    assert bus_clear(pin_class(free), 5, 4, lambda us: None) == 0 and free.pulses == 0
    dead = StuckBus(100)  # shorted SDA: 9 clocks do not help
    assert bus_clear(pin_class(dead), 5, 4, lambda us: None) == -1 and dead.pulses == 9
