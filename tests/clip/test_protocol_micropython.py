"""protocol.py in the real MicroPython interpreter (WebAssembly port) against the golden
vectors: the clip's encoder must emit the frozen bytes, its command reader must accept the
command vectors and reject every invalid one with the right kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

VECS = {
    "1.0": Path(__file__).resolve().parents[1] / "vectors" / "protocol_v1.json",
    "1.1": Path(__file__).resolve().parents[1] / "vectors" / "protocol_v1_1.json",
}

SCRIPT = r"""
import json, binascii
from dgsclip import protocol as P
doc = json.load(open("/vectors.json"))
MINOR = int(doc["version"].split(".")[1])
EXT = ("boot_id", "reset_cause")
SX = ("ring_dropped", "ring_peak", "ring_capacity", "fifo_overflows", "tx_stalls",
      "tx_dropped", "boot_id", "reset_cause", "resets")

def h(b):
    return binascii.hexlify(bytes(b)).decode()

def unhex(s):
    return binascii.unhexlify(s) if s else b""

enc_ok = 0
for f in doc["frames"]:
    t = f.get("type")
    x = f.get("fields")
    n = f["name"]
    if x is None or t == "unknown" or n.startswith("garbage") or n.startswith("empty") or "minor" in n:
        continue
    e = P.Encoder(MINOR)
    hx = [x[k] for k in EXT if k in x]
    sx = [x[k] for k in SX if k in x]
    if t == "sample":
        got = e.sample(x["seq"], x["t_us"], x["flex_cdeg"], x["add_cdeg"], x["rot_cdeg"],
                       x["quat"], x["flags"], x["i2c_errors"], x["overruns"], x["pelvis_quat"])
    elif t == "hello":
        got = e.hello(x["seq"], x["t_us"], x["fw_version"], x["device_id"], x["imu_models"],
                      x["rate_hz"], x["cal_state"], x["imu_count"], x["state"], *hx)
    elif t == "log":
        got = e.log(x["seq"], x["t_us"], x["text"], x["level"])
    elif t == "status":
        got = e.status(x["seq"], x["t_us"], x["state"], x["cal_state"], x["rate_hz"],
                       x["samples"], x["i2c_errors"], x["overruns"], x["cmd_errors"],
                       x["free_mem"], x["uptime_s"], *sx)
    elif t in ("ack", "nak"):
        got = e.ack(x["seq"], x["t_us"], x["cmd_id"], x["cmd"], x["code"],
                    unhex(x["payload"]) or None)
    elif t == "ack_info":
        got = e.ack_info(x["seq"], x["t_us"], x["cmd_id"], x["fw_version"], x["device_id"],
                         x["imu_models"], x["rate_hz"], x["cal_state"], x["imu_count"], x["state"],
                         *hx)
    elif t == "ack_status":
        got = e.ack_status(x["seq"], x["t_us"], x["cmd_id"], x["state"], x["cal_state"],
                           x["rate_hz"], x["samples"], x["i2c_errors"], x["overruns"],
                           x["cmd_errors"], x["free_mem"], x["uptime_s"], *sx)
    elif t == "command":
        got = P.encode_command(x["cmd_id"], x["cmd"], unhex(x["args"]), MINOR)
    else:
        raise ValueError(t)
    if h(got) != f["hex"]:
        print("MISMATCH", n, h(got))
    enc_ok += 1

r = P.CommandReader()
cmd_ok = 0
for f in doc["frames"]:
    if f.get("type") == "command":
        x = f["fields"]
        got = r.feed(unhex(f["hex"]))
        if got != [(x["cmd_id"], x["cmd"], unhex(x["args"]), False)]:
            print("CMD", f["name"], got)
        cmd_ok += 1

kinds = {}
dst = bytearray(P.MAX_FRAME)
for f in doc["frames"]:
    if "error" not in f:
        continue
    data = unhex(f["hex"])
    chunk = data[:-1]
    try:
        _, _, typ, _, _, _, plen = P.unframe(chunk, len(chunk), dst)
        kind = "length" if typ == P.MSG_SAMPLE and plen < P.SAMPLE_SIZE else "accepted"
    except P.ProtocolError as exc:
        kind = exc.args[0]
    kinds[f["name"]] = kind
    before = r.errors
    if r.feed(data) != [] or r.errors != before + 1:
        print("READER", f["name"])

esc = r.feed(b"\x00\r\x03\r\x01")
print("RESULT", json.dumps({"enc": enc_ok, "cmd": cmd_ok, "kinds": kinds, "esc": len(esc),
                            "crc": P.crc16(b"123456789")}))
"""


@pytest.mark.sim
@pytest.mark.parametrize("version", sorted(VECS))
def test_vectors_in_real_micropython(mpwasm, version: str) -> None:  # type: ignore[no-untyped-def]
    VEC = VECS[version]
    res = mpwasm.run(SCRIPT, files={"/vectors.json": VEC.read_bytes()}).check()
    assert "MISMATCH" not in res.stdout and "CMD" not in res.stdout, res.stdout
    assert "READER" not in res.stdout, res.stdout
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    got = json.loads(line[7:])
    doc = json.loads(VEC.read_text("utf-8"))
    expected_kinds = {f["name"]: f["error"] for f in doc["frames"] if "error" in f}
    assert got["kinds"] == expected_kinds
    assert got["enc"] == 29 and got["cmd"] == 12
    assert got["esc"] == 1 and got["crc"] == 0x29B1
