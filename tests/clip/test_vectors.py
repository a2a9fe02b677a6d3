"""Golden vectors (tests/vectors/protocol_v1.json) against the clip encoder and host decoder."""

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

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "protocol_v1.json").read_text("utf-8")
)
FRAMES = VECTORS["frames"]
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
    return [f["name"] for f in frames]


def test_vector_file_shape() -> None:
    assert VECTORS["version"] == f"{P.PROTO_MAJOR}.{P.PROTO_MINOR}"
    assert len({f["name"] for f in FRAMES}) == len(FRAMES)
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
    e = P.Encoder()
    x = dict(f["fields"])
    t = f["type"]
    if t == "sample":
        return bytes(e.sample(**x))
    if t == "hello":
        x.pop("proto_major"), x.pop("proto_minor")
        return bytes(e.hello(**x))
    if t == "log":
        return bytes(e.log(**x))
    if t == "status":
        return bytes(e.status(x["seq"], x["t_us"], *[x[k] for k in P.STATUS_FIELDS]))
    if t in ("ack", "nak"):
        x["payload"] = bytes.fromhex(x["payload"]) if x["payload"] else None
        return bytes(e.ack(**x))
    if t == "ack_info":
        return bytes(e.ack_info(**x))
    if t == "ack_status":
        return bytes(
            e.ack_status(x["seq"], x["t_us"], x["cmd_id"], *[x[k] for k in P.STATUS_FIELDS])
        )
    if t == "command":
        return P.encode_command(x["cmd_id"], x["cmd"], bytes.fromhex(x["args"]))
    raise AssertionError(t)


@pytest.mark.parametrize("f", ENCODABLE, ids=_ids(ENCODABLE))
def test_encoder_reproduces_vector(f: dict[str, Any]) -> None:
    assert _encode(f).hex() == f["hex"]


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
        return {
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
            **{k: getattr(m.status, k) for k in m.status.__dataclass_fields__},
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
            ) == (
                x["fw_version"],
                x["device_id"],
                x["imu_models"],
                x["rate_hz"],
                x["cal_state"],
                x["imu_count"],
                x["state"],
            )
        elif f["type"] == "ack_status":
            st = m.clip_status()
            assert {k: getattr(st, k) for k in st.__dataclass_fields__} == {
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
