"""Fixed-point kernels at the I/O ends of the hot path: the MPU FIFO packet decode, the whole
per-sample fuse-and-queue step (Mahony, hip angles, ring push), the ring push and the SAMPLE
frame of a ring slot (twins of the viper kernels in dgsclip.fxnative). Units and rules:
dgsclip.fxcore; the ring layout: dgsclip.ring.
"""

from dgsclip.fxgeom import hip_cd, q14_into, qmul
from dgsclip.fxmahony import mahony_step


def sample_frame(OUT, RAW, V, R, i, SEQ, ver, TAB, at):
    """A whole SAMPLE frame of ring slot i (dgsclip.ring: V the blocks of packed slots, R
    the ring state with the consumer's current I2C-error and overrun counters) with the
    sequence number SEQ (array 'H': low, high half), as protocol.Encoder.sample builds it:
    header, payload, CRC-16/CCITT-FALSE into RAW, COBS + delimiter into OUT from index
    `at`. Returns the encoded length including the 0x00 delimiter. TAB: the CRC table
    (array 'H')."""
    out = OUT  # viper: ptr8
    r = RAW  # viper: ptr8
    st = R  # viper: ptr32
    tb = TAB  # viper: ptr16
    sq = SEQ  # viper: ptr16
    sh = st[18]
    v = V[i >> sh]  # viper: ptr8
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


def frames_out(OUT, RAW, V, R, M, SEQ, ver, TAB, room):
    """The SAMPLE frames of the queued slots, oldest first, back to back into OUT while a
    frame of the largest size (48 bytes) still fits in `room`: each slot's mark applied
    (counters; the samples dropped before it advance the sequence number, so the host
    counts them as lost), framed with the next sequence number (SEQ, array 'H': low, high
    half), released. Returns the bytes written. Everything the main loop did per sample
    (dgsclip.output), in one call per pass."""
    st = R  # viper: ptr32
    m = M  # viper: ptr32
    sq = SEQ  # viper: ptr16
    o = 0
    while o + 48 <= room:
        if ((st[2] - st[3]) & 16777215) == 0:
            break
        i = st[1]
        sh = st[18]
        v = V[i >> sh]  # viper: ptr8
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


def ring_push(V, R, M, CD, Q14, PQ, t, flags, errs, ovr):
    """Queue one fused sample in the ring (dgsclip.ring: V blocks of packed slots, R state,
    M marks):
    time t (µs, < 2**30), angles CD (centidegrees), thigh quaternion Q14 and, when flags
    has 0x20 and the ring has room for it, the pelvis quaternion PQ. The I2C-error and
    overrun counters and the samples dropped just before are kept per change, not per
    slot: a mark (M) when they differ from the last queued sample's. Returns 1, or 0 when
    the sample was dropped whole (ring or marks full; counted in R)."""
    st = R  # viper: ptr32
    m = M  # viper: ptr32
    cd = CD  # viper: ptr32
    q = Q14  # viper: ptr16
    pq = PQ  # viper: ptr16
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
    v = V[i >> sh]  # viper: ptr8
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


def fuse_push(L, K, dt, t, extra, errs, ovr, pel):
    """One whole sample of a settled pipeline (dgsclip.pipeline.update_hot followed by the
    sampler's ring push), in one call: Mahony step(s), thigh segment, hip rotation and
    angles, Q14 quaternions, then (K[3] != 0: streaming) the ring push. L: the arrays
    (dgsclip.pipeline.Pipeline.hot_arrays); K: [mode (0: pelvis frame from the reference,
    1: aligned pelvis clip), mirror, calibrated, streaming, flags of the pipeline (out)];
    pel != 0: the pelvis sample of this period was read (L[2], L[3] hold it). Returns the
    sample's flags (pipeline flags | extra), or -1 with nothing done when a filter has
    once-only work pending (its S_EVENT: the caller runs that sample on the general
    path)."""
    k = K  # viper: ptr32
    ts = L[4]
    ps = L[6]
    s1 = ts  # viper: ptr32
    s2 = ps  # viper: ptr32
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


def be6_into(BUF, G, A, gs, as_, at):
    """An MPU-6050 FIFO packet (accel x y z, gyro x y z: big-endian int16) at BUF[at:] into
    A and G in the fixed-point units (count x full-scale range: 2**-15 g and 2**-15 deg/s)."""
    b = BUF  # viper: ptr8
    g = G  # viper: ptr32
    a = A  # viper: ptr32
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
