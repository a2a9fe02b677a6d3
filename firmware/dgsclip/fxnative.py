"""GENERATED from dgsclip/fxmahony.py, fxgeom.py, fxio.py by `python -m tests.firmware.test_fxnative`: do not edit.

The fixed-point kernels as @micropython.viper machine code, for ports with a native emitter
(RP2040, ESP32). fxcore.load() imports this in a try/except and uses it only if it gives
the pure-Python twins' answers on a set of inputs; see fxcore.py for the rules both follow.
"""

import micropython


@micropython.viper
def mahony_step(S, G, A, C, dt: int) -> int:
    """One Mahony step on state S with gyro G and accel A (3 ints each), dt in µs.
    Returns the flags. Rare work (init from gravity, the accel bias once the bias is learnt)
    is left to the caller (dgsclip.fusion.Mahony) via S[S_EVENT] and S[S_T]."""
    s = ptr32(S)  # noqa: F821  (viper built-in)
    g = ptr32(G)  # noqa: F821  (viper built-in)
    a = ptr32(A)  # noqa: F821  (viper built-in)
    c = ptr32(C)  # noqa: F821  (viper built-in)
    if dt <= 0:
        return s[20]
    if dt > 50000:
        dt = 50000
    t = s[19]
    if t < c[8]:
        s[19] = t + dt
    gx = g[0]
    gy = g[1]
    gz = g[2]
    ax = a[0] - s[7]
    ay = a[1] - s[8]
    az = a[2] - s[9]
    # |a| by integer square root, with a shift that keeps the squares below 2**30.
    sh = 2
    m = ax
    if m < 0:
        m = 0 - m
    k = ay
    if k < 0:
        k = 0 - k
    if k > m:
        m = k
    k = az
    if k < 0:
        k = 0 - k
    if k > m:
        m = k
    while (m >> sh) >= 16384:
        sh += 1
    x = ax >> sh
    y = ay >> sh
    z = az >> sh
    n2 = x * x + y * y + z * z
    r = 0
    b = 1 << 28
    while b > n2:
        b = b >> 2
    while b != 0:
        if n2 >= r + b:
            n2 = n2 - r - b
            r = (r >> 1) + b
        else:
            r = r >> 1
        b = b >> 2
    an = r << sh  # |a| in accel units
    flags = 0
    # -- stationary detector on the raw rates (see fusion.py for the why) -------------
    bx = (s[4] + 8) >> 4
    by = (s[5] + 8) >> 4
    bz = (s[6] + 8) >> 4
    thr = c[0]
    ath = c[1]
    still = 0
    inband = 0
    d = gx - bx
    if d < thr:
        if d > 0 - thr:
            d = gy - by
            if d < thr:
                if d > 0 - thr:
                    d = gz - bz
                    if d < thr:
                        if d > 0 - thr:
                            d = an - 32768
                            if d < ath:
                                if d > 0 - ath:
                                    inband = 1
    if inband != 0:
        n = s[16]
        restart = 1
        if n > 0:
            band = c[2] * n
            aband = c[3] * n
            restart = 0
            d = n * gx - s[10]
            if d > band:
                restart = 1
            if d < 0 - band:
                restart = 1
            d = n * gy - s[11]
            if d > band:
                restart = 1
            if d < 0 - band:
                restart = 1
            d = n * gz - s[12]
            if d > band:
                restart = 1
            if d < 0 - band:
                restart = 1
            d = n * ax - s[13]
            if d > aband:
                restart = 1
            if d < 0 - aband:
                restart = 1
            d = n * ay - s[14]
            if d > aband:
                restart = 1
            if d < 0 - aband:
                restart = 1
            d = n * az - s[15]
            if d > aband:
                restart = 1
            if d < 0 - aband:
                restart = 1
        if restart != 0:
            s[10] = gx
            s[11] = gy
            s[12] = gz
            s[13] = ax
            s[14] = ay
            s[15] = az
            s[16] = 1
            s[17] = dt
        else:
            n += 1
            s[10] = s[10] + gx
            s[11] = s[11] + gy
            s[12] = s[12] + gz
            s[13] = s[13] + ax
            s[14] = s[14] + ay
            s[15] = s[15] + az
            if n >= 1024:
                # Keep the sums small: the run's mean stays, older samples weigh less.
                n = n >> 1
                s[10] = s[10] >> 1
                s[11] = s[11] >> 1
                s[12] = s[12] >> 1
                s[13] = s[13] >> 1
                s[14] = s[14] >> 1
                s[15] = s[15] >> 1
            s[16] = n
            st = s[17]
            if st < 1 << 29:
                st += dt
                s[17] = st
            if s[18] >= c[6]:
                if st >= c[5]:
                    still = 1
            else:
                if st >= c[4]:
                    still = 1
    else:
        s[17] = 0
        s[16] = 0
    if still != 0:
        flags = 2
        bs = s[18]
        if bs < c[6]:
            # First learning: the plain mean of the confirmed still samples.
            bn = s[26] + 1
            s[26] = bn
            s[23] = s[23] + gx
            s[24] = s[24] + gy
            s[25] = s[25] + gz
            s[4] = (s[23] << 4) // bn
            s[5] = (s[24] << 4) // bn
            s[6] = (s[25] << 4) // bn
            bs += dt
            s[18] = bs
            if bs >= c[6]:
                s[22] = 1
        else:
            # Then a low-pass with time constant tau: k = dt / (tau + dt) in Q20 (0.02 %),
            # the step d x k split at 2**10 (d < 2**21 here), rounded.
            k = (dt << 14) // ((c[7] + dt) >> 6)
            d = (gx << 4) - s[4]
            s[4] = s[4] + ((((d >> 10) * k) + (((d & 1023) * k) >> 10) + 512) >> 10)
            d = (gy << 4) - s[5]
            s[5] = s[5] + ((((d >> 10) * k) + (((d & 1023) * k) >> 10) + 512) >> 10)
            d = (gz << 4) - s[6]
            s[6] = s[6] + ((((d >> 10) * k) + (((d & 1023) * k) >> 10) + 512) >> 10)
        bx = (s[4] + 8) >> 4
        by = (s[5] + 8) >> 4
        bz = (s[6] + 8) >> 4
    # Half-step rotation increments, Q28: (rate - bias) x KG >> 28 (fxmul, inlined below).
    kg = dt * 19190
    bh = kg >> 14
    bl = kg & 16383
    x = gx - bx
    ah = x >> 14
    al = x & 16383
    ix = ah * bh + ((ah * bl + al * bh + ((al * bl) >> 14)) >> 14)
    x = gy - by
    ah = x >> 14
    al = x & 16383
    iy = ah * bh + ((ah * bl + al * bh + ((al * bl) >> 14)) >> 14)
    x = gz - bz
    ah = x >> 14
    al = x & 16383
    iz = ah * bh + ((ah * bl + al * bh + ((al * bl) >> 14)) >> 14)
    qw = s[0]
    qx = s[1]
    qy = s[2]
    qz = s[3]
    init = 0
    if s[19] < c[8]:
        init = 1
        flags = flags | 256
    accept = 0
    if an >= 16384:
        if an < 65536:
            if init != 0:
                accept = 1
            else:
                d = an - 32768
                if d <= c[11]:
                    if d >= 0 - c[11]:
                        accept = 1
    if accept != 0:
        # Unit accel, Q28: a << 13 times 2**42 / |a| (two-step division), >> 27.
        q1 = (1 << 29) // an
        q2 = (((1 << 29) - q1 * an) << 13) // an
        rr = ((q1 << 13) + q2) << 1
        bh = rr >> 14
        bl = rr & 16383
        x = ax << 13
        ah = x >> 14
        al = x & 16383
        ux = ah * bh + ((ah * bl + al * bh + ((al * bl) >> 14)) >> 14)
        x = ay << 13
        ah = x >> 14
        al = x & 16383
        uy = ah * bh + ((ah * bl + al * bh + ((al * bl) >> 14)) >> 14)
        x = az << 13
        ah = x >> 14
        al = x & 16383
        uz = ah * bh + ((ah * bl + al * bh + ((al * bl) >> 14)) >> 14)
        # Reference "up" seen from the body: third row of R(q)^T.
        wh = qw >> 14
        wl = qw & 16383
        xh = qx >> 14
        xl = qx & 16383
        yh = qy >> 14
        yl = qy & 16383
        zh = qz >> 14
        zl = qz & 16383
        vx = (
            (xh * zh + ((xh * zl + xl * zh + ((xl * zl) >> 14)) >> 14))
            - (wh * yh + ((wh * yl + wl * yh + ((wl * yl) >> 14)) >> 14))
        ) << 1
        vy = (
            (wh * xh + ((wh * xl + wl * xh + ((wl * xl) >> 14)) >> 14))
            + (yh * zh + ((yh * zl + yl * zh + ((yl * zl) >> 14)) >> 14))
        ) << 1
        vz = (
            (wh * wh + ((wh * wl + wl * wh + ((wl * wl) >> 14)) >> 14))
            - (xh * xh + ((xh * xl + xl * xh + ((xl * xl) >> 14)) >> 14))
            - (yh * yh + ((yh * yl + yl * yh + ((yl * yl) >> 14)) >> 14))
            + (zh * zh + ((zh * zl + zl * zh + ((zl * zl) >> 14)) >> 14))
        )
        # e = a x v (Q28), times the half-step gain kp x dt / 2 (Q28).
        kp = c[9]
        if init != 0:
            kp = c[10]
        kp = (kp * dt) >> 2
        bh = kp >> 14
        bl = kp & 16383
        ah = uy >> 14
        al = uy & 16383
        ch = vz >> 14
        cl = vz & 16383
        e = ah * ch + ((ah * cl + al * ch + ((al * cl) >> 14)) >> 14)
        ah = uz >> 14
        al = uz & 16383
        ch = vy >> 14
        cl = vy & 16383
        e = e - (ah * ch + ((ah * cl + al * ch + ((al * cl) >> 14)) >> 14))
        ah = e >> 14
        al = e & 16383
        ix = ix + ah * bh + ((ah * bl + al * bh + ((al * bl) >> 14)) >> 14)
        ah = uz >> 14
        al = uz & 16383
        ch = vx >> 14
        cl = vx & 16383
        e = ah * ch + ((ah * cl + al * ch + ((al * cl) >> 14)) >> 14)
        ah = ux >> 14
        al = ux & 16383
        ch = vz >> 14
        cl = vz & 16383
        e = e - (ah * ch + ((ah * cl + al * ch + ((al * cl) >> 14)) >> 14))
        ah = e >> 14
        al = e & 16383
        iy = iy + ah * bh + ((ah * bl + al * bh + ((al * bl) >> 14)) >> 14)
        ah = ux >> 14
        al = ux & 16383
        ch = vy >> 14
        cl = vy & 16383
        e = ah * ch + ((ah * cl + al * ch + ((al * cl) >> 14)) >> 14)
        ah = uy >> 14
        al = uy & 16383
        ch = vx >> 14
        cl = vx & 16383
        e = e - (ah * ch + ((ah * cl + al * ch + ((al * cl) >> 14)) >> 14))
        ah = e >> 14
        al = e & 16383
        iz = iz + ah * bh + ((ah * bl + al * bh + ((al * bl) >> 14)) >> 14)
    else:
        flags = flags | 4
        s[21] = s[21] + 1
    # q += 0.5 q * (0, w) dt: the increments already hold 0.5 dt.
    wh = qw >> 14
    wl = qw & 16383
    xh = qx >> 14
    xl = qx & 16383
    yh = qy >> 14
    yl = qy & 16383
    zh = qz >> 14
    zl = qz & 16383
    ah = ix >> 14
    al = ix & 16383
    bh = iy >> 14
    bl = iy & 16383
    ch = iz >> 14
    cl = iz & 16383
    nw = (
        qw
        - (xh * ah + ((xh * al + xl * ah + ((xl * al) >> 14)) >> 14))
        - (yh * bh + ((yh * bl + yl * bh + ((yl * bl) >> 14)) >> 14))
        - (zh * ch + ((zh * cl + zl * ch + ((zl * cl) >> 14)) >> 14))
    )
    nx = (
        qx
        + (wh * ah + ((wh * al + wl * ah + ((wl * al) >> 14)) >> 14))
        + (yh * ch + ((yh * cl + yl * ch + ((yl * cl) >> 14)) >> 14))
        - (zh * bh + ((zh * bl + zl * bh + ((zl * bl) >> 14)) >> 14))
    )
    ny = (
        qy
        + (wh * bh + ((wh * bl + wl * bh + ((wl * bl) >> 14)) >> 14))
        - (xh * ch + ((xh * cl + xl * ch + ((xl * cl) >> 14)) >> 14))
        + (zh * ah + ((zh * al + zl * ah + ((zl * al) >> 14)) >> 14))
    )
    nz = (
        qz
        + (wh * ch + ((wh * cl + wl * ch + ((wl * cl) >> 14)) >> 14))
        + (xh * bh + ((xh * bl + xl * bh + ((xl * bl) >> 14)) >> 14))
        - (yh * ah + ((yh * al + yl * ah + ((yl * al) >> 14)) >> 14))
    )
    # Renormalise: |q|^2 = 1 + e with |e| << 1, so 1/|q| = 1 - e/2 + 3e^2/8 (Newton, once).
    wh = nw >> 14
    wl = nw & 16383
    xh = nx >> 14
    xl = nx & 16383
    yh = ny >> 14
    yl = ny & 16383
    zh = nz >> 14
    zl = nz & 16383
    e = (
        (wh * wh + ((wh * wl + wl * wh + ((wl * wl) >> 14)) >> 14))
        + (xh * xh + ((xh * xl + xl * xh + ((xl * xl) >> 14)) >> 14))
        + (yh * yh + ((yh * yl + yl * yh + ((yl * yl) >> 14)) >> 14))
        + (zh * zh + ((zh * zl + zl * zh + ((zl * zl) >> 14)) >> 14))
        - 268435456
    )
    ah = e >> 14
    al = e & 16383
    e2 = ah * ah + ((ah * al + al * ah + ((al * al) >> 14)) >> 14)
    inv = 268435456 - (e >> 1) + ((e2 * 3) >> 3)
    bh = inv >> 14
    bl = inv & 16383
    s[0] = wh * bh + ((wh * bl + wl * bh + ((wl * bl) >> 14)) >> 14)
    s[1] = xh * bh + ((xh * bl + xl * bh + ((xl * bl) >> 14)) >> 14)
    s[2] = yh * bh + ((yh * bl + yl * bh + ((yl * bl) >> 14)) >> 14)
    s[3] = zh * bh + ((zh * bl + zl * bh + ((zl * bl) >> 14)) >> 14)
    s[20] = flags
    return flags


@micropython.viper
def qmul(R, P, Q, conj: int) -> int:
    """R = P * Q (Q28), or conj(P) * Q when conj != 0. R must not alias P or Q."""
    o = ptr32(R)  # noqa: F821  (viper built-in)
    p = ptr32(P)  # noqa: F821  (viper built-in)
    q = ptr32(Q)  # noqa: F821  (viper built-in)
    aw = p[0]
    ax = p[1]
    ay = p[2]
    az = p[3]
    if conj != 0:
        ax = 0 - ax
        ay = 0 - ay
        az = 0 - az
    wh = aw >> 14
    wl = aw & 16383
    xh = ax >> 14
    xl = ax & 16383
    yh = ay >> 14
    yl = ay & 16383
    zh = az >> 14
    zl = az & 16383
    b = q[0]
    ah = b >> 14
    al = b & 16383
    b = q[1]
    bh = b >> 14
    bl = b & 16383
    b = q[2]
    ch = b >> 14
    cl = b & 16383
    b = q[3]
    dh = b >> 14
    dl = b & 16383
    o[0] = (
        (wh * ah + ((wh * al + wl * ah + ((wl * al) >> 14)) >> 14))
        - (xh * bh + ((xh * bl + xl * bh + ((xl * bl) >> 14)) >> 14))
        - (yh * ch + ((yh * cl + yl * ch + ((yl * cl) >> 14)) >> 14))
        - (zh * dh + ((zh * dl + zl * dh + ((zl * dl) >> 14)) >> 14))
    )
    o[1] = (
        (wh * bh + ((wh * bl + wl * bh + ((wl * bl) >> 14)) >> 14))
        + (xh * ah + ((xh * al + xl * ah + ((xl * al) >> 14)) >> 14))
        + (yh * dh + ((yh * dl + yl * dh + ((yl * dl) >> 14)) >> 14))
        - (zh * ch + ((zh * cl + zl * ch + ((zl * cl) >> 14)) >> 14))
    )
    o[2] = (
        (wh * ch + ((wh * cl + wl * ch + ((wl * cl) >> 14)) >> 14))
        - (xh * dh + ((xh * dl + xl * dh + ((xl * dl) >> 14)) >> 14))
        + (yh * ah + ((yh * al + yl * ah + ((yl * al) >> 14)) >> 14))
        + (zh * bh + ((zh * bl + zl * bh + ((zl * bl) >> 14)) >> 14))
    )
    o[3] = (
        (wh * dh + ((wh * dl + wl * dh + ((wl * dl) >> 14)) >> 14))
        + (xh * ch + ((xh * cl + xl * ch + ((xl * cl) >> 14)) >> 14))
        - (yh * bh + ((yh * bl + yl * bh + ((yl * bl) >> 14)) >> 14))
        + (zh * ah + ((zh * al + zl * ah + ((zl * al) >> 14)) >> 14))
    )
    return 0


@micropython.viper
def hip_cd(R, Q, T, mirror: int) -> int:
    """R[0..2] = flexion, adduction, internal rotation in centidegrees (rounded) of the hip
    rotation Q (Q28), intrinsic Z-X'-Y'' Cardan angles as dgsclip.hip.angles_into.
    T: cordic_table()."""
    o = ptr32(R)  # noqa: F821  (viper built-in)
    q = ptr32(Q)  # noqa: F821  (viper built-in)
    t = ptr32(T)  # noqa: F821  (viper built-in)
    w = q[0]
    x = q[1]
    y = q[2]
    z = q[3]
    wh = w >> 14
    wl = w & 16383
    xh = x >> 14
    xl = x & 16383
    yh = y >> 14
    yl = y & 16383
    zh = z >> 14
    zl = z & 16383
    xx = xh * xh + ((xh * xl + xl * xh + ((xl * xl) >> 14)) >> 14)
    yy = yh * yh + ((yh * yl + yl * yh + ((yl * yl) >> 14)) >> 14)
    zz = zh * zh + ((zh * zl + zl * zh + ((zl * zl) >> 14)) >> 14)
    xy = xh * yh + ((xh * yl + xl * yh + ((xl * yl) >> 14)) >> 14)
    xz = xh * zh + ((xh * zl + xl * zh + ((xl * zl) >> 14)) >> 14)
    yz = yh * zh + ((yh * zl + yl * zh + ((yl * zl) >> 14)) >> 14)
    wx = wh * xh + ((wh * xl + wl * xh + ((wl * xl) >> 14)) >> 14)
    wy = wh * yh + ((wh * yl + wl * yh + ((wl * yl) >> 14)) >> 14)
    wz = wh * zh + ((wh * zl + wl * zh + ((wl * zl) >> 14)) >> 14)
    # Rotation matrix entries, Q28 (halved below for CORDIC headroom).
    r01 = (xy - wz) << 1
    r11 = 268435456 - ((xx + zz) << 1)
    r20 = (xz - wy) << 1
    r21 = (yz + wx) << 1
    r22 = 268435456 - ((xx + yy) << 1)
    if r21 > 268435456:
        r21 = 268435456
    if r21 < -268435456:
        r21 = -268435456
    hyp = 0
    k = 0
    while k < 3:
        if k == 0:
            cy = 0 - r01
            cx = r11
        elif k == 1:
            cy = r21
            cx = hyp
        else:
            cy = 0 - r20
            cx = r22
        cy = cy >> 1
        cx = cx >> 1
        ang = 0
        if cx < 0:
            # atan2 in the left half-plane: +-180 deg plus the angle of the mirrored vector.
            cx = 0 - cx
            cy = 0 - cy
            if cy > 0:
                ang = -294912000  # -18000 cd x 2**14
            else:
                ang = 294912000
        i = 0
        while i < 22:
            if cy > 0:
                nx = cx + (cy >> i)
                cy = cy - (cx >> i)
                ang += t[i]
            else:
                nx = cx - (cy >> i)
                cy = cy + (cx >> i)
                ang -= t[i]
            cx = nx
            i += 1
        if k == 0:
            # cx = gain x hypot(r01, r11) / 2 = gain x cos(adduction) / 2
            ah = cx >> 14
            al = cx & 16383
            hyp = ah * 19898 + ((ah * 7605 + al * 19898 + ((al * 7605) >> 14)) >> 14)
        cd = (ang + 8192) >> 14
        if mirror != 0:
            if k > 0:
                cd = 0 - cd
        o[k] = cd
        k += 1
    return 0


@micropython.viper
def q14_into(Q14, Q) -> int:
    """Q14[0..3] = Q (Q28) in the wire's Q14 unit, rounded."""
    o = ptr16(Q14)  # noqa: F821  (viper built-in)
    q = ptr32(Q)  # noqa: F821  (viper built-in)
    o[0] = (q[0] + 8192) >> 14
    o[1] = (q[1] + 8192) >> 14
    o[2] = (q[2] + 8192) >> 14
    o[3] = (q[3] + 8192) >> 14
    return 0


@micropython.viper
def sample_frame(OUT, RAW, V, R, i: int, SEQ, ver: int, TAB, at: int) -> int:
    """A whole SAMPLE frame of ring slot i (dgsclip.ring: V the blocks of packed slots, R
    the ring state with the consumer's current I2C-error and overrun counters) with the
    sequence number SEQ (array 'H': low, high half), as protocol.Encoder.sample builds it:
    header, payload, CRC-16/CCITT-FALSE into RAW, COBS + delimiter into OUT from index
    `at`. Returns the encoded length including the 0x00 delimiter. TAB: the CRC table
    (array 'H')."""
    out = ptr8(OUT)  # noqa: F821  (viper built-in)
    r = ptr8(RAW)  # noqa: F821  (viper built-in)
    st = ptr32(R)  # noqa: F821  (viper built-in)
    tb = ptr16(TAB)  # noqa: F821  (viper built-in)
    sq = ptr16(SEQ)  # noqa: F821  (viper built-in)
    sh = st[18]
    v = ptr8(V[i >> sh])  # noqa: F821  (viper built-in)
    w = st[8]
    b = (i & ((1 << sh) - 1)) * w
    flags = v[b + 18]
    pel = flags & 32
    if w < 28:
        pel = 0
    plen = 20
    if pel != 0:
        plen = 28
    r[0] = ver & 255
    r[1] = 2
    x = sq[0]
    r[2] = x & 255
    r[3] = (x >> 8) & 255
    x = sq[1]
    r[4] = x & 255
    r[5] = (x >> 8) & 255
    r[6] = v[b]
    r[7] = v[b + 1]
    r[8] = v[b + 2]
    r[9] = v[b + 3] & 63
    r[10] = plen
    r[11] = flags
    r[12] = 0
    j = 0
    while j < 14:
        r[13 + j] = v[b + 4 + j]
        j += 1
    x = st[16]
    r[27] = x & 255
    r[28] = (x >> 8) & 255
    x = st[17]
    r[29] = x & 255
    r[30] = (x >> 8) & 255
    if pel != 0:
        j = 0
        while j < 8:
            r[31 + j] = v[b + 20 + j]
            j += 1
    m = 11 + plen
    c = 65535
    j = 0
    while j < m:
        c = ((c << 8) & 65535) ^ tb[((c >> 8) ^ r[j]) & 255]
        j += 1
    r[m] = c & 255
    r[m + 1] = (c >> 8) & 255
    m += 2
    # COBS (frames are far below 254 bytes: one code byte per zero, no 0xFF runs)
    code_pos = at
    code = 1
    o = at + 1
    j = 0
    while j < m:
        x = r[j]
        if x == 0:
            out[code_pos] = code
            code_pos = o
            o += 1
            code = 1
        else:
            out[o] = x
            o += 1
            code += 1
        j += 1
    out[code_pos] = code
    out[o] = 0
    return o + 1 - at


@micropython.viper
def frames_out(OUT, RAW, V, R, M, SEQ, ver: int, TAB, room: int) -> int:
    """The SAMPLE frames of the queued slots, oldest first, back to back into OUT while a
    frame of the largest size (48 bytes) still fits in `room`: each slot's mark applied
    (counters; the samples dropped before it advance the sequence number, so the host
    counts them as lost), framed with the next sequence number (SEQ, array 'H': low, high
    half), released. Returns the bytes written. Everything the main loop did per sample
    (dgsclip.output), in one call per pass."""
    st = ptr32(R)  # noqa: F821  (viper built-in)
    m = ptr32(M)  # noqa: F821  (viper built-in)
    sq = ptr16(SEQ)  # noqa: F821  (viper built-in)
    o = 0
    while o + 48 <= room:
        if ((st[2] - st[3]) & 16777215) == 0:
            break
        i = st[1]
        sh = st[18]
        v = ptr8(V[i >> sh])  # noqa: F821  (viper built-in)
        if v[(i & ((1 << sh) - 1)) * st[8] + 19] != 0:
            j = st[10] * 3
            st[16] = m[j]
            st[17] = m[j + 1]
            x = sq[0] + m[j + 2]
            sq[0] = x & 65535
            sq[1] = (sq[1] + (x >> 16)) & 65535
            k = st[10] + 1
            if k == st[13]:
                k = 0
            st[10] = k
            st[12] = (st[12] + 1) & 16777215
        o += int(sample_frame(OUT, RAW, V, R, i, SEQ, ver, TAB, o))
        x = sq[0] + 1
        sq[0] = x & 65535
        sq[1] = (sq[1] + (x >> 16)) & 65535
        i += 1
        if i == st[7]:
            i = 0
        st[1] = i
        st[3] = (st[3] + 1) & 16777215
    return o


@micropython.viper
def ring_push(V, R, M, CD, Q14, PQ, t: int, flags: int, errs: int, ovr: int) -> int:
    """Queue one fused sample in the ring (dgsclip.ring: V blocks of packed slots, R state,
    M marks):
    time t (µs, < 2**30), angles CD (centidegrees), thigh quaternion Q14 and, when flags
    has 0x20 and the ring has room for it, the pelvis quaternion PQ. The I2C-error and
    overrun counters and the samples dropped just before are kept per change, not per
    slot: a mark (M) when they differ from the last queued sample's. Returns 1, or 0 when
    the sample was dropped whole (ring or marks full; counted in R)."""
    st = ptr32(R)  # noqa: F821  (viper built-in)
    m = ptr32(M)  # noqa: F821  (viper built-in)
    cd = ptr32(CD)  # noqa: F821  (viper built-in)
    q = ptr16(Q14)  # noqa: F821  (viper built-in)
    pq = ptr16(PQ)  # noqa: F821  (viper built-in)
    n = (st[2] - st[3]) & 16777215
    if n >= st[7]:
        st[5] = (st[5] + 1) & 1073741823
        st[6] = st[6] + 1
        return 0
    mark = 0
    if st[6] != 0:
        mark = 1
    if errs != st[14]:
        mark = 1
    if ovr != st[15]:
        mark = 1
    if mark != 0:
        if ((st[11] - st[12]) & 16777215) >= st[13]:
            st[5] = (st[5] + 1) & 1073741823
            st[6] = st[6] + 1
            return 0
        k = st[9]
        j = k * 3
        m[j] = errs & 65535
        m[j + 1] = ovr & 65535
        x = st[6]
        if x > 65535:
            x = 65535
        m[j + 2] = x
        k += 1
        if k == st[13]:
            k = 0
        st[9] = k
        st[11] = (st[11] + 1) & 16777215
        st[14] = errs
        st[15] = ovr
        st[6] = 0
    w = st[8]
    i = st[0]
    sh = st[18]
    v = ptr8(V[i >> sh])  # noqa: F821  (viper built-in)
    b = (i & ((1 << sh) - 1)) * w
    v[b] = t & 255
    v[b + 1] = (t >> 8) & 255
    v[b + 2] = (t >> 16) & 255
    v[b + 3] = (t >> 24) & 63
    j = 0
    while j < 3:
        x = cd[j]
        v[b + 4 + 2 * j] = x & 255
        v[b + 5 + 2 * j] = (x >> 8) & 255
        j += 1
    j = 0
    while j < 4:
        x = q[j]
        v[b + 10 + 2 * j] = x & 255
        v[b + 11 + 2 * j] = (x >> 8) & 255
        j += 1
    v[b + 18] = flags & 255
    v[b + 19] = mark
    if w > 20:
        if (flags & 32) != 0:
            j = 0
            while j < 4:
                x = pq[j]
                v[b + 20 + 2 * j] = x & 255
                v[b + 21 + 2 * j] = (x >> 8) & 255
                j += 1
    i += 1
    if i == st[7]:
        i = 0
    st[0] = i
    st[2] = (st[2] + 1) & 16777215
    n += 1
    if n > st[4]:
        st[4] = n
    return 1


@micropython.viper
def fuse_push(L, K, dt: int, t: int, extra: int, errs: int, ovr: int, pel: int) -> int:
    """One whole sample of a settled pipeline (dgsclip.pipeline.update_hot followed by the
    sampler's ring push), in one call: Mahony step(s), thigh segment, hip rotation and
    angles, Q14 quaternions, then (K[3] != 0: streaming) the ring push. L: the arrays
    (dgsclip.pipeline.Pipeline.hot_arrays); K: [mode (0: pelvis frame from the reference,
    1: aligned pelvis clip), mirror, calibrated, streaming, flags of the pipeline (out)];
    pel != 0: the pelvis sample of this period was read (L[2], L[3] hold it). Returns the
    sample's flags (pipeline flags | extra), or -1 with nothing done when a filter has
    once-only work pending (its S_EVENT: the caller runs that sample on the general
    path)."""
    k = ptr32(K)  # noqa: F821  (viper built-in)
    ts = L[4]
    ps = L[6]
    s1 = ptr32(ts)  # noqa: F821  (viper built-in)
    s2 = ptr32(ps)  # noqa: F821  (viper built-in)
    if s1[22] != 0:
        return -1
    if s2[22] != 0:
        return -1
    flags = int(mahony_step(ts, L[0], L[1], L[5], dt))
    if pel != 0:
        flags = flags | (int(mahony_step(ps, L[2], L[3], L[7], dt)) & 4) | 32
    seg = L[8]
    rel = L[9]
    cd = L[16]
    q14 = L[17]
    pq14 = L[18]
    qmul(seg, ts, L[12], 0)
    if k[0] != 0:
        tmp = L[10]
        pseg = L[11]
        qmul(tmp, ps, L[13], 0)
        qmul(pseg, L[15], tmp, 0)
        qmul(rel, pseg, seg, 1)
        q14_into(pq14, pseg)
    else:
        qmul(rel, L[14], seg, 1)
    hip_cd(cd, rel, L[19], k[1])
    q14_into(q14, seg)
    if k[2] != 0:
        flags = flags | 1
    k[4] = flags
    flags = flags | extra
    if k[3] != 0:
        f = flags & 255
        if pel == 0:
            f = f & 223
        ring_push(L[20], L[21], L[22], cd, q14, pq14, t, f, errs, ovr)
    return flags


@micropython.viper
def be6_into(BUF, G, A, gs: int, as_: int, at: int) -> int:
    """An MPU-6050 FIFO packet (accel x y z, gyro x y z: big-endian int16) at BUF[at:] into
    A and G in the fixed-point units (count x full-scale range: 2**-15 g and 2**-15 deg/s)."""
    b = ptr8(BUF)  # noqa: F821  (viper built-in)
    g = ptr32(G)  # noqa: F821  (viper built-in)
    a = ptr32(A)  # noqa: F821  (viper built-in)
    j = 0
    while j < 6:
        x = (b[at + 2 * j] << 8) | b[at + 2 * j + 1]
        if x >= 32768:
            x = x - 65536
        if j < 3:
            a[j] = x * as_
        else:
            g[j - 3] = x * gs
        j += 1
    return 0
