"""Broker credentials: from the environment or a secrets file, never from argv or logs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge_service.errors import ConfigError

ENV_USER = "DGS_MQTT_USERNAME"
ENV_PASSWORD = "DGS_MQTT_PASSWORD"
ENV_FILE = "DGS_MQTT_SECRETS_FILE"


#: A secrets file holds two short lines; anything much larger is the wrong file.
MAX_SECRETS_BYTES = 64 * 1024


def read_private_text(path: Path, where: str, max_bytes: int, expected: str) -> str:
    """The UTF-8 text of a private secrets file, or ConfigError with one line naming `where`.

    Shared by the MQTT secrets file and the FHIR token file: a regular file (not a directory,
    device or FIFO), readable, private (no group/other bits: chmod 600), at most `max_bytes`."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where} is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Same rule as ssh keys: a world-readable password file is a leak waiting to happen.
        raise ConfigError(f"{where} must not be readable by others (chmod 600)")
    if st.st_size > max_bytes:
        raise ConfigError(f"{where} is {st.st_size} bytes; expected {expected}")
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text (binary file?)") from None


def read_secrets_file(path: Path) -> tuple[str, str | None]:
    """(username, password) from a secrets file, or ConfigError with one line.

    The file must be a regular file (not a directory, device or FIFO), readable, private
    (no group/other permission bits: chmod 600), non-empty, UTF-8 text without control
    characters, with a username on its first line.
    """
    where = f"MQTT secrets file {path}"
    text = read_private_text(path, where, MAX_SECRETS_BYTES, "two short lines")
    if any(ord(c) < 0x20 and c not in "\n\r\t" for c in text) or "\x7f" in text:
        raise ConfigError(f"{where} holds control characters (binary file?)")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(f"{where} must hold a username line")
    password = lines[1] if len(lines) > 1 else None
    return lines[0].strip(), password


def load_credentials(secrets_file: Path | None = None) -> tuple[str, str | None] | None:
    """(username, password) or None for anonymous. The secrets file holds the username on
    its first line and the password on the second; the environment wins over the file."""
    user = os.environ.get(ENV_USER)
    if user:
        return user, os.environ.get(ENV_PASSWORD)
    path = secrets_file or (Path(os.environ[ENV_FILE]) if os.environ.get(ENV_FILE) else None)
    if path is None:
        return None
    return read_secrets_file(path)
