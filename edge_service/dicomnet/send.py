"""Send one DICOM file to one destination: C-STORE (pynetdicom) or STOW-RS (multipart/related
over plain urllib). Failures are classified: `TransientSendError` (retry with back-off:
unreachable, timeout, out of resources, 5xx, 408/429) or `PermanentSendError` (park with the
reason: association rejected permanently, refused SOP class, 4xx)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.presentation import build_context

from edge_service.dicomnet.urls import DicomUrl, DicomWebUrl, parse_destination
from edge_service.errors import DgsError


class SendError(DgsError):
    """A destination did not confirm the instance."""


class TransientSendError(SendError):
    pass


class PermanentSendError(SendError):
    pass


def send_file(dest: str, path: Path, *, calling_aet: str, timeout_s: float) -> str:
    """Send; returns a short success note, raises a SendError subclass otherwise."""
    d = parse_destination(dest)
    if isinstance(d, DicomUrl):
        return _cstore(d, path, calling_aet, timeout_s)
    return _stow(d, path, timeout_s)


def _cstore(d: DicomUrl, path: Path, calling_aet: str, timeout_s: float) -> str:
    try:
        ds = dcmread(path)
    except (OSError, ValueError) as exc:
        raise PermanentSendError(f"cannot read {path.name}: {exc}") from None
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ts = str(ds.file_meta.TransferSyntaxUID)
    sop = str(ds.SOPClassUID)
    native: list[str] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    # The stored syntax (the cine is JPEG-LS lossless) in a context of its own, and the
    # uncompressed ones beside it: a PACS that does not take JPEG-LS gets the same pixels
    # decompressed (lossless either way) instead of a refused association.
    contexts = [build_context(sop, [ts])] if ts not in native else []
    contexts.append(build_context(sop, native))
    try:
        assoc = ae.associate(d.host, d.port, ae_title=d.aet, contexts=contexts)
    except OSError as exc:
        raise TransientSendError(f"{d}: {exc}") from None
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        # Result 1 = rejected-permanent (e.g. unknown called AET), 2 = transient.
        msg = f"{d}: association rejected (result {getattr(rsp, 'result', '?')}, reason {getattr(rsp, 'diagnostic', '?')})"
        if getattr(rsp, "result", None) == 1:
            raise PermanentSendError(msg)
        raise TransientSendError(msg)
    if not assoc.is_established:
        raise TransientSendError(f"{d}: unreachable or aborted")
    try:
        accepted = {c.transfer_syntax[0] for c in assoc.accepted_contexts if c.result == 0}
        if not accepted:
            raise PermanentSendError(f"{d}: refuses SOP class {ds.SOPClassUID}")
        if ts not in accepted:
            try:
                ds.decompress()  # to Explicit VR Little Endian, pixel for pixel
            except Exception as exc:  # a codec missing or a corrupt fragment: park, say why
                raise PermanentSendError(
                    f"{d}: does not accept {ts} and {path.name} cannot be decompressed: {exc}"
                ) from None
        try:
            status = assoc.send_c_store(ds)
        except ValueError as exc:  # no accepted context fits after all
            raise PermanentSendError(f"{d}: {exc}") from None
    finally:
        if assoc.is_established:
            assoc.release()
    if not status or "Status" not in status:
        raise TransientSendError(f"{d}: no C-STORE response (timeout or abort)")
    code = int(status.Status)
    if code == 0x0000 or (code & 0xF000) == 0xB000:
        return f"C-STORE 0x{code:04X}"
    if (code & 0xFF00) == 0xA700:
        raise TransientSendError(f"{d}: out of resources (0x{code:04X})")
    raise PermanentSendError(f"{d}: C-STORE refused with status 0x{code:04X}")


def _stow(d: DicomWebUrl, path: Path, timeout_s: float) -> str:
    try:
        part = path.read_bytes()
    except OSError as exc:
        raise PermanentSendError(f"cannot read {path.name}: {exc}") from None
    boundary = f"dgs-{uuid.uuid4().hex}"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part
            + f"\r\n--{boundary}--\r\n".encode())  # fmt: skip
    req = urllib.request.Request(
        d.base + "/studies",
        data=body,
        method="POST",
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            code = r.status
            text = r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip()
        msg = f"{d}: STOW-RS HTTP {exc.code} {detail}"
        if exc.code >= 500 or exc.code in (408, 429):
            raise TransientSendError(msg) from None
        raise PermanentSendError(msg) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise TransientSendError(f"{d}: {getattr(exc, 'reason', exc)}") from None
    # 202 = stored with warnings or partly failed: a FailedSOPSequence (0008,1198) says which.
    if code in (200, 202) and not _failed_sops(text):
        return f"STOW-RS HTTP {code}"
    raise PermanentSendError(f"{d}: STOW-RS HTTP {code}: {text[:200]}")


def _failed_sops(text: str) -> list[object]:
    """The FailedSOPSequence (0008,1198) of a STOW-RS answer (empty when all were stored)."""
    try:
        doc = json.loads(text) if text.strip() else {}
    except ValueError:
        return ["unparseable STOW-RS answer"]
    if not isinstance(doc, dict):
        return []
    failed = doc.get("00081198") or {}
    return list(failed.get("Value") or []) if isinstance(failed, dict) else []
