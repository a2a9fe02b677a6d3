"""Settings of the clip link (serial port, commands, reconnect), clock sync and angle timeline."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# USB VID:PID of boards the clip firmware runs on (MicroPython's own CDC ids first, then the
# common USB-UART bridges of ESP32 dev boards).
DEFAULT_VID_PIDS = [
    "2E8A:0005",  # Raspberry Pi RP2040 / RP2350, MicroPython CDC
    "303A:1001",  # Espressif ESP32-S2/S3/C3 USB-Serial-JTAG
    "303A:4001",  # Espressif TinyUSB CDC (MicroPython on S2/S3)
    "10C4:EA60",  # Silicon Labs CP210x bridge
    "1A86:7523",  # WCH CH340 bridge
    "1A86:55D4",  # WCH CH9102 bridge
    "0403:6001",  # FTDI FT232R bridge
    "239A:80F4",  # Adafruit QT Py RP2040
]


class ClockSyncSettings(BaseModel):
    """Device-tick to host-time fit (lower envelope of arrival - device time)."""

    model_config = ConfigDict(extra="forbid")

    latency_floor_s: float = Field(
        default=0.0,
        ge=0,
        le=0.1,
        description="constant delay the envelope cannot see: the clip's minimum time from "
        "IMU read to USB write plus the minimum USB transfer time. Subtracted from every "
        "estimate; measure it once per board on hardware (docs/link.md)",
    )

    bin_s: float = Field(
        default=1.0, gt=0, description="device seconds per bin; one minimum per bin"
    )
    window_s: float = Field(
        default=600.0, gt=0, description="device seconds of bins kept for the fit"
    )
    max_drift_ppm: float = Field(
        default=1000.0, gt=0, description="clip crystal drift bound; fits beyond it are rejected"
    )
    outlier_ms: float = Field(
        default=2.0, gt=0, description="bin minima this far above the fit (plus 3 MAD) are outliers"
    )
    step_reset_ms: float = Field(
        default=5.0,
        gt=0,
        description="a sample this far BELOW the fit is impossible with one-sided latency: "
        "after 3 in a row the clock stepped or the clip reset unnoticed, so refit",
    )


class TimelineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capacity_samples: int = Field(
        default=200 * 60 * 20, gt=1, description="ring size: 20 min at the clip's 200 Hz maximum"
    )
    max_gap_s: float = Field(
        default=0.1, gt=0, description="never interpolate across a gap longer than this (unknown)"
    )


class ClipLinkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: str | None = Field(default=None, description="serial device; None = auto-detect")
    baudrate: int = Field(
        default=115200, gt=0, description="ignored by USB CDC, used by UART bridges"
    )
    vid_pids: list[str] = Field(default_factory=lambda: list(DEFAULT_VID_PIDS))
    handshake_timeout_s: float = Field(
        default=0.7, gt=0, description="hello/info wait when probing"
    )
    command_timeout_s: float = Field(default=0.5, gt=0, description="wait for ACK/NAK per attempt")
    command_retries: int = Field(default=2, ge=0, description="re-sends (same id) after a timeout")
    calibrate_margin_s: float = Field(
        default=2.0, ge=0, description="added to a calibration's duration for its ACK timeout"
    )
    reconnect_initial_s: float = Field(default=0.05, gt=0, description="first reconnect back-off")
    reconnect_max_s: float = Field(default=2.0, gt=0, description="back-off doubles up to this")
    read_chunk_bytes: int = Field(default=4096, gt=0, description="most bytes taken per read")
    clock: ClockSyncSettings = Field(default_factory=ClockSyncSettings)
    timeline: TimelineSettings = Field(default_factory=TimelineSettings)
