"""Access control for LAN binding: one shared token (or password), stored only as a hash.

The hash is scrypt (hashlib, no extra dependency) with a random salt, written as
`scrypt$N$r$p$salt_hex$hash_hex`, so the config file never holds the token itself.
`dgs-edge workstation-token` makes one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from edge_service.errors import ConfigError

N, R, P = 2**14, 8, 1


def hash_token(token: str, *, salt: bytes | None = None) -> str:
    if len(token) < 12:
        raise ConfigError("the workstation token must be at least 12 characters")
    salt = salt or secrets.token_bytes(16)
    h = hashlib.scrypt(token.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt${N}${R}${P}${salt.hex()}${h.hex()}"


def check_hash_format(stored: str) -> None:
    parts = stored.split("$")
    try:
        ok = (
            len(parts) == 6
            and parts[0] == "scrypt"
            and all(int(x) > 0 for x in parts[1:4])
            and len(bytes.fromhex(parts[4])) >= 8
            and len(bytes.fromhex(parts[5])) == 32
        )
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("token_hash must be 'scrypt$N$r$p$salt$hash' (dgs-edge workstation-token)")


def verify_token(token: str, stored: str) -> bool:
    """Constant-time check of a presented token against the stored hash."""
    try:
        _, n, r, p, salt, want = stored.split("$")
        got = hashlib.scrypt(
            token.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, bytes.fromhex(want))
