"""Typed exceptions shared across the service. CLIs turn them into one clear line."""

from __future__ import annotations


class DgsError(Exception):
    """Base class: a problem the user can act on. The message says what to fix."""


class ConfigError(DgsError):
    """Invalid or unreadable configuration."""


class InputError(DgsError):
    """A file, device or stream that cannot be used as given."""


class DeviceError(DgsError):
    """A clip or probe that is missing, unplugged or not answering."""


class BrokerError(DgsError):
    """The MQTT broker refused or is unreachable."""


class ModelError(DgsError):
    """A model file that is missing, corrupt or breaks the I/O contract."""


class StorageError(DgsError):
    """The disk is full or failing: what was recorded is kept for `dgs-edge recover`."""
