"""Broker credentials: from the environment or a secrets file, never from argv or logs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge_service.errors import ConfigError

ENV_USER = "DGS_MQTT_USERNAME"
ENV_PASSWORD = "DGS_MQTT_PASSWORD"
ENV_FILE = "DGS_MQTT_SECRETS_FILE"


def load_credentials(secrets_file: Path | None = None) -> tuple[str, str | None] | None:
    """(username, password) or None for anonymous. The secrets file holds the username on
    its first line and the password on the second; the environment wins over the file."""
    user = os.environ.get(ENV_USER)
    if user:
        return user, os.environ.get(ENV_PASSWORD)
    path = secrets_file or (Path(os.environ[ENV_FILE]) if os.environ.get(ENV_FILE) else None)
    if path is None:
        return None
    try:
        mode = path.stat().st_mode
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read MQTT secrets file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Same rule as ssh keys: a world-readable password file is a leak waiting to happen.
        raise ConfigError(f"MQTT secrets file {path} must not be readable by others (chmod 600)")
    if not lines or not lines[0].strip():
        raise ConfigError(f"MQTT secrets file {path} must hold a username line")
    password = lines[1] if len(lines) > 1 else None
    return lines[0].strip(), password
