"""I2C bus clear (NXP UM10204 3.1.16): free a bus whose SDA a slave holds low.

A slave interrupted mid-byte (brown-out of the MCU, a reset during a transfer) keeps
driving SDA low waiting for the clocks it still expects; no START can be sent until it gets
them. Bit-bang up to 9 SCL pulses with SDA released, stop as soon as SDA reads high, then
send a STOP (SDA low -> high while SCL is high). Pins are injected (machine.Pin on the clip,
a model of a stuck slave in the tests), and so is the delay.
"""

HALF_PERIOD_US = 5  # 100 kHz


def bus_clear(pin_cls, scl_id, sda_id, sleep_us):
    """Returns the number of clocks sent (0: SDA was not stuck), or -1 if SDA stays low."""
    sda = pin_cls(sda_id, pin_cls.OPEN_DRAIN, value=1)
    if sda.value():
        return 0
    scl = pin_cls(scl_id, pin_cls.OPEN_DRAIN, value=1)
    clocks = 0
    while clocks < 9 and not sda.value():
        scl.value(0)
        sleep_us(HALF_PERIOD_US)
        scl.value(1)
        sleep_us(HALF_PERIOD_US)
        clocks += 1
    if not sda.value():
        return -1
    # STOP condition: SDA low while SCL is high, then release SDA.
    scl.value(0)
    sleep_us(HALF_PERIOD_US)
    sda.value(0)
    sleep_us(HALF_PERIOD_US)
    scl.value(1)
    sleep_us(HALF_PERIOD_US)
    sda.value(1)
    sleep_us(HALF_PERIOD_US)
    return clocks
