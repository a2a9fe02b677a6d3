"""The topic tree `dgs/v1/{site}/{device}/...` (contract 4 of the design)."""

from __future__ import annotations

import re

ROOT = "dgs/v1"
SCHEMA_VERSION = "1"
# Pseudonymous session ids only: they must not be able to hold a name or an MRN with spaces.
# fullmatch, never match with `$`: `$` also matches before a trailing newline, and the
# broker drops a client whose topic holds one.
_SESSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def base(site: str, device: str) -> str:
    return f"{ROOT}/{site}/{device}"


def status(site: str, device: str) -> str:
    return f"{base(site, device)}/status"


def live(site: str, device: str, stream: str) -> str:
    return f"{base(site, device)}/live/{stream}"


def check_session_id(session_id: str) -> str:
    # fullmatch: with match(), '$' also accepts a trailing newline, which brokers refuse.
    if not isinstance(session_id, str) or not _SESSION.fullmatch(session_id):
        raise ValueError(
            f"session id {session_id!r} is not a pseudonymous slug [A-Za-z0-9_-], max 64 chars"
        )
    return session_id


def session(site: str, device: str, session_id: str, leaf: str) -> str:
    return f"{base(site, device)}/sessions/{check_session_id(session_id)}/{leaf}"


def subscription(site: str | None = None, device: str | None = None) -> str:
    return f"{ROOT}/{site or '+'}/{device or '+'}/#"


def parse(topic: str) -> dict[str, str] | None:
    """Split a topic of the tree into its parts; None when it is not one of ours."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        return None
    out = {"site": parts[2], "device": parts[3]}
    rest = parts[4:]
    if rest == ["status"]:
        out["kind"] = "status"
    elif len(rest) == 2 and rest[0] == "live":
        out["kind"] = f"live/{rest[1]}"
    elif (
        len(rest) == 3
        and rest[0] == "sessions"
        and rest[2] in ("events", "result", "fhir", "procedure")
    ):
        out["kind"] = rest[2]
        out["session_id"] = rest[1]
    else:
        return None
    return out
