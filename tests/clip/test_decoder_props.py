"""Property tests of the host decoder: arbitrary bytes, bit flips, dropped and duplicated
chunks, split reads at every offset. The invariant everywhere: every yielded sample is one the
clip actually sent, bit for bit."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from dgsclip import protocol as P
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_service.clip.decoder import FrameDecoder, IncompatibleVersion
from edge_service.clip.messages import DeviceReset, Sample

PROP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_stream(
    n: int, seed: int = 0, seq0: int = 0
) -> tuple[bytes, dict[int, Sample], list[bytes]]:
    rng = random.Random(seed)
    e = P.Encoder()
    e.seq = seq0
    frames: list[bytes] = []
    sent: dict[int, Sample] = {}
    for i in range(n):
        q4 = [rng.randint(-16384, 16384) for _ in range(4)]
        q = (q4[0], q4[1], q4[2], q4[3])
        flex, add, rot = (rng.randint(-18000, 18000) for _ in range(3))
        flags = rng.randint(0, 0xFFFF) & ~P.FLAG_PELVIS_PRESENT
        pq = (rng.randint(-16384, 0), 5, -7, 16384) if i % 3 == 0 else None
        seq = e.seq
        t_us = (i * 10_000) & P.TICKS_MASK
        f = bytes(e.sample(None, t_us, flex, add, rot, q, flags, i, 2 * i, pq))
        frames.append(f)
        sent[seq] = Sample(
            seq,
            t_us,
            flex,
            add,
            rot,
            q,
            flags | (P.FLAG_PELVIS_PRESENT if pq else 0),
            i & 0xFFFF,
            (2 * i) & 0xFFFF,
            pq,
            P.PROTO_MINOR,
        )
    return b"".join(frames), sent, frames


def feed_all(dec: FrameDecoder, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for c in chunks:
        try:
            out += dec.feed(c)
        except IncompatibleVersion:
            out += dec.feed(b"")
    return out


def check_genuine(msgs: Sequence[object], sent: dict[int, Sample]) -> list[Sample]:
    samples = [m for m in msgs if isinstance(m, Sample)]
    for s in samples:
        assert s == sent[s.seq], "decoder yielded a sample the clip never sent"
    return samples


STREAM, SENT, FRAMES = make_stream(40, seed=1)


def test_split_reads_at_every_offset() -> None:
    for cut in range(len(STREAM) + 1):
        dec = FrameDecoder()
        msgs = feed_all(dec, [STREAM[:cut], STREAM[cut:]])
        assert check_genuine(msgs, SENT) == [SENT[k] for k in sorted(SENT)]
        assert dec.stats.resyncs == 0


def test_byte_at_a_time() -> None:
    dec = FrameDecoder()
    msgs = feed_all(dec, [STREAM[i : i + 1] for i in range(len(STREAM))])
    assert len(check_genuine(msgs, SENT)) == 40


@PROP
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_or_invent(data: bytes) -> None:
    dec = FrameDecoder()
    msgs = feed_all(dec, [data])
    # Random bytes would need a valid CRC-16 and layout to pass: anything yielded must at
    # least be a well-formed message of this protocol.
    for m in msgs:
        assert not isinstance(m, Sample) or -32768 <= m.flex_cdeg <= 32767
    # and the decoder is still usable afterwards
    assert len(check_genuine(feed_all(dec, [b"\x00", STREAM]), SENT)) == 40


@PROP
@given(st.binary(max_size=600), st.binary(max_size=600))
def test_garbage_between_frames_costs_at_most_neighbours(pre: bytes, mid: bytes) -> None:
    half = len(FRAMES) // 2
    data = pre + b"".join(FRAMES[:half]) + mid + b"".join(FRAMES[half:])
    dec = FrameDecoder()
    got = check_genuine(feed_all(dec, [data]), SENT)
    # Garbage without a 0x00 merges with the next frame; garbage never costs more than the
    # first frame and the frame after it.
    assert len(got) >= len(FRAMES) - 2


@PROP
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM) * 8 - 1), min_size=1, max_size=8))
def test_bit_flips_never_yield_a_corrupt_sample(bits: list[int]) -> None:
    data = bytearray(STREAM)
    for b in bits:
        data[b // 8] ^= 1 << (b % 8)
    dec = FrameDecoder()
    got = check_genuine(feed_all(dec, [bytes(data), b"\x00"]), SENT)
    # Each flip destroys at most two frames (its own, and a neighbour when it hits a 0x00).
    assert len(got) >= len(FRAMES) - 2 * len(bits)
    # Every loss is accounted for as a dropped chunk.
    assert len(got) == len(FRAMES) or dec.stats.resyncs >= 1


@PROP
@given(
    st.lists(st.sampled_from(["keep", "drop", "dup"]), min_size=len(FRAMES), max_size=len(FRAMES))
)
def test_dropped_and_duplicated_frames_are_counted(ops: list[str]) -> None:
    chunks: list[bytes] = []
    for f, op in zip(FRAMES, ops, strict=True):
        if op == "keep":
            chunks.append(f)
        elif op == "dup":
            chunks += [f, f]
    dec = FrameDecoder()
    got = check_genuine(feed_all(dec, chunks), SENT)
    kept = [s for (s, op) in zip(sorted(SENT), ops, strict=True) if op != "drop"]
    assert [s.seq for s in got] == kept  # duplicates dropped, order kept
    assert dec.stats.duplicates == ops.count("dup")
    # lost frames counted between the first and last delivered ones
    if kept:
        inner = ops[ops.index(next(o for o in ops if o != "drop")) :]
        while inner and inner[-1] == "drop":
            inner.pop()
        assert dec.stats.lost_frames == inner.count("drop")
    assert not any(isinstance(m, DeviceReset) for m in got)


@PROP
@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=7))
def test_random_chunking(chunk: int, seed: int) -> None:
    rng = random.Random(seed)
    parts: list[bytes] = []
    i = 0
    while i < len(STREAM):
        n = rng.randint(1, chunk)
        parts.append(STREAM[i : i + n])
        i += n
    assert len(check_genuine(feed_all(FrameDecoder(), parts), SENT)) == 40


def test_sequence_wrap_is_not_a_gap_or_reboot() -> None:
    data, sent, _ = make_stream(10, seq0=0xFFFFFFFB)
    dec = FrameDecoder()
    got = check_genuine(feed_all(dec, [data]), sent)
    assert len(got) == 10
    assert (dec.stats.seq_gaps, dec.stats.reboots, dec.stats.duplicates) == (0, 0, 0)


def test_reboot_yields_reset_before_new_frames() -> None:
    a, _, _ = make_stream(20, seed=2, seq0=1000)
    b, _, _ = make_stream(5, seed=3, seq0=0)
    dec = FrameDecoder()
    msgs = feed_all(dec, [a, b])
    kinds = [type(m).__name__ for m in msgs]
    assert kinds == ["Sample"] * 20 + ["DeviceReset"] + ["Sample"] * 5
    assert dec.stats.reboots == 1 and dec.stats.duplicates == 0


def test_incompatible_version_does_not_lose_neighbours() -> None:
    e = P.Encoder()
    good1 = bytes(e.sample(None, 1, 0, 0, 0, (16384, 0, 0, 0), 0))
    v2 = bytearray(bytes(e.sample(None, 2, 0, 0, 0, (16384, 0, 0, 0), 0)))
    # Re-frame as major 2 with a valid CRC.
    raw = bytearray(P.MAX_FRAME)
    n = P.cobs_decode_into(v2, len(v2) - 1, raw)
    raw[0] = 0x20
    c = P.crc16(raw, n - 2)
    raw[n - 2], raw[n - 1] = c & 0xFF, c >> 8
    enc = bytearray(P.MAX_ENCODED)
    k = P.cobs_encode_into(raw, n, enc)
    bad = bytes(enc[:k]) + b"\x00"
    good3 = bytes(e.sample(None, 3, 0, 0, 0, (16384, 0, 0, 0), 0))
    dec = FrameDecoder()
    with pytest.raises(IncompatibleVersion, match=r"protocol 2\.0"):
        dec.feed(good1 + bad + good3)
    got = dec.feed(b"")
    assert [m.seq for m in got if isinstance(m, Sample)] == [0, 2]


def test_stray_text_is_kept_for_the_engineer() -> None:
    dec = FrameDecoder()
    tb = b'Traceback (most recent call last):\r\n  File "main.py", line 3\r\nOSError: [Errno 19] ENODEV\r\n'
    msgs = dec.feed(b"\x00" + tb + b"\x00" + FRAMES[0] + tb + b">>> ")
    assert len(check_genuine(msgs, SENT)) == 1
    assert dec.take_stray_text() == [tb.decode().strip()]
    dec.flush_text()  # the line went quiet: the undelimited tail is text too
    assert dec.take_stray_text() == [(tb + b">>>").decode().strip()]
    assert dec.stats.stray_text == 2
    # Binary leftovers are not text and stay pending.
    dec.feed(FRAMES[1][:10])
    dec.flush_text()
    assert dec.take_stray_text() == []
    assert len(dec.feed(FRAMES[1][10:])) == 1


@PROP
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_clip_command_reader_survives_any_split(sizes: list[int]) -> None:
    cmds = [P.encode_command(i + 1, P.CMD_SET_RATE, bytes([i, 0])) for i in range(12)]
    data = b"".join(cmds)
    r = P.CommandReader()
    got = []
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        got += r.feed(data[i : i + n])
        i += n
        k += 1
    assert got == [(i + 1, P.CMD_SET_RATE, bytes([i, 0]), False) for i in range(12)]
    assert r.errors == 0


@PROP
@given(st.binary(max_size=1500))
def test_clip_command_reader_never_crashes_on_noise(noise: bytes) -> None:
    r = P.CommandReader()
    r.feed(noise)
    # After a delimiter it parses commands again (noise may have held a REPL escape, fine).
    got = r.feed(b"\x00" + P.encode_command(7, P.CMD_START))
    assert got[-1][:2] == (7, P.CMD_START)


def test_boot_hello_with_a_repeated_timestamp_is_a_reboot_only_with_a_new_boot_id() -> None:
    """Boot takes the same time each time: two boots' HELLOs can carry the same (seq 0, t_us).
    The 1.1 boot id tells a second boot from the same HELLO delivered twice."""
    from edge_service.clip.messages import DeviceReset

    def hello(boot: int) -> bytes:
        return bytes(P.Encoder().hello(0, 1234, "1", "d", "mpu6050", 100, 0, boot_id=boot))

    e = P.Encoder()
    samples = b"".join(
        bytes(e.sample(i + 1, 10_000 * (i + 1), 0, 0, 0, (16384, 0, 0, 0), 0)) for i in range(3)
    )
    dec = FrameDecoder()
    msgs = dec.feed(hello(1) + samples + hello(2) + hello(2))
    assert dec.stats.reboots == 1 and dec.stats.duplicates == 1
    assert sum(isinstance(m, DeviceReset) for m in msgs) == 1
