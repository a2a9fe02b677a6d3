"""Fixed-point Mahony step (twin of the viper kernel in dgsclip.fxnative).

State and settings layouts (S_*, C_*), units and the rules every kernel follows: dgsclip.fxcore.
"""


def mahony_step(S, G, A, C, dt):
    """One Mahony step on state S with gyro G and accel A (3 ints each), dt in µs.
    Returns the flags. Rare work (init from gravity, the accel bias once the bias is learnt)
    is left to the caller (dgsclip.fusion.Mahony) via S[S_EVENT] and S[S_T]."""
    s = S  # viper: ptr32
    g = G  # viper: ptr32
    a = A  # viper: ptr32
    c = C  # viper: ptr32
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
