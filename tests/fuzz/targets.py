"""Fuzz targets: each feeds one arbitrary input to a parser of untrusted data and lets only
the project's typed errors (`DgsError` and its subclasses) out. Any other exception - or a
MemoryError, a RecursionError - is a bug the fuzzer reports.

Shared by the CI fuzz tests (tests/fuzz/test_fuzz.py, bounded time) and the longer benchmark
run (`python -m benchmarks fuzz`). Inputs are plain data (bytes, text, dicts) so a failing
one can be committed to tests/fuzz/corpus/ and replayed on every run.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_service.errors import DgsError

CORPUS = Path(__file__).resolve().parent / "corpus"
_TMP = Path(tempfile.mkdtemp(prefix="dgs-fuzz-"))


@dataclass
class Target:
    """One fuzz target and how many inputs it has been fed in this process."""

    name: str
    run: Callable[[Any], None]
    allowed: tuple[type[BaseException], ...] = (DgsError,)
    tried: int = 0
    typed_errors: int = 0
    seen: dict[str, int] = field(default_factory=dict)

    def __call__(self, data: Any) -> None:
        self.tried += 1
        try:
            self.run(data)
        except self.allowed as exc:
            self.typed_errors += 1
            kind = type(exc).__name__
            self.seen[kind] = self.seen.get(kind, 0) + 1


# -- clip frame decoder --------------------------------------------------------------------


def decoder_target(data: tuple[bytes, list[int]]) -> None:
    """Arbitrary bytes, split into reads at arbitrary offsets (as a serial port delivers)."""
    from edge_service.clip.decoder import FrameDecoder, IncompatibleVersion

    raw, cuts = data
    dec = FrameDecoder()
    pos = 0
    for cut in [*sorted(c % (len(raw) + 1) for c in cuts), len(raw)]:
        # Typed and documented: the link counts it and keeps reading.
        with contextlib.suppress(IncompatibleVersion):
            dec.feed(raw[pos:cut])
        pos = max(pos, cut)
    dec.flush_text()
    dec.take_stray_text()


# -- DICOM reader ----------------------------------------------------------------------------


def dicom_target(data: bytes) -> None:
    """Arbitrary bytes as a DICOM file: open it, read its info, decode every frame."""
    from edge_service.acquisition.dicom import DicomSource

    p = _TMP / "fuzz.dcm"
    p.write_bytes(data)
    src = DicomSource(p)
    src.info.to_dict()
    for f in src:
        assert f.pixels.shape == (src.info.height, src.info.width)


# -- recording reader ------------------------------------------------------------------------

RECORDING_FILES = ("session.json", "frames.csv", "imu.jsonl", "cine.dcm")


def recording_target(files: Mapping[str, bytes]) -> None:
    """A session directory with arbitrary session.json, frames.csv and imu.jsonl."""
    import shutil

    from edge_service.recording import open_recording

    d = _TMP / "rec"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    for name, content in files.items():
        if name in RECORDING_FILES:
            (d / name).write_bytes(content)
    rec = open_recording(d)
    _ = (rec.n_frames, rec.spacing_mm, rec.roi, rec.times, rec.complete, rec.recovered)
    rec.imu_samples()
    for _f in rec.frames():
        pass


# -- config loader ---------------------------------------------------------------------------


def config_target(text: bytes) -> None:
    from edge_service.config import load_config

    p = _TMP / "fuzz.toml"
    p.write_bytes(text)
    cfg = load_config(p)
    cfg.model_dump(mode="json")
    _ = (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.use_tls, cfg.source.crop)


# -- MQTT payload builders -------------------------------------------------------------------


def payload_target(doc: Any) -> None:
    """An arbitrary result document through every builder the publisher uses."""
    from edge_service.mqtt import fhir
    from edge_service.mqtt import payloads as pl
    from edge_service.mqtt.validation import validate

    if not isinstance(doc, Mapping):
        doc = {"value": doc}
    pl.check_no_pii(doc, "result")
    msg_id = pl.result_msg_id("site-a", "dgs-01", "s-1")
    env = pl.envelope(pl.SCHEMA_RESULT, msg_id, 1, "site-a", "dgs-01", "s-1")
    env["result"] = dict(doc)
    body = pl.dumps(env)
    pl.dumps(fhir.bundle("site-a", "dgs-01", "s-1", doc))
    validate(json.loads(body))  # last: most fuzzed documents are (rightly) invalid


TARGETS: dict[str, Callable[[], Target]] = {
    "decoder": lambda: Target("decoder", decoder_target),
    "dicom": lambda: Target("dicom", dicom_target),
    "recording": lambda: Target("recording", recording_target),
    "config": lambda: Target("config", config_target),
    "payloads": lambda: Target("payloads", payload_target),
}


def corpus_inputs(name: str) -> list[tuple[str, Any]]:
    """(file name, input) of every committed corpus entry of one target."""
    d = CORPUS / name
    out: list[tuple[str, Any]] = []
    for p in sorted(d.iterdir()) if d.is_dir() else []:
        if name == "decoder":
            out.append((p.name, (p.read_bytes(), [])))
        elif name == "recording":
            import base64

            files = json.loads(p.read_text())
            rec = {k: v.encode() for k, v in files.items() if not k.endswith(".b64")}
            if "cine.dcm.b64" in files:
                rec["cine.dcm"] = base64.b64decode(files["cine.dcm.b64"])
            out.append((p.name, rec))
        elif name == "payloads":
            out.append((p.name, json.loads(p.read_text())))
        else:
            out.append((p.name, p.read_bytes()))
    return out
