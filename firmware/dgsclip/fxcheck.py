"""Boot self-check: the viper kernels (dgsclip.fxnative) against their pure-Python twins."""

from dgsclip.fxcore import ONE, S_SIZE, cordic_table
from dgsclip.fxgeom import hip_cd, q14_into, qmul
from dgsclip.fxio import be6_into, frames_out, fuse_push, ring_push, sample_frame
from dgsclip.fxmahony import mahony_step


def agree(nat):
    from array import array

    tab = cordic_table()
    q = array("i", (228170814, 104107232, -76745950, 68417434))  # |q| = 1, arbitrary
    p = array("i", (-61080418, 151137930, 196453744, 71583017))
    o1 = array("i", [0] * 7)
    o2 = array("i", [0] * 7)
    for conj in (0, 1):
        qmul(o1, p, q, conj)
        nat.qmul(o2, p, q, conj)
        if list(o1) != list(o2):
            return False
    for mir in (0, 1):
        for qq in (q, p):
            hip_cd(o1, qq, tab, mir)
            nat.hip_cd(o2, qq, tab, mir)
            if list(o1) != list(o2):
                return False
    qa = array("h", (0, 0, 0, 0))
    qb = array("h", (0, 0, 0, 0))
    q14_into(qa, p)
    nat.q14_into(qb, p)
    if list(qa) != list(qb):  # (array == array is not in every MicroPython)
        return False
    # SAMPLE frames of two ring slots (thigh only, thigh + pelvis), byte for byte (the
    # CRC table built here: framing may not be imported yet).
    crc = array("H", [0] * 256)
    for i in range(256):
        x = i << 8
        for _ in range(8):
            x = ((x << 1) ^ 0x1021) if x & 0x8000 else (x << 1)
        crc[i] = x & 0xFFFF
    # Ring pushes (with and without marks, pelvis or not) and the SAMPLE frames of the
    # slots, byte for byte; then whole fuse_push samples (they call the other kernels).
    cd = array("i", (-18000, 123, 17999))
    q4 = array("h", (16384, -16384, 5, -5))
    p4 = array("h", (16000, -3000, 256, -1))
    for w in (20, 28):
        rings = []
        for _ in range(2):
            st = array("i", [0] * 19)
            st[7] = 3
            st[8] = w
            st[13] = 2
            st[18] = 1  # blocks of 2 slots
            rings.append(((bytearray(2 * w), bytearray(w)), st, array("i", [0] * 6)))
        for args in ((5, 0x13, 7, 0), (1073741000, 0x23, 70000, 65535), (40000, 0x21, 7, 3)):
            r1 = ring_push(rings[0][0], rings[0][1], rings[0][2], cd, q4, p4, *args)
            r2 = nat.ring_push(rings[1][0], rings[1][1], rings[1][2], cd, q4, p4, *args)
            if r1 != r2:
                return False
        if rings[0][0] != rings[1][0] or list(rings[0][1]) != list(rings[1][1]):
            return False
        if list(rings[0][2]) != list(rings[1][2]):
            return False
        for i in range(3):
            for seq in (0, 1 << 24, 123456):
                b1 = bytearray(64)
                b2 = bytearray(64)
                sa = array("H", (seq & 0xFFFF, seq >> 16))
                n1 = sample_frame(b1, bytearray(64), rings[0][0], rings[0][1], i, sa, 0x11, crc, 3)
                n2 = nat.sample_frame(
                    b2, bytearray(64), rings[1][0], rings[1][1], i, sa, 0x11, crc, 3
                )
                if n1 != n2 or b1 != b2:
                    return False
        # the batch: both rings hold the same slots (two of them with marks)
        outs = []
        for k, kern in ((0, frames_out), (1, nat.frames_out)):
            sa = array("H", (65534, 7))
            b = bytearray(160)
            n = kern(b, bytearray(64), rings[k][0], rings[k][1], rings[k][2], sa, 0x11, crc, 160)
            outs.append((n, bytes(b), list(sa), list(rings[k][1])))
        if outs[0] != outs[1]:
            return False
    c = array(
        "i", (98304, 983, 16384, 655, 100000, 300000, 400000, 2000000, 1000000, 268, 5369, 3276)
    )
    if not _agree_fuse(nat, c, tab):
        return False
    pk = bytes((0x80, 0x00, 0x7F, 0xFF, 0x00, 0x01, 0xFF, 0xFF, 0x12, 0x34, 0xED, 0xCB))
    g1 = array("i", (0, 0, 0))
    a1 = array("i", (0, 0, 0))
    g2 = array("i", (0, 0, 0))
    a2 = array("i", (0, 0, 0))
    be6_into(pk, g1, a1, 2000, 16, 0)
    nat.be6_into(pk, g2, a2, 2000, 16, 0)
    if list(g1) != list(g2) or list(a1) != list(a2):
        return False
    be6_into(pk + pk[3:], g1, a1, 250, 2, 3)
    nat.be6_into(pk + pk[3:], g2, a2, 250, 2, 3)
    if list(g1) != list(g2) or list(a1) != list(a2):
        return False
    for seq in range(2):
        s1 = array("i", [0] * S_SIZE)
        s1[0] = ONE
        s2 = array("i", s1)
        for i in range(40):
            # still at first (bias learning), then moving with a tilted accel
            if seq == 0 or i < 20:
                g = array("i", (3277 + (i & 3), -1638, 655 - (i & 1)))
                acc = array("i", (900, 32700 + (i & 1), -400))
            else:
                g = array("i", (1966080, -655360 + i * 997, 327680))
                acc = array("i", (9000, 30000 - i * 13, 8000 + i * 7))
            f1 = mahony_step(s1, g, acc, c, 5000 + (i & 1))
            f2 = nat.mahony_step(s2, g, acc, c, 5000 + (i & 1))
            if f1 != f2 or list(s1) != list(s2):
                return False
    return True


def _agree_fuse(nat, c, tab):
    """fuse_push, twin against viper: a thigh + pelvis pipeline in both frame modes, the
    ring pushes included (the viper one calls the viper kernels)."""
    from array import array

    outs = []
    for kern in (fuse_push, nat.fuse_push):
        ls = []
        for k in range(23):
            if k in (0, 2):
                x = array("i", (3277, -1638, 655))
            elif k in (1, 3):
                x = array("i", (900, 32700, -400))
            elif k in (4, 6):
                x = array("i", [0] * S_SIZE)
                x[0] = ONE
                x[19] = 2000000  # past the initialisation
            elif k in (5, 7):
                x = c
            elif k == 15:
                x = array("i", (228170814, 104107232, -76745950, 68417434))
            elif k in (8, 9, 10, 11, 12, 13, 14):
                x = array("i", (ONE, 0, 0, 0))
            elif k == 16:
                x = array("i", (0, 0, 0))
            elif k in (17, 18):
                x = array("h", (16384, 0, 0, 0))
            elif k == 19:
                x = tab
            elif k == 20:
                x = (bytearray(28), bytearray(28))
            elif k == 21:
                x = array("i", [0] * 19)
                x[7] = 2
                x[8] = 28
                x[13] = 4
            else:
                x = array("i", [0] * 12)
            ls.append(x)
        L = tuple(ls)
        K = array("i", (0, 1, 1, 1, 0))
        res = []
        for i in range(6):
            K[0] = i & 1
            res.append(kern(L, K, 5000, 1000 + i * 5000, 8 * (i & 2), i >> 1, 0, i & 1))
        arrs = [list(x) for x in L if x is not c and x is not tab and not isinstance(x, tuple)]
        outs.append((res, arrs, [bytes(x) for x in L[20]], list(K)))
    return outs[0] == outs[1]
