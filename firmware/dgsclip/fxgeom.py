"""Fixed-point quaternion products, hip angles (CORDIC) and the Q14 wire rounding (twins of
the viper kernels in dgsclip.fxnative). Units and rules: dgsclip.fxcore.
"""


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


def q14_into(Q14, Q):
    """Q14[0..3] = Q (Q28) in the wire's Q14 unit, rounded."""
    o = Q14  # viper: ptr16
    q = Q  # viper: ptr32
    o[0] = (q[0] + 8192) >> 14
    o[1] = (q[1] + 8192) >> 14
    o[2] = (q[2] + 8192) >> 14
    o[3] = (q[3] + 8192) >> 14
    return 0
