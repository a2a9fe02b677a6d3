"""Fixed-point kernels of the per-sample hot path: Mahony step, quaternion products, hip
angles. Integers only, so that a sample allocates nothing on any port (a float result is a
heap box on MicroPython builds without float-in-pointer representation, e.g. the RP2040's).

Each function here is the pure-Python *twin* of a `@micropython.viper` function in
`dgsclip.fxnative`, generated from this file (`python -m tests.firmware.test_fxnative`
rewrites it; a test fails when the two drift apart). The viper versions are used only where
a native emitter exists and they reproduce these functions' answers on a set of inputs at
import (`load()`); everywhere else (CPython, the WebAssembly port) these run. Rules for this
file, so that the two compute bit-identical results: ints only, no value or intermediate
outside +-2**30 (a MicroPython small int on 32-bit ports: no heap; viper's int is 32 bits),
`>>` on signed values (arithmetic on both), no chained comparisons, no `and`/`or`, no calls.

Units (see docs/firmware.md "Fixed-point hot path"):
  gyro        2**-15 deg/s   (= raw counts x gyro_range_dps: exact for every range)
  accel       2**-15 g       (= raw counts x accel_range_g)
  bias        2**-19 deg/s   (finer, for the slow low-pass)
  quaternion  Q28 (1.0 = 2**28)
  dt          microseconds
  angles      centidegrees (the wire unit), CORDIC table in centidegrees x 2**14
"""

ONE = 268435456  # 1 << 28
G1 = 32768  # 1 g in accel units

# Mahony state (array('i')).
S_Q = 0  # 4: quaternion body -> reference, Q28
S_BIAS = 4  # 3: gyro bias, 2**-19 deg/s
S_ABIAS = 7  # 3: accel bias, 2**-15 g
S_GSUM = 10  # 3: raw gyro summed over the current still run
S_ASUM = 13  # 3: accel summed over the current still run
S_N = 16  # samples in the current still run
S_STILL = 17  # µs still in the current run
S_LEARNT = 18  # µs of confirmed rest the bias has been learnt from (capped)
S_T = 19  # µs since start (capped at init)
S_FLAGS = 20
S_REJECT = 21  # accel rejections (count)
S_EVENT = 22  # set by the step in which the first bias learning ended; the caller clears it
S_BSUM = 23  # 3: raw gyro summed while the bias is first learnt (plain mean)
S_BN = 26  # samples in that sum
S_SIZE = 27

# Mahony settings (array('i')), made by dgsclip.fusion from the float settings.
C_THR = 0  # still: |rate - bias| below (gyro units)
C_ATH = 1  # still: | |a| - 1 g | below (accel units)
C_BAND = 2  # still: raw rate within this of the run's mean (gyro units)
C_ABAND = 3  # still: accel within this of the run's mean (accel units)
C_STILL_US = 4
C_TRACK_US = 5
C_LEARN_US = 6
C_TAU_US = 7
C_INIT_US = 8
C_KP = 9  # kp x 0.5 x 2**28 / 1e6 x 4 (x dt_us >> 2 = Q28 half-step gain)
C_KP_INIT = 10
C_REJECT = 11  # accel rejection band (accel units)
C_SIZE = 12

FLAG_STATIONARY = 0x0002
FLAG_ACCEL_REJECTED = 0x0004
FLAG_INITIALISING = 0x0100

# Half-step gyro gain: 0.5 x DEG2RAD x 2**-15 x 1e-6 x 2**28 x 2**28 per µs, see fxmul.
KG_PER_US = 19190
DT_MAX_US = 50000  # a longer gap (bus fault) integrates at most this
INV_K = 326016437  # 2**29 / CORDIC gain (22 steps) 1.6467602581210032; hip_cd: 19898, 7605
CORDIC_N = 22


def cordic_table():
    """atan(2**-i) in centidegrees x 2**14, i = 0..CORDIC_N-1 (built once, float is fine)."""
    import math
    from array import array

    return array(
        "i",
        [int(round(math.degrees(math.atan(2.0**-i)) * 100.0 * 16384.0)) for i in range(CORDIC_N)],
    )


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


def qmul(R, P, Q, conj):
    """R = P * Q (Q28), or conj(P) * Q when conj != 0. R must not alias P or Q."""
    o = R  # viper: ptr32
    p = P  # viper: ptr32
    q = Q  # viper: ptr32
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


def hip_cd(R, Q, T, mirror):
    """R[0..2] = flexion, adduction, internal rotation in centidegrees (rounded) of the hip
    rotation Q (Q28), intrinsic Z-X'-Y'' Cardan angles as dgsclip.hip.angles_into.
    T: cordic_table()."""
    o = R  # viper: ptr32
    q = Q  # viper: ptr32
    t = T  # viper: ptr32
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


def sample_frame(OUT, RAW, T, V, U, PQ, i, seq, ver, TAB):
    """A whole SAMPLE frame of ring slot i (dgsclip.ring), as protocol.Encoder.sample
    builds it: header, payload, CRC-16/CCITT-FALSE into RAW, COBS + delimiter into OUT.
    PQ: the ring's pelvis quaternions, or None-like V when the slot has none (then pass
    V; `i` selects the slot; the flag 0x20 in U says which). Returns the encoded length
    including the 0x00 delimiter. TAB: the CRC table (array 'H')."""
    out = OUT  # viper: ptr8
    r = RAW  # viper: ptr8
    t = T  # viper: ptr32
    v = V  # viper: ptr16
    u = U  # viper: ptr16
    pq = PQ  # viper: ptr16
    tb = TAB  # viper: ptr16
    k = i * 3
    flags = u[k]
    pel = flags & 32
    plen = 20
    if pel != 0:
        plen = 28
    r[0] = ver & 255
    r[1] = 2
    r[2] = seq & 255
    r[3] = (seq >> 8) & 255
    r[4] = (seq >> 16) & 255
    r[5] = (seq >> 24) & 255
    x = t[i] & 1073741823
    r[6] = x & 255
    r[7] = (x >> 8) & 255
    r[8] = (x >> 16) & 255
    r[9] = (x >> 24) & 255
    r[10] = plen
    r[11] = flags & 255
    r[12] = (flags >> 8) & 255
    b = i * 7
    j = 0
    while j < 7:
        x = v[b + j]
        r[13 + 2 * j] = x & 255
        r[14 + 2 * j] = (x >> 8) & 255
        j += 1
    x = u[k + 1]
    r[27] = x & 255
    r[28] = (x >> 8) & 255
    x = u[k + 2]
    r[29] = x & 255
    r[30] = (x >> 8) & 255
    if pel != 0:
        b = i * 4
        j = 0
        while j < 4:
            x = pq[b + j]
            r[31 + 2 * j] = x & 255
            r[32 + 2 * j] = (x >> 8) & 255
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
    code_pos = 0
    code = 1
    o = 1
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
    return o + 1


def ring_put(T, V, U, SK, CD, Q14, i, t, flags, errs, ovr, skip):
    """Copy one fused sample into ring slot i (dgsclip.ring): its time into T, angles
    (centidegrees) and the Q14 quaternion into V (7 int16 per slot), flags / I2C errors /
    overruns (u16) into U (3 per slot), the samples dropped before it into SK (u16,
    saturating)."""
    tt = T  # viper: ptr32
    v = V  # viper: ptr16
    u = U  # viper: ptr16
    sk = SK  # viper: ptr16
    cd = CD  # viper: ptr32
    q = Q14  # viper: ptr16
    tt[i] = t
    b = i * 7
    v[b] = cd[0]
    v[b + 1] = cd[1]
    v[b + 2] = cd[2]
    v[b + 3] = q[0]
    v[b + 4] = q[1]
    v[b + 5] = q[2]
    v[b + 6] = q[3]
    b = i * 3
    u[b] = flags & 65535
    u[b + 1] = errs & 65535
    u[b + 2] = ovr & 65535
    if skip > 65535:
        skip = 65535
    sk[i] = skip
    return 0


def q14_into(Q14, Q):
    """Q14[0..3] = Q (Q28) in the wire's Q14 unit, rounded."""
    o = Q14  # viper: ptr16
    q = Q  # viper: ptr32
    o[0] = (q[0] + 8192) >> 14
    o[1] = (q[1] + 8192) >> 14
    o[2] = (q[2] + 8192) >> 14
    o[3] = (q[3] + 8192) >> 14
    return 0


def be6_into(BUF, G, A, gs, as_):
    """An MPU-6050 FIFO packet (accel x y z, gyro x y z: big-endian int16) into A and G in
    the fixed-point units (count x full-scale range: 2**-15 g and 2**-15 deg/s)."""
    b = BUF  # viper: ptr8
    g = G  # viper: ptr32
    a = A  # viper: ptr32
    j = 0
    while j < 6:
        x = (b[2 * j] << 8) | b[2 * j + 1]
        if x >= 32768:
            x = x - 65536
        if j < 3:
            a[j] = x * as_
        else:
            g[j - 3] = x * gs
        j += 1
    return 0


_loaded = None


def load():
    """The kernels to use: the viper versions if this port compiles them and they agree
    with these on a set of inputs, else these. Returns (mahony_step, qmul, hip_cd, native,
    sample_frame, ring_put, be6_into, q14_into); decided once per boot."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded


def _load():
    try:
        from dgsclip import fxnative as nat
    except Exception:  # no native emitter (CPython, the WebAssembly port): SyntaxError etc.
        return mahony_step, qmul, hip_cd, False, None, ring_put, be6_into, q14_into
    try:
        if _agree(nat):
            return (
                nat.mahony_step, nat.qmul, nat.hip_cd, True, nat.sample_frame, nat.ring_put,
                nat.be6_into, nat.q14_into,
            )  # fmt: skip
    except Exception:  # noqa: S110  (a native build that cannot run them: fall back)
        pass
    return mahony_step, qmul, hip_cd, False, None, ring_put, be6_into, q14_into


def _agree(nat):
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
    tt = array("i", (1000, 1073741000))
    vv = array("h", (100, -200, 300, 16384, -5, 0, 7, -18000, 18000, 0, 11585, 0, -11585, 0))
    uu = array("H", (3, 0, 1, 0x23, 65535, 2))
    pp = array("h", (0, 0, 0, 0, 16000, -3000, 256, -1))
    for i in range(2):
        for seq in (0, 1 << 24, 123456):
            b1 = bytearray(64)
            b2 = bytearray(64)
            n1 = sample_frame(b1, bytearray(64), tt, vv, uu, pp, i, seq, 0x11, crc)
            n2 = nat.sample_frame(b2, bytearray(64), tt, vv, uu, pp, i, seq, 0x11, crc)
            if n1 != n2 or b1 != b2:
                return False
    for args in ((0, 5, 0x1234, 7, 65535, 0), (1, 1073741000, 0x20, 70000, -1, 70000)):
        r1 = (array("i", (0, 0)), array("h", [0] * 14), array("H", [0] * 6), array("H", (0, 0)))
        r2 = (array("i", (0, 0)), array("h", [0] * 14), array("H", [0] * 6), array("H", (0, 0)))
        cd = array("i", (-18000, 123, 17999))
        q4 = array("h", (16384, -16384, 5, -5))
        ring_put(r1[0], r1[1], r1[2], r1[3], cd, q4, *args)
        nat.ring_put(r2[0], r2[1], r2[2], r2[3], cd, q4, *args)
        for k in range(4):
            if list(r1[k]) != list(r2[k]):
                return False
    pk = bytes((0x80, 0x00, 0x7F, 0xFF, 0x00, 0x01, 0xFF, 0xFF, 0x12, 0x34, 0xED, 0xCB))
    g1 = array("i", (0, 0, 0))
    a1 = array("i", (0, 0, 0))
    g2 = array("i", (0, 0, 0))
    a2 = array("i", (0, 0, 0))
    be6_into(pk, g1, a1, 2000, 16)
    nat.be6_into(pk, g2, a2, 2000, 16)
    if list(g1) != list(g2) or list(a1) != list(a2):
        return False
    c = array(
        "i", (98304, 983, 16384, 655, 100000, 300000, 400000, 2000000, 1000000, 268, 5369, 3276)
    )
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
