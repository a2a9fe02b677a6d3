"""dgsclip: the wearable hip-angle clip's portable firmware core.

Everything in this package runs on MicroPython (RP2040/ESP32) and on CPython: hardware,
time and the filesystem are injected, so the virtual clip, `dgs-clip replay` and the host
tests run the very same modules as the device.
"""

VERSION = "0.1.0"
