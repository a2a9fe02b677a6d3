"""UIDs under the configured root (`[dicom] uid_root`).

The default root 2.25 turns a random UUID into a UID (ISO/IEC 9834-8), which needs no
registered organisation root; a site with its own root sets it and gets `<root>.<random>`.
Never pydicom's shared example root."""

from __future__ import annotations

import uuid

from pydicom.uid import generate_uid

UUID_ROOT = "2.25"


def make_uid(root: str = UUID_ROOT) -> str:
    if root == UUID_ROOT:
        return f"2.25.{uuid.uuid4().int}"
    # generate_uid with a prefix hashes fresh entropy into the remaining digits (<= 64 chars).
    return str(generate_uid(prefix=root.rstrip(".") + "."))
