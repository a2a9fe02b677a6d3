"""The fixed-point kernels (dgsclip.fxgeom / fxio / fxmahony, the pure-Python twins of the viper code)
against the float reference they replace, and the SAMPLE frame kernel against the
Encoder byte for byte (the wire format must not change)."""

from __future__ import annotations

from array import array

import numpy as np
from dgsclip import fxcore as fx
from dgsclip import fxgeom, fxio, quat
from dgsclip.hip import angles_into
from dgsclip.protocol import Encoder
from dgsclip.ring import SampleRing


def _rand_quats(n: int, seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _fx(q: np.ndarray) -> array:
    return array("i", (round(float(v) * fx.ONE) for v in q))


def test_qmul_matches_float_product() -> None:
    qs = _rand_quats(200, 1)
    out = array("i", [0] * 4)
    ref = array("f", [0.0] * 4)
    for a, b in zip(qs[:100], qs[100:], strict=True):
        for conj in (0, 1):
            fxgeom.qmul(out, _fx(a), _fx(b), conj)
            (quat.conj_mul_into if conj else quat.mul_into)(ref, array("f", a), array("f", b))
            assert np.abs(np.array(out) / fx.ONE - np.array(ref)).max() < 2e-7


def test_hip_angles_match_float_within_a_centidegree() -> None:
    tab = fx.cordic_table()
    out = array("i", [0] * 3)
    ref = array("f", [0.0] * 3)
    worst = 0.0
    for q in _rand_quats(500, 2):
        for mirror in (0, 1):
            fxgeom.hip_cd(out, _fx(q), tab, mirror)
            angles_into(ref, array("f", q), bool(mirror))
            d = np.abs(np.array(out) / 100.0 - np.array(ref))
            d = np.minimum(d, 360.0 - d)  # +-180 deg are the same angle
            worst = max(worst, float(d.max()))
    assert worst <= 0.011  # rounding to the wire's 0.01 deg


def test_sample_frame_kernel_is_byte_identical_to_the_encoder() -> None:
    """Values pushed into the packed ring (counters as marks) come out as the frame
    Encoder.sample makes of the same values: through the kernel and through sample_slot's
    pure-Python path."""
    from dgsclip.framing import _crc_table

    rng = np.random.default_rng(3)
    for pelvis in (False, True):
        ring = SampleRing(8, pelvis)
        pushed = []
        for k in range(8):
            cd = array("i", (int(x) for x in rng.integers(-18000, 18001, 3)))
            q14 = array("h", (int(x) for x in rng.integers(-16384, 16385, 4)))
            pq = array("h", (int(x) for x in rng.integers(-16384, 16385, 4)))
            flags = int(rng.integers(0, 256)) & ~0x20 | (0x20 if pelvis and k % 2 else 0)
            t = int(rng.integers(0, 1 << 30))
            errs = int(rng.integers(0, 65536)) if k % 3 else 0  # some slots without a mark
            assert ring.push(t, cd, q14, flags, errs, k * 999, pq)
            pushed.append((t, *cd, q14, flags, errs, k * 999, pq if flags & 0x20 else None))
        ref, enc = Encoder(), Encoder()
        for i in range(8):
            seq = int(rng.integers(0, 1 << 30))
            assert ring.take() == 0 and ring.tail == i
            ref.seq = enc.seq = seq
            want = bytes(ref.sample(None, *pushed[i]))
            assert bytes(enc.sample_slot(ring, i)) == want  # CPython: through Encoder.sample
            out = bytearray(64)
            sa = array("H", (seq & 0xFFFF, seq >> 16))
            n = fxio.sample_frame(
                out, bytearray(64), ring.v, ring.r, i, sa, enc._ver, _crc_table(), 0
            )
            assert bytes(out[:n]) == want
            ring.pop()
        assert ring.count == 0 and ring.bytes_per_slot == (28 if pelvis else 20)


def test_batch_framing_equals_the_frames_one_by_one() -> None:
    """fxio.frames_out (the viper main loop's one call per pass) writes what the per-sample
    path sends: the same frames back to back, drops before a slot advancing the sequence
    number, the sequence number carried over 16 bits, the slots released."""
    from dgsclip.framing import _crc_table

    def fill(ring: SampleRing) -> None:
        cd = array("i", (-1200, 35, 17999))
        q = array("h", (16000, -300, 2, -2))
        for k in range(5):  # the 5th finds the ring full: dropped
            assert ring.push(1000 + 5000 * k, cd, q, 3, k // 2, 0, None) == (k < 4)
        ring.take()
        ring.pop()  # one slot freed: the next carries "1 dropped before me"
        assert ring.push(26000, cd, q, 3, 2, 0, None)

    ref, got = SampleRing(4), SampleRing(4)
    fill(ref)
    fill(got)
    enc = Encoder()
    enc.seq = 65534  # the batch carries into the high half
    want = b""
    while ref.count:
        enc.seq = (enc.seq + ref.take()) & 0xFFFFFFFF
        want += bytes(enc.sample_slot(ref, ref.tail))
        ref.pop()
    sa = array("H", (65534, 0))
    out = bytearray(192)
    n = fxio.frames_out(out, bytearray(64), got.v, got.r, got.m, sa, enc._ver, _crc_table(), 192)
    assert bytes(out[:n]) == want and n == len(want) > 0
    assert got.count == 0 and (sa[0] | sa[1] << 16) == enc.seq == 65534 + 4 + 1


def test_ring_drops_whole_samples_and_counts_them_in_order() -> None:
    """A full ring drops new samples and the next queued one carries how many; a full mark
    queue drops like a full ring; nothing is corrupted."""
    ring = SampleRing(4, False, marks=2)
    cd = array("i", (1, 2, 3))
    q = array("h", (16384, 0, 0, 0))
    assert [ring.push(k, cd, q, 1, 0, 0, None) for k in range(6)] == [True] * 4 + [False] * 2
    assert ring.dropped == 2 and ring.peak == 4
    for _ in range(4):
        assert ring.take() == 0
        ring.pop()
    assert ring.push(10, cd, q, 1, 0, 0, None)  # mark 1: 2 dropped before it
    assert ring.push(11, cd, q, 1, 5, 0, None)  # mark 2: errors changed
    assert not ring.push(12, cd, q, 1, 6, 0, None)  # marks full: dropped (counted)
    assert not ring.push(13, cd, q, 1, 5, 0, None)  # a drop before it needs a mark: dropped
    assert ring.dropped == 4
    assert ring.take() == 2 and ring.r[16] == 0
    ring.pop()
    assert ring.take() == 0 and ring.r[16] == 5
    ring.pop()
    assert ring.push(14, cd, q, 1, 6, 0, None)  # marks free again
    assert ring.count == 1 and ring.take() == 2  # 12 and 13 were lost before 14
    assert ring.r[16] == 6
    ring.pop()


def test_fifo_packet_decode_kernel_matches_struct() -> None:
    import struct

    rng = np.random.default_rng(4)
    g = array("i", (0, 0, 0))
    a = array("i", (0, 0, 0))
    for _ in range(50):
        vals = [int(x) for x in rng.integers(-32768, 32768, 6)]
        fxio.be6_into(struct.pack(">6h", *vals), g, a, 500, 4, 0)
        assert list(a) == [v * 4 for v in vals[:3]] and list(g) == [v * 500 for v in vals[3:]]
        fxio.be6_into(b"\x01" * 24 + struct.pack(">6h", *vals), g, a, 16, 2000, 24)
        assert list(a) == [v * 2000 for v in vals[:3]] and list(g) == [v * 16 for v in vals[3:]]


def test_self_check_runs_clean_against_the_twins() -> None:
    """fxcheck.agree(nat) is what decides at boot whether the viper kernels are used; run
    against the twins themselves it must pass (no exception path, e.g. an import that is
    not there yet when load() runs)."""
    from types import SimpleNamespace

    from dgsclip import fxcheck, fxmahony

    twins = SimpleNamespace(
        **{k: getattr(m, k) for m in (fxgeom, fxio, fxmahony) for k in dir(m) if k[0] != "_"}
    )
    assert fxcheck.agree(twins) is True


def test_hot_path_matches_the_general_path_when_settled() -> None:
    from dgsclip.pipeline import Pipeline

    a, b = Pipeline("left", False), Pipeline("left", False)
    G = array("i", (0, 0, 0))
    A = array("i", (0, 0, 0))
    hot = 0
    for k in range(1200):
        moving = k > 700
        G[0], G[1], G[2] = 9830 + (k % 3), -6554, (983040 if moving else 3277) + (k % 5)
        A[0], A[1], A[2] = 1638 + (k % 7), 32604 - (k % 2), 655
        fa = a.update_fx(G, A, 5000)
        if b.settled():
            fb = b.update_hot(G, A, 5000, None, None)
            hot += 1
        else:
            fb = b.update_fx(G, A, 5000)
        assert fa == fb and list(a.cd) == list(b.cd) and list(a.q14) == list(b.q14), k
    assert hot > 1000


def test_fuse_push_matches_update_fx_and_ring_push() -> None:
    """fxio.fuse_push (the FIFO drain's one call per sample) = Pipeline.update_fx followed
    by the sampler's ring push, thigh only and thigh + pelvis (a pelvis read missing now
    and then), in both pelvis frame modes, until the first bias learning's once-only work
    (it returns -1 then and leaves everything untouched)."""
    from dgsclip.pipeline import Pipeline

    for pelvis in (False, True):
        for mode in (0, 1):
            if mode and not pelvis:
                continue
            a, b = Pipeline("left", pelvis), Pipeline("right", pelvis)
            b.hip.mirror = a.hip.mirror
            ra, rb = SampleRing(64, pelvis), SampleRing(64, pelvis)
            G, A = array("i", (0, 0, 0)), array("i", (0, 0, 0))
            PG, PA = array("i", (0, 0, 0)), array("i", (0, 0, 0))
            L = b.hot_arrays(G, A, PG, PA, rb)
            K = array("i", (0, 0, 0, 1, 0))
            fused = 0
            for k in range(1200):
                moving = k > 700
                G[0], G[1], G[2] = 9830 + (k % 3), -6554, (983040 if moving else 3277) + (k % 5)
                A[0], A[1], A[2] = 1638 + (k % 7), 32604 - (k % 2), 655
                PG[0], PG[1], PG[2] = 3277, 1000 + (k % 4), -(k % 9)
                PA[0], PA[1], PA[2] = 900, 32700 - (k % 3), -400
                pel = pelvis and k % 11 != 0
                if b.settled():
                    b.hot_mode(K)
                    if mode:  # (needs a pelvis calibration: stood in for on both sides)
                        a_mode(a)
                        K[0] = K[2] = 1
                    f = fxio.fuse_push(L, K, 5000, 1000 * k, 0x10 * (k & 1), k // 100, 0, pel)
                    if f >= 0:
                        fa = a.update_hot(G, A, 5000, PG if pel else None, PA)
                        assert f == fa | (0x10 * (k & 1)) and K[4] == fa
                        pq = a.pq14 if pel else None
                        fl = (f & 0xFF) | (0x20 if pel else 0)
                        ra.push(1000 * k, a.cd, a.q14, fl, k // 100, 0, pq)
                        fused += 1
                        assert list(a.cd) == list(b.cd) and list(a.q14) == list(b.q14), k
                        assert list(a.thigh.S) == list(b.thigh.S)
                        assert ra.take() == rb.take()
                        ra.pop()
                        rb.pop()
                        continue
                a.update_fx(G, A, 5000, PG if pel else None, PA if pel else None)
                b.update_fx(G, A, 5000, PG if pel else None, PA if pel else None)
            assert fused > 400
            assert ra.v == rb.v and list(ra.r) == list(rb.r) and list(ra.m) == list(rb.m)


def a_mode(p: object) -> None:
    """update_hot takes the aligned-pelvis branch only when calibrated and the alignment is
    ready: stand in for both on the reference pipeline (the kernel gets K[0] = 1)."""
    p.cal.has_mount = p.cal.has_neutral = True  # type: ignore[attr-defined]
    p.palign.ready = True  # type: ignore[attr-defined]
