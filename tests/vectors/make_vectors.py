"""Generate tests/vectors/protocol_v1.json (1.0) or protocol_v1_1.json (--minor 1) ONCE from
the clip encoder; the files are then frozen.

Run: .venv/bin/python tests/vectors/make_vectors.py [--minor 1] [--force]
(`--minor 0 --force` must reproduce the committed 1.0 file byte for byte: the encoder still
speaks 1.0 with Encoder(minor=0).)
Refuses to overwrite the committed file unless --force: the vectors pin wire protocol 1.0, so
changing them is a protocol change (bump the version, see docs/protocol.md).

Format: {"version": "1.0", "frames": [{"name", "hex", "type", "fields"} | {"name", "hex",
"error"}]}. `hex` is the byte stream as received (frames end with 00). A valid vector decodes to
exactly one message of `type` whose `fields` use the encoder's argument names; an invalid vector
decodes to no message and the decoder reports `error` (cobs, truncated, oversize, crc, version,
length). `type: "unknown"` is a well-formed frame of a type this version does not know: it must
be skipped silently (minor-version tolerance).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "firmware"))

from dgsclip import protocol as P  # noqa: E402

MINOR = int(sys.argv[sys.argv.index("--minor") + 1]) if "--minor" in sys.argv else 0
OUT = HERE / ("protocol_v1.json" if MINOR == 0 else f"protocol_v1_{MINOR}.json")
EXT = MINOR >= 1  # 1.1 fields: HELLO boot_id/reset_cause, STATUS ring/output/reboot counters


def raw_frame(
    ver: int,
    typ: int,
    seq: int,
    t_us: int,
    payload: bytes,
    plen: int | None = None,
    crc_xor: int = 0,
) -> bytes:
    """Hand-built frame for cases the encoder must never produce."""
    n = len(payload) if plen is None else plen
    body = struct.pack("<BBIIB", ver, typ, seq, t_us, n) + payload
    c = P.crc16(body) ^ crc_xor
    body += bytes([c & 0xFF, c >> 8])
    out = bytearray(P.MAX_ENCODED + 8)
    k = P.cobs_encode_into(body, len(body), out)
    return bytes(out[:k]) + b"\x00"


def main() -> int:
    if OUT.exists() and "--force" not in sys.argv:
        print(f"{OUT} exists and is frozen; pass --force to regenerate", file=sys.stderr)
        return 1
    e = P.Encoder(minor=MINOR)
    frames: list[dict] = []

    def add(name: str, data: bytes, typ: str, fields: dict) -> None:
        frames.append({"name": name, "hex": bytes(data).hex(), "type": typ, "fields": fields})

    def bad(name: str, data: bytes, error: str) -> None:
        frames.append({"name": name, "hex": bytes(data).hex(), "error": error})

    def sample(name: str, **f: object) -> bytes:
        f.setdefault("i2c_errors", 0)
        f.setdefault("overruns", 0)
        f.setdefault("pelvis_quat", None)
        data = bytes(e.sample(**f))  # type: ignore[arg-type]
        flags = int(f["flags"])  # type: ignore[call-overload]
        flags = (
            flags | P.FLAG_PELVIS_PRESENT if f["pelvis_quat"] else flags & ~P.FLAG_PELVIS_PRESENT
        )
        add(name, data, "sample", {**f, "flags": flags})
        return data

    s1 = sample(
        "sample_basic",
        seq=0,
        t_us=0,
        flex_cdeg=0,
        add_cdeg=0,
        rot_cdeg=0,
        quat=[16384, 0, 0, 0],
        flags=0,
    )
    sample(
        "sample_fair",
        seq=1234,
        t_us=987654,
        flex_cdeg=7512,
        add_cdeg=1530,
        rot_cdeg=-3275,
        quat=[13377, 9459, -1203, 512],
        flags=P.FLAG_CALIBRATED | P.FLAG_ACCEL_REJECTED,
        i2c_errors=3,
        overruns=1,
    )
    sample(
        "sample_pelvis",
        seq=70000,
        t_us=P.TICKS_MASK,
        flex_cdeg=-1500,
        add_cdeg=-250,
        rot_cdeg=4000,
        quat=[11585, 0, 11585, 0],
        flags=P.FLAG_CALIBRATED | P.FLAG_STATIONARY,
        pelvis_quat=[16384, -5, 7, 0],
    )
    sample(
        "sample_zero_heavy",
        seq=256,
        t_us=65536,
        flex_cdeg=256,
        add_cdeg=-256,
        rot_cdeg=0,
        quat=[0, 0, 0, 16384],
        flags=P.FLAG_I2C_ERROR | P.FLAG_OVERRUN,
        i2c_errors=256,
        overruns=65535,
    )
    sample(
        "sample_seq_max",
        seq=0xFFFFFFFF,
        t_us=1,
        flex_cdeg=18000,
        add_cdeg=-18000,
        rot_cdeg=32767,
        quat=[-16384, 16384, -16384, 16384],
        flags=0xFFFF & ~P.FLAG_PELVIS_PRESENT,
    )

    hello = dict(
        seq=0,
        t_us=1000,
        fw_version="0.1.0",
        device_id="e6614103e7452d2f",
        imu_models="mpu6050",
        rate_hz=100,
        cal_state=P.CAL_NONE,
        imu_count=1,
        state=P.STATE_IDLE,
    )
    if EXT:
        hello.update(boot_id=7, reset_cause=P.RESET_WATCHDOG)
    add("hello", e.hello(**hello), "hello", {**hello, "proto_major": 1, "proto_minor": MINOR})
    hello2 = dict(
        seq=9,
        t_us=5_000_000,
        fw_version="1.2.3-rc1",
        device_id="clip-7",
        imu_models="lsm6dsox,mpu6500",
        rate_hz=200,
        cal_state=P.CAL_FULL,
        imu_count=2,
        state=P.STATE_STREAMING,
    )
    if EXT:
        hello2.update(boot_id=0xFFFF, reset_cause=P.RESET_HARD)
    add(
        "hello_two_imus",
        e.hello(**hello2),
        "hello",
        {**hello2, "proto_major": 1, "proto_minor": MINOR},
    )

    for name, text, level in (
        ("log_info", "boot ok", 20),
        ("log_utf8", "kalibrierung fertig: 0.4° rms", 30),
        ("log_empty", "", 10),
        ("log_truncated", "x" * 300, 40),
    ):
        add(
            name,
            e.log(seq=42, t_us=777, text=text, level=level),
            "log",
            {"seq": 42, "t_us": 777, "text": text[: P.MAX_PAYLOAD - 1], "level": level},
        )

    st = dict(
        seq=5,
        t_us=123,
        state=P.STATE_STREAMING,
        cal_state=P.CAL_NEUTRAL,
        rate_hz=100,
        samples=123456,
        i2c_errors=2,
        overruns=7,
        cmd_errors=1,
        free_mem=81234,
        uptime_s=3600,
    )
    fields = P.STATUS_FIELDS
    if EXT:
        st.update(
            ring_dropped=70000,
            ring_peak=3000,
            ring_capacity=3000,
            fifo_overflows=2,
            tx_stalls=3,
            tx_dropped=4,
            boot_id=7,
            reset_cause=P.RESET_POWER_ON,
            resets=1,
        )
        fields = P.STATUS_FIELDS + P.STATUS_EXT_FIELDS
    add("status", e.status(st["seq"], st["t_us"], *[st[k] for k in fields]), "status", st)

    ack = dict(seq=6, t_us=124, cmd_id=17, cmd=P.CMD_START, code=P.ERR_OK, payload=None)
    add("ack_start", e.ack(**ack), "ack", {**ack, "payload": ""})
    nak = dict(
        seq=7,
        t_us=125,
        cmd_id=18,
        cmd=P.CMD_SET_RATE,
        code=P.ERR_BAD_ARGUMENT,
        payload=b"rate must be 50..200",
    )
    add("nak_set_rate", e.ack(**nak), "nak", {**nak, "payload": nak["payload"].hex()})  # type: ignore[union-attr]
    cfg = b'{"rate_hz": 100, "side": "left"}'
    add(
        "ack_get_config",
        e.ack(seq=8, t_us=126, cmd_id=19, cmd=P.CMD_GET_CONFIG, payload=cfg),
        "ack",
        {
            "seq": 8,
            "t_us": 126,
            "cmd_id": 19,
            "cmd": P.CMD_GET_CONFIG,
            "code": 0,
            "payload": cfg.hex(),
        },
    )
    info = dict(
        fw_version="0.1.0",
        device_id="e6614103",
        imu_models="mpu6050",
        rate_hz=100,
        cal_state=P.CAL_FULL,
        imu_count=1,
        state=P.STATE_IDLE,
    )
    if EXT:
        info.update(boot_id=258, reset_cause=P.RESET_SOFT)
    add(
        "ack_info",
        e.ack_info(seq=10, t_us=200, cmd_id=20, **info),
        "ack_info",
        {"seq": 10, "t_us": 200, "cmd_id": 20, **info},
    )
    add(
        "ack_status",
        e.ack_status(11, 201, 21, *[st[k] for k in fields]),
        "ack_status",
        {**st, "seq": 11, "t_us": 201, "cmd_id": 21},
    )

    for cid, cmd, args in (
        (1, P.CMD_INFO, b""),
        (2, P.CMD_START, b""),
        (3, P.CMD_STOP, b""),
        (4, P.CMD_SET_RATE, struct.pack("<H", 200)),
        (5, P.CMD_CALIBRATE_NEUTRAL, struct.pack("<H", 3000)),
        (6, P.CMD_CALIBRATE_FUNCTIONAL, struct.pack("<H", 0)),
        (7, P.CMD_GET_CONFIG, b""),
        (8, P.CMD_SET_CONFIG, b'{"rate_hz": 50}'),
        (9, P.CMD_SELF_TEST, b""),
        (10, P.CMD_REBOOT, b""),
        (11, P.CMD_EXIT_REPL, b""),
        (0x100, P.CMD_GET_STATUS, b""),
    ):
        add(
            f"command_{P.COMMAND_NAMES[cmd]}",
            P.encode_command(cid, cmd, args, minor=MINOR),
            "command",
            {"cmd_id": cid, "cmd": cmd, "args": args.hex()},
        )

    # Minor-version tolerance: a 1.1 sample with 4 unknown trailing bytes decodes as a sample.
    pl = struct.pack(P.SAMPLE_FMT, P.FLAG_CALIBRATED, 100, 200, 300, 16384, 0, 0, 0, 0, 0)
    add(
        "sample_minor_1_1_trailing",
        raw_frame(0x11, P.MSG_SAMPLE, 77, 4242, pl + b"\x01\x02\x03\x04"),
        "sample",
        {
            "seq": 77,
            "t_us": 4242,
            "flex_cdeg": 100,
            "add_cdeg": 200,
            "rot_cdeg": 300,
            "quat": [16384, 0, 0, 0],
            "flags": P.FLAG_CALIBRATED,
            "i2c_errors": 0,
            "overruns": 0,
            "pelvis_quat": None,
        },
    )
    add(
        "unknown_type_minor",
        raw_frame(0x12, 0x7E, 78, 4243, b"future"),
        "unknown",
        {"seq": 78, "t_us": 4243, "type_code": 0x7E},
    )

    # Resync: garbage (REPL text, a half frame) before and between frames.
    add(
        "garbage_then_sample",
        b"MPY: soft reboot\r\n\x00" + s1[:7] + b"\x00" + s1 + b"\xff\x13",
        "sample",
        frames[0]["fields"],
    )
    add("empty_chunks_then_sample", b"\x00\x00\x00" + s1, "sample", frames[0]["fields"])

    # Invalid frames: decoders yield nothing and report the kind.
    flip = bytearray(s1)
    flip[12] ^= 0x04
    bad("bad_crc_bitflip", bytes(flip), "crc")
    bad("bad_crc_value", raw_frame(0x10, P.MSG_SAMPLE, 1, 2, pl, crc_xor=0x0001), "crc")
    bad("truncated_frame", s1[:6] + b"\x00", "truncated")
    bad("truncated_payload_length", raw_frame(0x10, P.MSG_SAMPLE, 1, 2, pl, plen=24), "length")
    bad("oversize_chunk", b"\x01" * 300 + b"\x00", "oversize")
    bad("oversize_payload", raw_frame(0x10, P.MSG_LOG, 1, 2, b"\x14" + b"a" * 241), "oversize")
    bad("unknown_major_version", raw_frame(0x20, P.MSG_SAMPLE, 1, 2, pl), "version")
    bad("major_zero_version", raw_frame(0x01, P.MSG_SAMPLE, 1, 2, pl), "version")
    bad("cobs_bad_code", b"\x05\x10\x02\x00", "cobs")
    bad("short_sample_payload", raw_frame(0x10, P.MSG_SAMPLE, 1, 2, pl[:10]), "length")

    doc = {"version": f"1.{MINOR}", "frames": frames}
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(frames)} vectors to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
