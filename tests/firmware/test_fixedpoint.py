"""The fixed-point kernels (dgsclip.fxcore, the pure-Python twins of the viper code)
against the float reference they replace, and the SAMPLE frame kernel against the
Encoder byte for byte (the wire format must not change)."""

from __future__ import annotations

from array import array

import numpy as np
from dgsclip import fxcore as fx
from dgsclip import quat
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
            fx.qmul(out, _fx(a), _fx(b), conj)
            (quat.conj_mul_into if conj else quat.mul_into)(ref, array("f", a), array("f", b))
            assert np.abs(np.array(out) / fx.ONE - np.array(ref)).max() < 2e-7


def test_hip_angles_match_float_within_a_centidegree() -> None:
    tab = fx.cordic_table()
    out = array("i", [0] * 3)
    ref = array("f", [0.0] * 3)
    worst = 0.0
    for q in _rand_quats(500, 2):
        for mirror in (0, 1):
            fx.hip_cd(out, _fx(q), tab, mirror)
            angles_into(ref, array("f", q), bool(mirror))
            d = np.abs(np.array(out) / 100.0 - np.array(ref))
            d = np.minimum(d, 360.0 - d)  # +-180 deg are the same angle
            worst = max(worst, float(d.max()))
    assert worst <= 0.011  # rounding to the wire's 0.01 deg


def test_sample_frame_kernel_is_byte_identical_to_the_encoder() -> None:
    from dgsclip.framing import _crc_table

    rng = np.random.default_rng(3)
    for pelvis in (False, True):
        ring = SampleRing(8, pelvis)
        for k in range(8):
            cd = array("i", (int(x) for x in rng.integers(-18000, 18001, 3)))
            q14 = array("h", (int(x) for x in rng.integers(-16384, 16385, 4)))
            pq = array("h", (int(x) for x in rng.integers(-16384, 16385, 4)))
            flags = int(rng.integers(0, 256)) & ~0x20 | (0x20 if pelvis and k % 2 else 0)
            t = int(rng.integers(0, 1 << 30))
            ring.push(t, cd, q14, flags, int(rng.integers(0, 65536)), k * 999, pq)
        enc = Encoder()
        for i in range(8):
            seq = int(rng.integers(0, 1 << 30))
            enc.seq = seq
            want = bytes(enc.sample_slot(ring, i))  # CPython: through Encoder.sample
            out = bytearray(64)
            n = fx.sample_frame(
                out, bytearray(64), ring.t, ring.v, ring.u,
                ring.p if ring.p is not None else ring.v, i, seq, enc._ver, _crc_table(),
            )  # fmt: skip
            assert bytes(out[:n]) == want


def test_fifo_packet_decode_kernel_matches_struct() -> None:
    import struct

    rng = np.random.default_rng(4)
    g = array("i", (0, 0, 0))
    a = array("i", (0, 0, 0))
    for _ in range(50):
        vals = [int(x) for x in rng.integers(-32768, 32768, 6)]
        fx.be6_into(struct.pack(">6h", *vals), g, a, 500, 4)
        assert list(a) == [v * 4 for v in vals[:3]] and list(g) == [v * 500 for v in vals[3:]]


def test_self_check_runs_clean_against_the_twins() -> None:
    """fxcore._agree(nat) is what decides at boot whether the viper kernels are used; run
    against the twins themselves it must pass (no exception path, e.g. an import that is
    not there yet when load() runs)."""
    assert fx._agree(fx) is True


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
