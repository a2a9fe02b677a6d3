"""Golden vectors (tests/vectors/protocol_v1.json = 1.0, protocol_v1_1.json = 1.1) against the
clip encoder (speaking the file's minor) and the host decoder (which reads both)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from dgsclip import framing
from dgsclip import protocol as P

from edge_service.clip.decoder import FrameDecoder, IncompatibleVersion
from edge_service.clip.messages import Ack, Command, Hello, Log, Sample, Status

_DIR = Path(__file__).resolve().parents[1] / "vectors"
FILES = {
    0: json.loads((_DIR / "protocol_v1.json").read_text("utf-8")),
    1: json.loads((_DIR / "protocol_v1_1.json").read_text("utf-8")),
}
VECTORS = FILES[P.PROTO_MINOR]
FRAMES = [
    {**f, "_minor": minor, "_id": f"1.{minor}-{f['name']}"}
    for minor, doc in FILES.items()
    for f in doc["frames"]
]
VALID = [f for f in FRAMES if "fields" in f]
INVALID = [f for f in FRAMES if "error" in f]
# Hand-built frames (resync, minor-version) are decoder-only: the encoder never emits them.
ENCODABLE = [
    f
    for f in VALID
    if f["type"] != "unknown"
    and not f["name"].startswith(("garbage", "empty_chunks"))
    and "minor" not in f["name"]
]
_TYPES = {
    "sample",
    "hello",
    "log",
    "status",
    "ack",
    "nak",
    "ack_info",
    "ack_status",
    "command",
    "unknown",
}


def _ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["_id"] for f in frames]


def test_vector_file_shape() -> None:
    assert VECTORS["version"] == f"{P.PROTO_MAJOR}.{P.PROTO_MINOR}"
    assert {m: d["version"] for m, d in FILES.items()} == {0: "1.0", 1: "1.1"}
    assert len({f["_id"] for f in FRAMES}) == len(FRAMES)
    assert {f["type"] for f in VALID} == _TYPES
    assert {f["error"] for f in INVALID} == {
        "cobs",
        "truncated",
        "oversize",
        "crc",
        "version",
        "length",
    }


def _encode(f: dict[str, Any]) -> bytes:
    """Re-encode a vector with the clip encoder."""
    minor = f["_minor"]
    e = P.Encoder(minor=minor)
    x = dict(f["fields"])
    t = f["type"]
    status_fields = P.STATUS_FIELDS + (P.STATUS_EXT_FIELDS if minor >= 1 else ())
    if t == "sample":
        return bytes(e.sample(**x))
    if t == "hello":
        x.pop("proto_major"), x.pop("proto_minor")
        return bytes(e.hello(**x))
    if t == "log":
        return bytes(e.log(**x))
    if t == "status":
        return bytes(e.status(x["seq"], x["t_us"], *[x[k] for k in status_fields]))
    if t in ("ack", "nak"):
        x["payload"] = bytes.fromhex(x["payload"]) if x["payload"] else None
        return bytes(e.ack(**x))
    if t == "ack_info":
        return bytes(e.ack_info(**x))
    if t == "ack_status":
        return bytes(e.ack_status(x["seq"], x["t_us"], x["cmd_id"], *[x[k] for k in status_fields]))
    if t == "command":
        return P.encode_command(x["cmd_id"], x["cmd"], bytes.fromhex(x["args"]), minor=minor)
    raise AssertionError(t)


@pytest.mark.parametrize("f", ENCODABLE, ids=_ids(ENCODABLE))
def test_encoder_reproduces_vector(f: dict[str, Any]) -> None:
    assert _encode(f).hex() == f["hex"]


def _status_fields(st: Any) -> dict[str, Any]:
    """The fields a STATUS carried (the 1.1 ones are None from a 1.0 frame)."""
    return {k: getattr(st, k) for k in st.__dataclass_fields__ if getattr(st, k) is not None}


def _as_fields(m: object) -> dict[str, Any]:
    if isinstance(m, Sample):
        return {
            "seq": m.seq,
            "t_us": m.t_us,
            "flex_cdeg": m.flex_cdeg,
            "add_cdeg": m.add_cdeg,
            "rot_cdeg": m.rot_cdeg,
            "quat": list(m.quat),
            "flags": m.flags,
            "i2c_errors": m.i2c_errors,
            "overruns": m.overruns,
            "pelvis_quat": list(m.pelvis_quat) if m.pelvis_quat else None,
        }
    if isinstance(m, Hello):
        i = m.info
        ext = {} if i.boot_id is None else {"boot_id": i.boot_id, "reset_cause": i.reset_cause}
        return {
            **ext,
            "seq": m.seq,
            "t_us": m.t_us,
            "fw_version": i.fw_version,
            "device_id": i.device_id,
            "imu_models": i.imu_models,
            "rate_hz": i.rate_hz,
            "cal_state": i.cal_state,
            "imu_count": i.imu_count,
            "state": i.state,
            "proto_major": i.proto_major,
            "proto_minor": i.proto_minor,
        }
    if isinstance(m, Log):
        return {"seq": m.seq, "t_us": m.t_us, "text": m.text, "level": m.level}
    if isinstance(m, Status):
        return {
            "seq": m.seq,
            "t_us": m.t_us,
            **_status_fields(m.status),
        }
    if isinstance(m, Command):
        return {"cmd_id": m.cmd_id, "cmd": m.cmd, "args": m.args.hex()}
    raise AssertionError(type(m))


@pytest.mark.parametrize("f", VALID, ids=_ids(VALID))
def test_decoder_matches_vector(f: dict[str, Any]) -> None:
    dec = FrameDecoder()
    msgs = dec.feed(bytes.fromhex(f["hex"]))
    if f["type"] == "unknown":
        assert msgs == []
        assert dec.stats.unknown_types == 1 and dec.stats.frames == 1
        return
    assert len(msgs) == 1, msgs
    m = msgs[0]
    x = f["fields"]
    if f["type"] in ("ack", "nak", "ack_info", "ack_status"):
        assert isinstance(m, Ack)
        assert (m.seq, m.t_us, m.cmd_id) == (x["seq"], x["t_us"], x["cmd_id"])
        assert m.ok == (f["type"] != "nak")
        if f["type"] == "ack_info":
            info = m.info()
            assert (
                info.fw_version,
                info.device_id,
                info.imu_models,
                info.rate_hz,
                info.cal_state,
                info.imu_count,
                info.state,
                info.boot_id,
                info.reset_cause,
            ) == (
                x["fw_version"],
                x["device_id"],
                x["imu_models"],
                x["rate_hz"],
                x["cal_state"],
                x["imu_count"],
                x["state"],
                x.get("boot_id"),
                x.get("reset_cause"),
            )
        elif f["type"] == "ack_status":
            st = m.clip_status()
            assert _status_fields(st) == {
                k: v for k, v in x.items() if k not in ("seq", "t_us", "cmd_id")
            }
        else:
            assert (m.cmd, m.code, m.payload.hex()) == (x["cmd"], x["code"], x["payload"])
        return
    assert _as_fields(m) == x


@pytest.mark.parametrize("f", INVALID, ids=_ids(INVALID))
def test_decoder_rejects_invalid_vector(f: dict[str, Any]) -> None:
    dec = FrameDecoder()
    data = bytes.fromhex(f["hex"])
    if f["error"] == "version":
        with pytest.raises(IncompatibleVersion, match="protocol"):
            dec.feed(data)
    else:
        assert dec.feed(data) == []
    assert dec.stats.errors_by_kind == {f["error"]: 1}
    assert dec.stats.frames == 0


@pytest.mark.parametrize("f", INVALID, ids=_ids(INVALID))
def test_invalid_vector_then_valid_frame_recovers(f: dict[str, Any]) -> None:
    dec = FrameDecoder()
    good = bytes.fromhex(VALID[1]["hex"])
    try:
        got = dec.feed(bytes.fromhex(f["hex"]) + good)
    except IncompatibleVersion:
        got = dec.feed(b"")  # the good frame after the refused one is not lost
    assert len(got) == 1
    assert isinstance(got[0], Sample) and got[0].seq == VALID[1]["fields"]["seq"]


def test_command_reader_accepts_command_vectors_and_rejects_invalid() -> None:
    r = P.CommandReader()
    for f in VALID:
        if f["type"] == "command":
            x = f["fields"]
            assert r.feed(bytes.fromhex(f["hex"])) == [
                (x["cmd_id"], x["cmd"], bytes.fromhex(x["args"]), False)
            ]
    for f in INVALID:
        before = r.errors
        assert r.feed(bytes.fromhex(f["hex"])) == []
        assert r.errors == before + 1


def test_crc_check_value() -> None:
    # CRC-16/CCITT-FALSE catalogue check value, both implementations.
    assert P.crc16(b"123456789") == 0x29B1
    saved = framing._crc_hqx
    framing._crc_hqx = None
    try:
        assert P.crc16(b"123456789") == 0x29B1
        assert P.crc16(bytearray(b"xx123456789"[2:])) == 0x29B1
    finally:
        framing._crc_hqx = saved
    assert struct.calcsize(P.SAMPLE_FMT) == P.SAMPLE_SIZE
    assert struct.calcsize(P.STATUS_FMT) == P.STATUS_SIZE
    assert struct.calcsize(P.STATUS_EXT_FMT) == P.STATUS_EXT_SIZE
    assert struct.calcsize(P.HELLO_EXT_FMT) == P.HELLO_EXT_SIZE
    assert len(P.STATUS_EXT_FIELDS) == len(P.STATUS_EXT_FMT) - 1
