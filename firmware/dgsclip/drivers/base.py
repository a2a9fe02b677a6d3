"""Shared I2C plumbing for the IMU drivers: retries, bus re-init, error counters."""

from dgsclip.compat import const

RETRIES = const(3)


class ImuError(Exception):
    """The IMU is missing or not what the config says; the message says what to fix."""


class ImuBase:
    NAME = "imu"
    ADDRESSES = ()
    WHO_AM_I_REG = 0
    WHO_AM_I = {}  # value -> model name

    @classmethod
    def probe(cls, i2c, address):
        """True when a device of this family answers at address (no exception)."""
        buf = bytearray(1)
        try:
            i2c.readfrom_mem_into(address, cls.WHO_AM_I_REG, buf)
        except OSError:
            return False
        return buf[0] in cls.WHO_AM_I

    def __init__(self, i2c, address=None, reinit=None):
        self.i2c = i2c
        self.address = self.ADDRESSES[0] if address is None else address
        # reinit(): rebuilds the bus (e.g. machine.I2C(...) again, or a 9-clock bus clear);
        # returns the new bus object or None to keep the old one.
        self._reinit = reinit
        self.i2c_errors = 0
        self.recoveries = 0
        self._recovering = False
        self._b1 = bytearray(1)
        self.has_fifo = False  # set by drivers whose chip has a FIFO this code can read
        self.fifo_on = False
        self.fifo_overflows = 0  # times the IMU FIFO overflowed (samples lost in the chip)
        who = self._read_reg(self.WHO_AM_I_REG)
        if who not in self.WHO_AM_I:
            raise ImuError(
                "%s at 0x%02x: WHO_AM_I=0x%02x, expected one of %s; wrong address or another "
                "IMU model: set imu to 'auto' in config"
                % (
                    self.NAME,
                    self.address,
                    who,
                    "/".join("0x%02x" % k for k in sorted(self.WHO_AM_I)),
                )
            )
        self.name = self.WHO_AM_I[who]

    def _read_reg(self, reg):
        try:
            self.i2c.readfrom_mem_into(self.address, reg, self._b1)
        except OSError as exc:
            raise ImuError(
                "%s at 0x%02x does not answer (%s); check wiring and address"
                % (self.NAME, self.address, exc)
            )
        return self._b1[0]

    def _write_reg(self, reg, value):
        self._b1[0] = value
        for attempt in range(RETRIES):
            try:
                self.i2c.writeto_mem(self.address, reg, self._b1)
                return
            except OSError:
                self.i2c_errors += 1
                self._recover(attempt)
        raise ImuError(
            "%s at 0x%02x: writing register 0x%02x failed" % (self.NAME, self.address, reg)
        )

    def _read_block(self, reg, buf):
        """Read into buf with retries; False (never an exception) when the bus stays down."""
        for attempt in range(RETRIES):
            try:
                self.i2c.readfrom_mem_into(self.address, reg, buf)
                return True
            except OSError:
                self.i2c_errors += 1
                self._recover(attempt)
        return False

    def _recover(self, attempt):
        # First retry as is (glitch); then rebuild the bus and re-apply the configuration,
        # since a brown-out may have reset the IMU to its power-on defaults.
        if attempt == 0 or self._reinit is None or self._recovering or self.defer_recovery:
            # never recurse: configure() below retries through this same path; and not
            # while the sampler holds the heap locked (a new bus object needs the heap):
            # the read fails, the sampler backs off, the next (unlocked) level read recovers.
            return
        self._recovering = True
        try:
            bus = self._reinit()
            if bus is not None:
                self.i2c = bus
            self.configure()
            self.recoveries += 1
        except (OSError, ImuError):
            pass
        finally:
            self._recovering = False

    def configure(self):
        raise NotImplementedError

    _be6 = None
    defer_recovery = False
    fifo_batch = 0  # packets per transfer of fifo_read_batch (0: one at a time only)

    def raw_units(self):
        """Decode into the fixed-point units of dgsclip.fxcore from now on: ints in
        2**-15 deg/s and 2**-15 g (raw count x full-scale range, exact), into array('i')."""
        self._g_scale = self.gyro_range_dps
        self._a_scale = self.accel_range_g
        from dgsclip import fxcore

        self._be6 = fxcore.load()[6]  # packet decode (viper where available)

    def set_odr(self, hz):
        """Change the output data rate (and re-apply the configuration)."""
        self._set_odr(hz)
        self.configure()

    def _set_odr(self, hz):
        self.odr_hz = hz

    # -- FIFO (drivers with has_fifo implement _fifo_setup/_fifo_level/fifo_read) --------
    def fifo_start(self):
        """Switch to FIFO sampling at the configured ODR; False where not supported."""
        if not self.has_fifo:
            return False
        self.fifo_on = True
        self._fifo_setup()
        return True

    def fifo_level(self):
        """Whole samples waiting in the FIFO; -1 when the bus failed. An overflow resets the
        FIFO (its content can be misaligned), is counted, and reads as 0."""
        try:
            return self._fifo_level()
        except OSError:
            self.i2c_errors += 1
            self._recover(1)
            return -1

    def _fifo_overflowed(self):
        self.fifo_overflows += 1
        self._fifo_setup()
        return 0
