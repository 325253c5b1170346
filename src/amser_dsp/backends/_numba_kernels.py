"""Numba kernels of the Numba back end (imported only by :mod:`.numba_backend`).

Layout: a block of ``LANES`` (64) frames is processed at once, stored
*lane-major*: every buffer is ``(points, LANES)`` with the frame index
innermost, so each butterfly, each power bin and each Mel product is a loop
over 64 contiguous values that LLVM turns into SIMD instructions (four AVX-512
registers in float32).  64 rather than 16 lanes: the per-butterfly index and
twiddle work is then shared by four vectors (measured: the FFT per frame got
four times faster; the buffers, about 400 KB, stay in L2).

Framing is a transpose.  With ``S[r, c] = x[origin + r * hop + c]`` (the
signal cut into hop-sized rows, no copy), frame ``b`` sample ``k`` is
``S[b + k // hop, k % hop]``, so after one transpose ``T = S.T`` every frame
sample row ``k`` is the contiguous slice ``T[k % hop, k // hop : k // hop + LANES]``.
Each sample is transposed once (not once per overlapping frame), by 16 x 16 (float64: 8 x 8)
register tiles (:func:`_transpose_tile`, LLVM vector shuffles): 0.06 ns per
sample against 0.5-1 ns for gathers or scalar copies.

The real FFT of ``N = 2 M`` points is a complex FFT of ``M`` points on
``z[m] = x[2m] + i x[2m+1]`` followed by the usual split step.  The complex FFT
is a Stockham autosort FFT (no bit reversal) with radix-8, -4, -2, -3 and -5
butterflies and per-stage twiddle tables computed once per size in float64.
Sizes whose half has another prime factor (or odd sizes) are not handled here:
the back end sends them to scipy.fft (see :mod:`.numba_backend`).

Every kernel is compiled with ``cache=True`` (the machine code is stored next
to this file and reused by later processes) and ``nogil=True`` (threads run
blocks in parallel).  ``fastmath`` is limited to ``contract`` (fused
multiply-add), which only makes rounding smaller; re-association would change
the summation order of the Mel products and the DC mean for no measurable gain.
"""

from __future__ import annotations

from . import variants

variants.configure_numba()  # before Numba creates its CPU target: 512-bit vectors on Intel AVX-512

import numba  # noqa: E402
import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba.core import types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

__all__ = ["LANES", "MEL_BLOCK", "frames_power", "log_post", "mel_energies_kernel"]

#: Frames processed together (a multiple of every SIMD width: 16 float32 per
#: AVX-512 register, 4 per NEON register, so the loops vectorise on ARM too).
LANES = 64

_FM = {"contract"}
_JIT = {"cache": True, "nogil": True, "fastmath": _FM, "error_model": "numpy", "boundscheck": False}


def _noalias(dispatcher):
    """Compile ``dispatcher`` with its array arguments marked ``noalias``.

    Without it LLVM must assume the input and output buffers overlap and
    leaves the lane loops scalar, or guards them with runtime checks that
    cost as much as the work (measured: 2-4x slower).  Every kernel here is
    called with distinct buffers, so the promise holds.  Numba has no public
    option for this (its parallel back end sets the same flag internally);
    if the private hook moves, the kernels stay correct, only slower.
    """
    compiler = getattr(dispatcher, "_compiler", None)
    if compiler is not None and hasattr(compiler, "_customize_flags"):

        def customize(flags):
            flags.noalias = True
            return flags

        compiler._customize_flags = customize
    return dispatcher


def _kernel(**extra):
    """``numba.njit`` with this module's options plus ``noalias`` arguments."""
    return lambda fn: _noalias(numba.njit(**_JIT, **extra)(fn))


@_kernel(inline="always")
def _row_stride(itemsize, lanes):
    """Row length of the lane-major buffers: ``LANES`` plus 16 bytes.

    With rows of exactly 64 lanes (256 bytes in float32) the inputs of a
    butterfly, ``q`` rows apart with ``q`` a power of two for power-of-two
    sizes, all fall in the same L1 cache sets and evict each other on 8-way
    caches (Zen 4, many Intel and ARM cores): measured on Zen 4, the 512-point
    FFT took 2.7 times as long with 256-byte rows as with 272-byte ones.
    16 bytes keep every row aligned for 128-bit loads.
    """
    return lanes + 16 // itemsize


# Pad-mode codes shared with numba_backend.
PAD_REFLECT, PAD_CONSTANT, PAD_EDGE = 0, 1, 2


# ----------------------------------------------------------------- samples
@intrinsic
def _transpose_tile(typingctx, src, src_off, src_stride, dst, dst_off, dst_stride):
    """Transpose one ``V x V`` tile, ``V = 64 // itemsize`` (one 64-byte vector per row).

    ``dst[dst_off + j * dst_stride + i] = src[src_off + i * src_stride + j]``
    for ``i, j < V``, on flat arrays.  Rows are loaded as vectors and
    transposed by ``log2(V)`` rounds of perfect shuffles (interleave row ``i``
    with row ``i + V/2``), which LLVM lowers to two-source permutes.  The
    caller guarantees the bounds.
    """
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.dtype == dst.dtype):
        return None
    sig = types.void(src, src_off, src_stride, dst, dst_off, dst_stride)

    def codegen(context, builder, signature, args):
        s_arr = context.make_array(signature.args[0])(context, builder, args[0])
        d_arr = context.make_array(signature.args[3])(context, builder, args[3])
        nbytes = signature.args[0].dtype.bitwidth // 8
        v = 64 // nbytes
        vec = ir.VectorType(context.get_data_type(signature.args[0].dtype), v)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        soff, sstr, doff, dstr = (context.cast(builder, args[i], signature.args[i], types.int64) for i in (1, 2, 4, 5))
        rows = []
        for i in range(v):
            ptr = builder.gep(s_arr.data, [builder.add(soff, builder.mul(sstr, ir.Constant(i64, i)))])
            rows.append(builder.load(builder.bitcast(ptr, vec.as_pointer()), align=nbytes))
        h = v // 2
        lo = ir.Constant(ir.VectorType(i32, v), [e for j in range(h) for e in (j, j + v)])
        hi = ir.Constant(ir.VectorType(i32, v), [e for j in range(h, v) for e in (j, j + v)])
        for _ in range(v.bit_length() - 1):
            shuffled = []
            for i in range(h):
                shuffled.append(builder.shuffle_vector(rows[i], rows[i + h], lo))
                shuffled.append(builder.shuffle_vector(rows[i], rows[i + h], hi))
            rows = shuffled
        for j in range(v):
            ptr = builder.gep(d_arr.data, [builder.add(doff, builder.mul(dstr, ir.Constant(i64, j)))])
            builder.store(rows[j], builder.bitcast(ptr, vec.as_pointer()), align=nbytes)
        return context.get_dummy_value()

    return sig, codegen


@_kernel(inline="always")
def _signal(x, nr, i):
    """Sample ``i`` of ``x[:nr]`` followed by trailing silence (zeros, never copied)."""
    if i < nr:
        return x[i]
    return x[0] * 0


@_kernel(inline="always")
def _padded_sample(x, n, nr, j, pad, mode, c_sig):
    """Signal-pre-emphasised, padded signal at padded index ``j`` (0 outside the padded signal).

    The signal is ``x[:nr]`` followed by ``n - nr`` zeros (the config's trailing silence).
    """
    if j < 0 or j >= n + 2 * pad:
        return x[0] * 0
    i = j - pad
    if i < 0 or i >= n:
        if mode == PAD_CONSTANT:
            return x[0] * 0
        if mode == PAD_EDGE:
            i = 0 if i < 0 else n - 1
        elif i < 0:  # reflect (n > pad is checked before the call)
            i = -i
        else:
            i = 2 * (n - 1) - i
    if i == 0 or c_sig == 0:
        return _signal(x, nr, i)
    return _signal(x, nr, i) - c_sig * _signal(x, nr, i - 1)


@_kernel()
def _transpose_rows(src, origin, used, hop, tflat, rp):
    """``tb[c, r] = src[origin + r * hop + c]`` for ``r < used``, ``c < hop``, ``tb = tflat.reshape(hop, rp)``."""
    v = 64 // src.itemsize
    cols = hop - hop % v
    for r0 in range(0, used, v):
        for c0 in range(0, cols, v):
            _transpose_tile(src, origin + r0 * hop + c0, hop, tflat, c0 * rp + r0, rp)
    for c in range(cols, hop):
        row = tflat[c * rp : c * rp + used]
        for r in range(used):
            row[r] = src[origin + r * hop + c]


@_kernel()
def _fill_transposed(x, n, nr, first, count, hop, flen, pad, mode, c_sig, tflat, rp, seg):
    """Fill ``tb[c, r] = s[origin + r * hop + c]``, ``tb = tflat.reshape(hop, rp)``, for the block at frame ``first``.

    ``s`` is the signal (``x[:nr]``, then ``n - nr`` zeros of trailing
    silence), padded.  ``origin`` is one hop before the first frame, so row 0
    holds the sample before each frame (signal pre-emphasis needs it).  Only
    the columns the block's ``count`` frames read are filled (a short last
    block, or a short signal, does not pay for 64 frames); the lanes past
    ``count`` compute on stale but finite values and are never written out.
    Returns the pre-emphasis coefficient still to apply: ``c_sig`` when raw
    samples were transposed (the block lies inside ``x``), 0 when the edge path
    already applied it (padding comes after pre-emphasis).
    """
    origin = first * hop - pad - hop
    v = 64 // x.itemsize
    used = min(rp, -(-(count + 1 + (flen - 1) // hop) // v) * v)
    span = used * hop
    if origin >= 0 and origin + span <= nr:
        _transpose_rows(x, origin, used, hop, tflat, rp)
        return c_sig
    # Edge block (or a short signal): the padded, pre-emphasised samples go to
    # ``seg`` first, a vector copy where they lie inside ``x`` and sample by
    # sample only in the padding and the silence, then the same tiled transpose.
    lo = min(max(1 - origin, 0), span)
    hi = max(min(nr - origin, span), lo)
    for i in range(lo):
        seg[i] = _padded_sample(x, n, nr, origin + i + pad, pad, mode, c_sig)
    if hi > lo:
        src = x[origin + lo : origin + hi]
        prev = x[origin + lo - 1 : origin + hi - 1]
        dst = seg[lo:hi]
        for i in range(hi - lo):
            dst[i] = src[i] - c_sig * prev[i]
    # Past the samples: the silence (zeros after its first, pre-emphasised,
    # sample), the right padding, then nothing (zeros).  Only the padding goes
    # through the general path; a short clip's last blocks are mostly zeros.
    i = hi
    while i < span and origin + i < n + pad:
        s = origin + i
        if nr < s < n:
            seg[i] = 0
        else:
            seg[i] = _padded_sample(x, n, nr, s + pad, pad, mode, c_sig)
        i += 1
    rest = seg[i:span]
    for k in range(span - i):
        rest[k] = 0
    _transpose_rows(seg, 0, used, hop, tflat, rp)
    return c_sig * 0


@_kernel()
def _fill_gathered(x, n, nr, first, count, hop, flen, pad, mode, c_sig, tb, lanes):
    """Frames wider apart than they are long: ``tb[k + 1, b]`` = sample ``k`` of lane ``b``, pre-emphasised."""
    for b in range(lanes):
        tb[0, b] = 0
    for b in range(lanes):
        start = (first + min(b, count - 1)) * hop
        for k in range(flen):
            tb[k + 1, b] = _padded_sample(x, n, nr, start + k, pad, mode, c_sig)


@_kernel()
def _pack(tb, period, lead, flen, c_sig, remove_dc, c_frame, win, half, zr, zi, u_prev, dc, lanes):
    """Pre-emphasis, DC removal, window and even/odd packing, one 64-lane row at a time.

    Sample ``k`` of lane ``b`` is ``tb[q % period, q // period + b]`` with
    ``q = k + lead``.  With ``u = s[k] - c_sig s[k-1]`` and its frame mean
    ``mu`` (if ``remove_dc``), the windowed value is
    ``(u[k] - c_frame u[k-1] - (1 - c_frame) mu) * w[k]``, where ``u[-1] = u[0]``
    (Kaldi's per-frame pre-emphasis); it goes to ``zr[k // 2]`` for even ``k``,
    ``zi[k // 2]`` for odd.  That is the reference's order of operations
    rewritten with linearity, so one pass over the frame does it all.

    Rows are sliced before the lane loops (``row[b]`` with ``b`` from
    ``range``): an index Numba cannot prove non-negative gets a wrap-around
    branch per element, which stops vectorisation (measured 8x slower).
    """
    f = zr.dtype.type
    for b in range(lanes):
        dc[b] = 0.0
    if remove_dc:
        r, c = (lead - 1) % period, (lead - 1) // period
        for _ in range(flen):
            prev = tb[r, c:]
            r += 1
            if r == period:
                r = 0
                c += 1
            src = tb[r, c:]
            for b in range(lanes):
                dc[b] += src[b] - c_sig * prev[b]
        scale = (1.0 - c_frame) / flen
        for b in range(lanes):
            dc[b] *= scale
    r, c = (lead - 1) % period, (lead - 1) // period
    prev = tb[r, c:]
    src = tb[lead % period, lead // period :]
    for b in range(lanes):
        u_prev[b] = src[b] - c_sig * prev[b]
    for k in range(flen):
        prev = tb[r, c:]
        r += 1
        if r == period:
            r = 0
            c += 1
        src = tb[r, c:]
        w = win[k]
        dst = zr[k // 2] if k % 2 == 0 else zi[k // 2]
        for b in range(lanes):
            u = src[b] - c_sig * prev[b]
            dst[b] = (u - c_frame * u_prev[b] - f(dc[b])) * w
            u_prev[b] = u
    if flen % 2 == 1:
        dst = zi[flen // 2]
        for b in range(lanes):
            dst[b] = 0
    for m in range((flen + 1) // 2, half):
        dr = zr[m]
        di = zi[m]
        for b in range(lanes):
            dr[b] = 0
            di[b] = 0


# --------------------------------------------------------------------- FFT
# Stockham stage of radix p after ``ns`` points are done: for j = g * ns + k,
# inputs x[j + r * m / p] times w^(k r), w = exp(-2 pi i / (ns p)); outputs
# y[g * ns * p + k + r * ns].  Nested (g, k) loops instead of j // ns, j % ns:
# integer division per butterfly cost more than the butterfly.
@_kernel(inline="always")
def _cmul(ur, ui, wr, wi):
    return ur * wr - ui * wi, ur * wi + ui * wr


@_kernel()
def _stage2(xr, xi, yr, yi, m, ns, twr, twi, off, lanes):
    q = m // 2
    for g in range(q // ns):
        for k in range(ns):
            j = g * ns + k
            d = g * ns * 2 + k
            w1r, w1i = twr[off + k], twi[off + k]
            x0r, x0i, x1r, x1i = xr[j], xi[j], xr[j + q], xi[j + q]
            y0r, y0i, y1r, y1i = yr[d], yi[d], yr[d + ns], yi[d + ns]
            for b in range(lanes):
                a1r, a1i = _cmul(x1r[b], x1i[b], w1r, w1i)
                a0r, a0i = x0r[b], x0i[b]
                y0r[b] = a0r + a1r
                y0i[b] = a0i + a1i
                y1r[b] = a0r - a1r
                y1i[b] = a0i - a1i


@_kernel()
def _stage3(xr, xi, yr, yi, m, ns, twr, twi, off, lanes):
    q = m // 3
    c = xr.dtype.type(0.8660254037844386)  # sin(2 pi / 3)
    h = xr.dtype.type(0.5)
    for g in range(q // ns):
        for k in range(ns):
            j = g * ns + k
            d = g * ns * 3 + k
            t = off + 2 * k
            w1r, w1i, w2r, w2i = twr[t], twi[t], twr[t + 1], twi[t + 1]
            x0r, x0i, x1r, x1i, x2r, x2i = xr[j], xi[j], xr[j + q], xi[j + q], xr[j + 2 * q], xi[j + 2 * q]
            y0r, y0i, y1r, y1i = yr[d], yi[d], yr[d + ns], yi[d + ns]
            y2r, y2i = yr[d + 2 * ns], yi[d + 2 * ns]
            for b in range(lanes):
                a0r, a0i = x0r[b], x0i[b]
                a1r, a1i = _cmul(x1r[b], x1i[b], w1r, w1i)
                a2r, a2i = _cmul(x2r[b], x2i[b], w2r, w2i)
                sr = a1r + a2r
                si = a1i + a2i
                dr = a1r - a2r
                di = a1i - a2i
                mr = a0r - h * sr
                mi = a0i - h * si
                y0r[b] = a0r + sr
                y0i[b] = a0i + si
                y1r[b] = mr + c * di
                y1i[b] = mi - c * dr
                y2r[b] = mr - c * di
                y2i[b] = mi + c * dr


@_kernel(inline="always")
def _bfly4(a0r, a0i, a1r, a1i, a2r, a2i, a3r, a3i):
    t0r = a0r + a2r
    t0i = a0i + a2i
    t1r = a0r - a2r
    t1i = a0i - a2i
    t2r = a1r + a3r
    t2i = a1i + a3i
    t3r = a1i - a3i  # (a1 - a3) * (-i)
    t3i = a3r - a1r
    return t0r + t2r, t0i + t2i, t1r + t3r, t1i + t3i, t0r - t2r, t0i - t2i, t1r - t3r, t1i - t3i


@_kernel()
def _stage4_first(xr, xi, yr, yi, m, lanes):
    # First stage (ns == 1): every twiddle is 1, skip the complex products.
    q = m // 4
    for j in range(q):
        x0r, x0i, x1r, x1i = xr[j], xi[j], xr[j + q], xi[j + q]
        x2r, x2i, x3r, x3i = xr[j + 2 * q], xi[j + 2 * q], xr[j + 3 * q], xi[j + 3 * q]
        y0r, y0i, y1r, y1i = yr[4 * j], yi[4 * j], yr[4 * j + 1], yi[4 * j + 1]
        y2r, y2i, y3r, y3i = yr[4 * j + 2], yi[4 * j + 2], yr[4 * j + 3], yi[4 * j + 3]
        for b in range(lanes):
            y0r[b], y0i[b], y1r[b], y1i[b], y2r[b], y2i[b], y3r[b], y3i[b] = _bfly4(
                x0r[b], x0i[b], x1r[b], x1i[b], x2r[b], x2i[b], x3r[b], x3i[b]
            )


@_kernel()
def _stage4(xr, xi, yr, yi, m, ns, twr, twi, off, lanes):
    if ns == 1:
        _stage4_first(xr, xi, yr, yi, m, lanes)
        return
    q = m // 4
    for g in range(q // ns):
        for k in range(ns):
            j = g * ns + k
            d = g * ns * 4 + k
            t = off + 3 * k
            w1r, w1i, w2r, w2i, w3r, w3i = twr[t], twi[t], twr[t + 1], twi[t + 1], twr[t + 2], twi[t + 2]
            x0r, x0i, x1r, x1i = xr[j], xi[j], xr[j + q], xi[j + q]
            x2r, x2i, x3r, x3i = xr[j + 2 * q], xi[j + 2 * q], xr[j + 3 * q], xi[j + 3 * q]
            y0r, y0i, y1r, y1i = yr[d], yi[d], yr[d + ns], yi[d + ns]
            y2r, y2i, y3r, y3i = yr[d + 2 * ns], yi[d + 2 * ns], yr[d + 3 * ns], yi[d + 3 * ns]
            for b in range(lanes):
                a0r, a0i = x0r[b], x0i[b]
                a1r, a1i = _cmul(x1r[b], x1i[b], w1r, w1i)
                a2r, a2i = _cmul(x2r[b], x2i[b], w2r, w2i)
                a3r, a3i = _cmul(x3r[b], x3i[b], w3r, w3i)
                y0r[b], y0i[b], y1r[b], y1i[b], y2r[b], y2i[b], y3r[b], y3i[b] = _bfly4(
                    a0r, a0i, a1r, a1i, a2r, a2i, a3r, a3i
                )


@_kernel()
def _stage5(xr, xi, yr, yi, m, ns, twr, twi, off, lanes):
    q = m // 5
    f = xr.dtype.type
    c1 = f(0.30901699437494745)  # cos(2 pi / 5)
    c2 = f(-0.8090169943749475)  # cos(4 pi / 5)
    s1 = f(0.9510565162951535)  # sin(2 pi / 5)
    s2 = f(0.5877852522924731)  # sin(4 pi / 5)
    for g in range(q // ns):
        for k in range(ns):
            j = g * ns + k
            d = g * ns * 5 + k
            t = off + 4 * k
            w1r, w1i, w2r, w2i = twr[t], twi[t], twr[t + 1], twi[t + 1]
            w3r, w3i, w4r, w4i = twr[t + 2], twi[t + 2], twr[t + 3], twi[t + 3]
            x0r, x0i, x1r, x1i = xr[j], xi[j], xr[j + q], xi[j + q]
            x2r, x2i, x3r, x3i = xr[j + 2 * q], xi[j + 2 * q], xr[j + 3 * q], xi[j + 3 * q]
            x4r, x4i = xr[j + 4 * q], xi[j + 4 * q]
            y0r, y0i, y1r, y1i = yr[d], yi[d], yr[d + ns], yi[d + ns]
            y2r, y2i, y3r, y3i = yr[d + 2 * ns], yi[d + 2 * ns], yr[d + 3 * ns], yi[d + 3 * ns]
            y4r, y4i = yr[d + 4 * ns], yi[d + 4 * ns]
            for b in range(lanes):
                a0r, a0i = x0r[b], x0i[b]
                a1r, a1i = _cmul(x1r[b], x1i[b], w1r, w1i)
                a2r, a2i = _cmul(x2r[b], x2i[b], w2r, w2i)
                a3r, a3i = _cmul(x3r[b], x3i[b], w3r, w3i)
                a4r, a4i = _cmul(x4r[b], x4i[b], w4r, w4i)
                b1r = a1r + a4r
                b1i = a1i + a4i
                b2r = a2r + a3r
                b2i = a2i + a3i
                d1r = a1r - a4r
                d1i = a1i - a4i
                d2r = a2r - a3r
                d2i = a2i - a3i
                tar = a0r + c1 * b1r + c2 * b2r
                tai = a0i + c1 * b1i + c2 * b2i
                tbr = a0r + c2 * b1r + c1 * b2r
                tbi = a0i + c2 * b1i + c1 * b2i
                tcr = s1 * d1r + s2 * d2r
                tci = s1 * d1i + s2 * d2i
                tdr = s2 * d1r - s1 * d2r
                tdi = s2 * d1i - s1 * d2i
                y0r[b] = a0r + b1r + b2r
                y0i[b] = a0i + b1i + b2i
                y1r[b] = tar + tci
                y1i[b] = tai - tcr
                y2r[b] = tbr + tdi
                y2i[b] = tbi - tdr
                y3r[b] = tbr - tdi
                y3i[b] = tbi + tdr
                y4r[b] = tar - tci
                y4i[b] = tai + tcr


@_kernel(inline="always")
def _bfly8(a0r, a0i, a1r, a1i, a2r, a2i, a3r, a3i, a4r, a4i, a5r, a5i, a6r, a6i, a7r, a7i, h):
    """8-point DFT as two 4-point DFTs (even, odd inputs) joined by w8^k; ``h = 1/sqrt(2)``."""
    e0r, e0i, e1r, e1i, e2r, e2i, e3r, e3i = _bfly4(a0r, a0i, a2r, a2i, a4r, a4i, a6r, a6i)
    o0r, o0i, o1r, o1i, o2r, o2i, o3r, o3i = _bfly4(a1r, a1i, a3r, a3i, a5r, a5i, a7r, a7i)
    # w8 = (1 - i) / sqrt 2, w8^2 = -i, w8^3 = -(1 + i) / sqrt 2
    p1r = h * (o1r + o1i)
    p1i = h * (o1i - o1r)
    p2r = o2i
    p2i = -o2r
    p3r = h * (o3i - o3r)
    p3i = -h * (o3r + o3i)
    return (
        e0r + o0r, e0i + o0i, e1r + p1r, e1i + p1i, e2r + p2r, e2i + p2i, e3r + p3r, e3i + p3i,
        e0r - o0r, e0i - o0i, e1r - p1r, e1i - p1i, e2r - p2r, e2i - p2i, e3r - p3r, e3i - p3i,
    )  # fmt: skip


@_kernel()
def _stage8(xr, xi, yr, yi, m, ns, twr, twi, off, lanes):
    q = m // 8
    h = xr.dtype.type(0.7071067811865476)
    for g in range(q // ns):
        for k in range(ns):
            j = g * ns + k
            d = g * ns * 8 + k
            t = off + 7 * k
            w1r, w1i, w2r, w2i = twr[t], twi[t], twr[t + 1], twi[t + 1]
            w3r, w3i, w4r, w4i = twr[t + 2], twi[t + 2], twr[t + 3], twi[t + 3]
            w5r, w5i, w6r, w6i = twr[t + 4], twi[t + 4], twr[t + 5], twi[t + 5]
            w7r, w7i = twr[t + 6], twi[t + 6]
            x0r, x0i, x1r, x1i = xr[j], xi[j], xr[j + q], xi[j + q]
            x2r, x2i, x3r, x3i = xr[j + 2 * q], xi[j + 2 * q], xr[j + 3 * q], xi[j + 3 * q]
            x4r, x4i, x5r, x5i = xr[j + 4 * q], xi[j + 4 * q], xr[j + 5 * q], xi[j + 5 * q]
            x6r, x6i, x7r, x7i = xr[j + 6 * q], xi[j + 6 * q], xr[j + 7 * q], xi[j + 7 * q]
            y0r, y0i, y1r, y1i = yr[d], yi[d], yr[d + ns], yi[d + ns]
            y2r, y2i, y3r, y3i = yr[d + 2 * ns], yi[d + 2 * ns], yr[d + 3 * ns], yi[d + 3 * ns]
            y4r, y4i, y5r, y5i = yr[d + 4 * ns], yi[d + 4 * ns], yr[d + 5 * ns], yi[d + 5 * ns]
            y6r, y6i, y7r, y7i = yr[d + 6 * ns], yi[d + 6 * ns], yr[d + 7 * ns], yi[d + 7 * ns]
            for b in range(lanes):
                a1r, a1i = _cmul(x1r[b], x1i[b], w1r, w1i)
                a2r, a2i = _cmul(x2r[b], x2i[b], w2r, w2i)
                a3r, a3i = _cmul(x3r[b], x3i[b], w3r, w3i)
                a4r, a4i = _cmul(x4r[b], x4i[b], w4r, w4i)
                a5r, a5i = _cmul(x5r[b], x5i[b], w5r, w5i)
                a6r, a6i = _cmul(x6r[b], x6i[b], w6r, w6i)
                a7r, a7i = _cmul(x7r[b], x7i[b], w7r, w7i)
                (
                    y0r[b], y0i[b], y1r[b], y1i[b], y2r[b], y2i[b], y3r[b], y3i[b],
                    y4r[b], y4i[b], y5r[b], y5i[b], y6r[b], y6i[b], y7r[b], y7i[b],
                ) = _bfly8(x0r[b], x0i[b], a1r, a1i, a2r, a2i, a3r, a3i, a4r, a4i, a5r, a5i, a6r, a6i, a7r, a7i, h)  # fmt: skip


@_kernel()
def _stage8_first(xr, xi, yr, yi, m, lanes):
    # First stage (ns == 1): every twiddle is 1.
    q = m // 8
    h = xr.dtype.type(0.7071067811865476)
    for j in range(q):
        x0r, x0i, x1r, x1i = xr[j], xi[j], xr[j + q], xi[j + q]
        x2r, x2i, x3r, x3i = xr[j + 2 * q], xi[j + 2 * q], xr[j + 3 * q], xi[j + 3 * q]
        x4r, x4i, x5r, x5i = xr[j + 4 * q], xi[j + 4 * q], xr[j + 5 * q], xi[j + 5 * q]
        x6r, x6i, x7r, x7i = xr[j + 6 * q], xi[j + 6 * q], xr[j + 7 * q], xi[j + 7 * q]
        d = 8 * j
        y0r, y0i, y1r, y1i = yr[d], yi[d], yr[d + 1], yi[d + 1]
        y2r, y2i, y3r, y3i = yr[d + 2], yi[d + 2], yr[d + 3], yi[d + 3]
        y4r, y4i, y5r, y5i = yr[d + 4], yi[d + 4], yr[d + 5], yi[d + 5]
        y6r, y6i, y7r, y7i = yr[d + 6], yi[d + 6], yr[d + 7], yi[d + 7]
        for b in range(lanes):
            (
                y0r[b], y0i[b], y1r[b], y1i[b], y2r[b], y2i[b], y3r[b], y3i[b],
                y4r[b], y4i[b], y5r[b], y5i[b], y6r[b], y6i[b], y7r[b], y7i[b],
            ) = _bfly8(
                x0r[b], x0i[b], x1r[b], x1i[b], x2r[b], x2i[b], x3r[b], x3i[b],
                x4r[b], x4i[b], x5r[b], x5i[b], x6r[b], x6i[b], x7r[b], x7i[b], h,
            )  # fmt: skip


@_kernel()
def _stage(p, xr, xi, yr, yi, m, ns, twr, twi, off, lanes):
    if p == 8:
        if ns == 1:
            _stage8_first(xr, xi, yr, yi, m, lanes)
        else:
            _stage8(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)
    elif p == 4:
        _stage4(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)
    elif p == 2:
        _stage2(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)
    elif p == 3:
        _stage3(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)
    else:
        _stage5(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)


@_kernel()
def _fft_lanes(ar, ai, br, bi, m, radices, twr, twi, twoff, lanes):
    """In-lane complex FFT of ``m`` points; returns True if the result is in ``(br, bi)``."""
    # Explicit ping-pong calls (not swapped references): each call sees four
    # distinct noalias buffers, which keeps its loops vectorised.
    ns = 1
    for s in range(radices.shape[0]):
        p = radices[s]
        if s % 2 == 0:
            _stage(p, ar, ai, br, bi, m, ns, twr, twi, twoff[s], lanes)
        else:
            _stage(p, br, bi, ar, ai, m, ns, twr, twi, twoff[s], lanes)
        ns *= p
    return radices.shape[0] % 2 == 1


@_kernel()
def _power_lanes(zr, zi, m, rtr, rti, magnitude, pw, lanes):
    """Split step of the real FFT and ``|X[k]|**2`` (or ``|X[k]|``) into ``pw[k, lane]``, k = 0..m.

    ``X[k] = E + W^k O`` with ``E = (Z[k] + conj Z[m-k]) / 2`` and
    ``O = (Z[k] - conj Z[m-k]) / 2i``, ``W = exp(-2 pi i / (2 m))``.
    """
    h = zr.dtype.type(0.5)
    for k in range(m + 1):
        k1 = k if k < m else 0
        k2 = (m - k) if k > 0 else 0
        wr = rtr[k]
        wi = rti[k]
        ar_, ai_, cr_, ci_ = zr[k1], zi[k1], zr[k2], zi[k2]
        out = pw[k]
        for b in range(lanes):
            ar = ar_[b]
            ai = ai_[b]
            cr = cr_[b]
            ci = ci_[b]
            er = h * (ar + cr)
            ei = h * (ai - ci)
            orr = h * (ai + ci)
            oi = h * (cr - ar)
            xr = er + wr * orr - wi * oi
            xi = ei + wr * oi + wi * orr
            out[b] = xr * xr + xi * xi
        if magnitude:
            for b in range(lanes):
                out[b] = np.sqrt(out[b])


@_kernel()
def _fft_power(ar, ai, br, bi, half, radices, twr, twi, twoff, rtr, rti, magnitude, pw, lanes):
    """FFT of the packed block in ``(ar, ai)`` and its power spectrum into ``pw``."""
    if _fft_lanes(ar, ai, br, bi, half, radices, twr, twi, twoff, lanes):
        _power_lanes(br, bi, half, rtr, rti, magnitude, pw, lanes)
    else:
        _power_lanes(ar, ai, half, rtr, rti, magnitude, pw, lanes)


@_kernel()
def _mel_lanes(pw, mel_w, mel_lo, mel_hi, mel_off, acc, out, t0, count, floor, lanes):
    """Band-limited Mel product of the power block, clamped, into ``out[:, t0 : t0 + count]``.

    Only each band's nonzero bins are read, while the block is still in cache.
    """
    for mm in range(out.shape[0]):
        for b in range(lanes):
            acc[b] = 0
        base = mel_off[mm] - mel_lo[mm]
        for k in range(mel_lo[mm], mel_hi[mm]):
            w = mel_w[base + k]
            p = pw[k]
            for b in range(lanes):
                acc[b] += w * p[b]
        row = out[mm, t0:]
        if count == lanes:
            for b in range(lanes):
                row[b] = max(acc[b], floor)
        else:
            for b in range(count):
                row[b] = max(acc[b], floor)


# -------------------------------------------------------------- full path
@_kernel()
def _mel_block(
    x,
    silence,
    out,
    t_first,
    t_stop,
    hop,
    flen,
    pad,
    mode,
    c_sig,
    remove_dc,
    c_frame,
    win,
    radices,
    twr,
    twi,
    twoff,
    rtr,
    rti,
    magnitude,
    mel_w,
    mel_lo,
    mel_hi,
    mel_off,
    floor,
    lanes,
):
    """Clamped Mel energies ``max(mel, floor)`` of frames ``[t_first, t_stop)`` of every signal.

    ``x`` is ``(batch, nr)``, each row followed by ``silence`` zeros (the
    config's trailing silence, never copied); ``out`` is
    ``(batch, n_mels, n_frames)``.  ``win``
    already includes ``input_scale`` (every stage before the FFT is linear).
    ``t_first`` must be a multiple of ``LANES`` unless it is the only block.
    """
    nb, nr = x.shape
    n = nr + silence
    half = rtr.shape[0] - 1
    dt = x.dtype
    if hop <= flen:
        # Overlapping (or touching) frames: transposed signal, see the module doc.
        period = hop
        lead = hop
        v = 64 // x.itemsize
        cols = lanes + 1 + (flen - 1) // hop
        cols = -(-cols // v) * v
    else:
        period = flen + 1
        lead = 1
        cols = lanes
    tflat = np.zeros(period * cols, dt)  # zeros: unfilled columns must hold finite values
    tb = tflat.reshape((period, cols))
    seg = np.empty(period * cols, dt)
    stride = _row_stride(x.itemsize, lanes)
    ar = np.empty((half, stride), dt)
    ai = np.empty((half, stride), dt)
    br = np.empty((half, stride), dt)
    bi = np.empty((half, stride), dt)
    pw = np.empty((half + 1, stride), dt)
    acc = np.empty(lanes, dt)
    u_prev = np.empty(lanes, dt)
    dc = np.empty(lanes, np.float64)
    fl = dt.type(floor)
    for s in range(nb):
        xs = x[s]
        t0 = t_first
        while t0 < t_stop:
            # Full blocks, then the tail in the fewest lanes that hold it
            # (40 frames left: 32 + 16 lanes, not 64).
            left = t_stop - t0
            if left > lanes - 16:
                _one_block(
                    xs,
                    n,
                    nr,
                    t0,
                    min(left, lanes),
                    hop,
                    flen,
                    pad,
                    mode,
                    c_sig,
                    remove_dc,
                    c_frame,
                    win,
                    radices,
                    twr,
                    twi,
                    twoff,
                    rtr,
                    rti,
                    magnitude,
                    mel_w,
                    mel_lo,
                    mel_hi,
                    mel_off,
                    fl,
                    out[s],
                    period,
                    lead,
                    cols,
                    tflat,
                    tb,
                    seg,
                    ar,
                    ai,
                    br,
                    bi,
                    pw,
                    acc,
                    u_prev,
                    dc,
                    lanes,
                )
                t0 += lanes
            elif left > 16:
                _one_block(
                    xs,
                    n,
                    nr,
                    t0,
                    min(left, 32),
                    hop,
                    flen,
                    pad,
                    mode,
                    c_sig,
                    remove_dc,
                    c_frame,
                    win,
                    radices,
                    twr,
                    twi,
                    twoff,
                    rtr,
                    rti,
                    magnitude,
                    mel_w,
                    mel_lo,
                    mel_hi,
                    mel_off,
                    fl,
                    out[s],
                    period,
                    lead,
                    cols,
                    tflat,
                    tb,
                    seg,
                    ar,
                    ai,
                    br,
                    bi,
                    pw,
                    acc,
                    u_prev,
                    dc,
                    32,
                )
                t0 += 32
            else:
                _one_block(
                    xs,
                    n,
                    nr,
                    t0,
                    left,
                    hop,
                    flen,
                    pad,
                    mode,
                    c_sig,
                    remove_dc,
                    c_frame,
                    win,
                    radices,
                    twr,
                    twi,
                    twoff,
                    rtr,
                    rti,
                    magnitude,
                    mel_w,
                    mel_lo,
                    mel_hi,
                    mel_off,
                    fl,
                    out[s],
                    period,
                    lead,
                    cols,
                    tflat,
                    tb,
                    seg,
                    ar,
                    ai,
                    br,
                    bi,
                    pw,
                    acc,
                    u_prev,
                    dc,
                    16,
                )
                t0 += 16  # fmt: skip


@_kernel()
def _one_block(
    xs,
    n,
    nr,
    t0,
    count,
    hop,
    flen,
    pad,
    mode,
    c_sig,
    remove_dc,
    c_frame,
    win,
    radices,
    twr,
    twi,
    twoff,
    rtr,
    rti,
    magnitude,
    mel_w,
    mel_lo,
    mel_hi,
    mel_off,
    fl,
    out,
    period,
    lead,
    cols,
    tflat,
    tb,
    seg,
    ar,
    ai,
    br,
    bi,
    pw,
    acc,
    u_prev,
    dc,
    lanes,
):
    """Frames ``[t0, t0 + count)`` of one signal through ``lanes`` lanes (the buffers may be wider)."""
    if hop <= flen:
        c_eff = _fill_transposed(xs, n, nr, t0, count, hop, flen, pad, mode, c_sig, tflat, cols, seg)
    else:
        _fill_gathered(xs, n, nr, t0, count, hop, flen, pad, mode, c_sig, tb, lanes)
        c_eff = c_sig * 0
    _pack(tb, period, lead, flen, c_eff, remove_dc, c_frame, win, ar.shape[0], ar, ai, u_prev, dc, lanes)
    _fft_power(ar, ai, br, bi, ar.shape[0], radices, twr, twi, twoff, rtr, rti, magnitude, pw, lanes)
    _mel_lanes(pw, mel_w, mel_lo, mel_hi, mel_off, acc, out, t0, count, fl, lanes)


# One compiled entry point per main lane count (the ``lanes`` literal makes every
# lane loop's trip count a compile-time constant); the variant in use is
# chosen by :mod:`.variants`.
@_kernel()
def mel_block_64(
    x,
    silence,
    out,
    t_first,
    t_stop,
    hop,
    flen,
    pad,
    mode,
    c_sig,
    remove_dc,
    c_frame,
    win,
    radices,
    twr,
    twi,
    twoff,
    rtr,
    rti,
    magnitude,
    mel_w,
    mel_lo,
    mel_hi,
    mel_off,
    floor,
):
    _mel_block(x, silence, out, t_first, t_stop, hop, flen, pad, mode, c_sig, remove_dc, c_frame, win,
               radices, twr, twi, twoff, rtr, rti, magnitude, mel_w, mel_lo, mel_hi, mel_off, floor, 64)  # fmt: skip


@_kernel()
def mel_block_32(
    x,
    silence,
    out,
    t_first,
    t_stop,
    hop,
    flen,
    pad,
    mode,
    c_sig,
    remove_dc,
    c_frame,
    win,
    radices,
    twr,
    twi,
    twoff,
    rtr,
    rti,
    magnitude,
    mel_w,
    mel_lo,
    mel_hi,
    mel_off,
    floor,
):
    _mel_block(x, silence, out, t_first, t_stop, hop, flen, pad, mode, c_sig, remove_dc, c_frame, win,
               radices, twr, twi, twoff, rtr, rti, magnitude, mel_w, mel_lo, mel_hi, mel_off, floor, 32)  # fmt: skip


@_kernel()
def mel_block_16(
    x,
    silence,
    out,
    t_first,
    t_stop,
    hop,
    flen,
    pad,
    mode,
    c_sig,
    remove_dc,
    c_frame,
    win,
    radices,
    twr,
    twi,
    twoff,
    rtr,
    rti,
    magnitude,
    mel_w,
    mel_lo,
    mel_hi,
    mel_off,
    floor,
):
    _mel_block(x, silence, out, t_first, t_stop, hop, flen, pad, mode, c_sig, remove_dc, c_frame, win,
               radices, twr, twi, twoff, rtr, rti, magnitude, mel_w, mel_lo, mel_hi, mel_off, floor, 16)  # fmt: skip


#: Entry point by main lane count.
MEL_BLOCK = {64: mel_block_64, 32: mel_block_32, 16: mel_block_16}


@_kernel()
def frames_power(frames, out, radices, twr, twi, twoff, rtr, rti, magnitude):
    """Power spectrum of rows: ``frames`` ``(rows, flen)`` to ``out`` ``(rows, n_bins)``."""
    rows, flen = frames.shape
    half = rtr.shape[0] - 1
    dt = frames.dtype
    stride = _row_stride(frames.itemsize, LANES)
    ar = np.zeros((half, stride), dt)
    ai = np.zeros((half, stride), dt)
    br = np.empty((half, stride), dt)
    bi = np.empty((half, stride), dt)
    pw = np.empty((half + 1, stride), dt)
    for r0 in range(0, rows, LANES):
        count = min(LANES, rows - r0)
        # A stage kernel, not the hot path: a plain strided copy is enough.
        for b in range(LANES):
            rb = r0 + min(b, count - 1)
            for k in range(flen):
                if k % 2 == 0:
                    ar[k // 2, b] = frames[rb, k]
                else:
                    ai[k // 2, b] = frames[rb, k]
        for m in range(flen // 2, half):
            for b in range(LANES):
                if m >= (flen + 1) // 2:
                    ar[m, b] = 0
                ai[m, b] = 0
        _fft_power(ar, ai, br, bi, half, radices, twr, twi, twoff, rtr, rti, magnitude, pw, LANES)
        for b in range(count):
            for k in range(half + 1):
                out[r0 + b, k] = pw[k, b]


@_kernel()
def mel_energies_kernel(power, out, mel_w, mel_lo, mel_hi, mel_off):
    """Band-limited Mel product: ``power`` ``(rows, bins)`` to ``out`` ``(n_mels, rows)``."""
    rows = power.shape[0]
    n_mels = out.shape[0]
    for r in range(rows):
        pr = power[r]
        for mm in range(n_mels):
            base = mel_off[mm] - mel_lo[mm]
            acc = power.dtype.type(0)
            for k in range(mel_lo[mm], mel_hi[mm]):
                acc += mel_w[base + k] * pr[k]
            out[mm, r] = acc


@_kernel()
def log_post(y, peaks, dyn, dynamic_range, offset, scale):
    """In place on logs ``y`` ``(batch, n)``: ``(max(y, peak - dynamic_range) + offset) * scale``.

    ``peaks[s]`` is the maximum of row ``s`` (one utterance), found by NumPy
    beforehand: a max-reduction loop here would stay scalar (LLVM needs
    ``nnan`` to vectorise it), 10x slower than ``ndarray.max``.
    """
    f = y.dtype.type
    off = f(offset)
    sc = f(scale)
    for s in range(y.shape[0]):
        row = y[s]
        lo = f(peaks[s]) - f(dynamic_range) if dyn else f(-np.inf)
        for i in range(row.shape[0]):
            row[i] = (max(row[i], lo) + off) * sc
