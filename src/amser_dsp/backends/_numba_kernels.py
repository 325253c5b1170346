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

import decimal
import math
import struct

from . import _codegen

_codegen.configure_numba()  # before Numba creates its CPU target: 512-bit vectors on Intel AVX-512

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
    # ``seg`` first (``seg[i]`` is signal index ``origin + i``), then the same
    # tiled transpose.  Zeros first (before the padded signal, the silence,
    # constant padding, after it); then vector copies where the samples lie
    # inside ``x``, plain loops where the padding reflects them, and the general
    # path only where it reflects the silence or repeats an edge sample.
    for i in range(span):
        seg[i] = 0
    lo = min(max(1 - origin, 0), span)
    hi = max(min(nr - origin, span), lo)
    if hi > lo:
        src = x[origin + lo : origin + hi]
        prev = x[origin + lo - 1 : origin + hi - 1]
        dst = seg[lo:hi]
        for i in range(hi - lo):
            dst[i] = src[i] - c_sig * prev[i]
    # Left: signal index 0 (nothing before it to pre-emphasise with), then the
    # padding, indices -pad .. -1, reflected to pad .. 1.
    if 0 <= -origin < span:
        seg[-origin] = x[0]
    left, right = min(max(-pad - origin, 0), span), min(max(-origin, 0), span)
    if mode == PAD_REFLECT and pad < nr:
        for i in range(left, right):
            r = -origin - i
            seg[i] = x[r] - c_sig * x[r - 1]
    elif mode != PAD_CONSTANT:
        for i in range(left, right):
            seg[i] = _padded_sample(x, n, nr, origin + i + pad, pad, mode, c_sig)
    # Right: the silence's first sample (pre-emphasis of the last sample into
    # it), then signal indices n .. n + pad - 1, reflected to n - 2 .. n - 1 - pad.
    if nr < n and 0 <= nr - origin < span:
        seg[nr - origin] = -c_sig * x[nr - 1]
    right, stop = min(max(n - origin, 0), span), min(max(n + pad - origin, 0), span)
    r_top, r_bottom = 2 * (n - 1) - (origin + right), 2 * (n - 1) - (origin + stop - 1)
    if mode == PAD_REFLECT and r_bottom > nr:
        pass  # every reflection lands in the silence: zeros
    elif mode == PAD_REFLECT and r_top < nr and r_bottom >= 1:
        for i in range(right, stop):
            r = 2 * (n - 1) - (origin + i)
            seg[i] = x[r] - c_sig * x[r - 1]
    elif mode != PAD_CONSTANT:
        for i in range(right, stop):
            seg[i] = _padded_sample(x, n, nr, origin + i + pad, pad, mode, c_sig)
    _transpose_rows(seg, np.int64(0), used, hop, tflat, rp)  # not the literal 0: a second compile for it
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


#: The stage kernels a config can need, in the order of the ``kinds`` flags (:func:`stage_kinds`).
STAGE_KINDS = ("8 first", "8", "4 first", "4", "5", "3", "2")


def stage_kinds(radices: list[int], hop: int, flen: int) -> tuple[int | None, ...]:
    """The ``kinds`` argument of the ``mel_block_*`` entry points for an FFT's radices and a frame geometry.

    One flag per stage kernel (:data:`STAGE_KINDS`; the first stage of radix 8
    or 4 has its own kernel, its twiddles all 1) and one for frames farther apart
    than they are long (:func:`_fill_gathered`): ``0`` where the config uses it,
    ``None`` where it does not.  Numba prunes a branch on ``flag is None`` when it
    types the call (the flag's type is ``none``), so the kernels a config does not
    use are neither typed nor compiled: ``whisper`` (radices 8, 5, 5) compiles two
    of the seven stage kernels, ``kaldi`` (8, 8, 4) three.  Each distinct set is a
    specialisation of its own, compiled on first use and cached.  Plain Python.
    """
    used: set[str] = set()
    for s, p in enumerate(radices):
        kind = f"{p} first" if s == 0 and p in (8, 4) else str(p)
        used.add(kind)
    return (*(0 if k in used else None for k in STAGE_KINDS), 0 if hop > flen else None)


@_kernel(inline="always")
def _stage(p, xr, xi, yr, yi, m, ns, twr, twi, off, lanes, k8f, k8, k4f, k4, k5, k3, k2, gathered):
    """One Stockham stage of radix ``p``; a stage kernel whose flag is ``None`` is not compiled (:func:`stage_kinds`)."""
    if p == 8:
        if ns == 1:
            if k8f is not None:
                _stage8_first(xr, xi, yr, yi, m, lanes)
        elif k8 is not None:
            _stage8(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)
    elif p == 4:
        if ns == 1:
            if k4f is not None:
                _stage4_first(xr, xi, yr, yi, m, lanes)
        elif k4 is not None:
            _stage4(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)
    elif p == 5:
        if k5 is not None:
            _stage5(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)
    elif p == 3:
        if k3 is not None:
            _stage3(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)
    elif k2 is not None:
        _stage2(xr, xi, yr, yi, m, ns, twr, twi, off, lanes)


@_kernel(inline="always")
def _fft_lanes(ar, ai, br, bi, m, radices, twr, twi, twoff, lanes, k8f, k8, k4f, k4, k5, k3, k2, gathered):
    """In-lane complex FFT of ``m`` points; returns True if the result is in ``(br, bi)``."""
    # Explicit ping-pong calls (not swapped references): each call sees four
    # distinct noalias buffers, which keeps its loops vectorised.
    ns = np.int64(1)  # not the literal 1: a literal would compile every stage once more for it
    for s in range(radices.shape[0]):
        p = radices[s]
        if s % 2 == 0:
            _stage(p, ar, ai, br, bi, m, ns, twr, twi, twoff[s], lanes, k8f, k8, k4f, k4, k5, k3, k2, gathered)
        else:
            _stage(p, br, bi, ar, ai, m, ns, twr, twi, twoff[s], lanes, k8f, k8, k4f, k4, k5, k3, k2, gathered)
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
def _fft_power(ar, ai, br, bi, half, radices, twr, twi, twoff, rtr, rti, magnitude, pw, lanes,
               k8f, k8, k4f, k4, k5, k3, k2, gathered):  # fmt: skip
    """FFT of the packed block in ``(ar, ai)`` and its power spectrum into ``pw``.

    The flags (:func:`stage_kinds`) are this function's own arguments so that
    Numba prunes the stage kernels the config does not use before it types
    them (the stage dispatch is inlined here).
    """
    if _fft_lanes(ar, ai, br, bi, half, radices, twr, twi, twoff, lanes, k8f, k8, k4f, k4, k5, k3, k2, gathered):
        _power_lanes(br, bi, half, rtr, rti, magnitude, pw, lanes)
    else:
        _power_lanes(ar, ai, half, rtr, rti, magnitude, pw, lanes)


# --------------------------------------------------------------------- log
@intrinsic
def _split_exponent(typingctx, v):
    """``(m, k)`` with ``v = m * 2**k``, ``m`` in ``[sqrt(1/2), sqrt(2))``, ``k`` a whole number of ``v``'s type.

    For positive, normal, finite ``v``.  Integer arithmetic on the bits (the
    reduction of musl's ``logf``/``log``): a loop calling it stays a SIMD loop,
    where ``frexp`` or ``math.log`` would be a library call per element.
    """
    if v not in (types.float32, types.float64):
        return None
    sig = types.UniTuple(v, 2)(v)
    bits, mant = (32, 23) if v == types.float32 else (64, 52)
    sqrt_half = int.from_bytes(struct.pack("<f" if bits == 32 else "<d", math.sqrt(0.5)), "little")
    bias = (1 << (bits - mant - 2)) - 1  # 127, 1023

    def codegen(context, builder, signature, args):
        it = ir.IntType(bits)
        ix = builder.add(builder.bitcast(args[0], it), ir.Constant(it, (bias << mant) - sqrt_half))
        k = builder.sub(builder.ashr(ix, ir.Constant(it, mant)), ir.Constant(it, bias))
        m = builder.add(builder.and_(ix, ir.Constant(it, (1 << mant) - 1)), ir.Constant(it, sqrt_half))
        ft = context.get_value_type(signature.args[0])
        return context.make_tuple(builder, signature.return_type, [builder.bitcast(m, ft), builder.sitofp(k, ft)])

    return sig, codegen


def _ln_table(bits: int) -> tuple[float, ...]:
    """Constants of :func:`_ln` for a float type of ``bits`` bits (see there)."""
    mant = 23 if bits == 32 else 52
    tiny = math.ldexp(1.0, -126 if bits == 32 else -1022)  # smallest normal number
    ln2 = decimal.Context(prec=40).ln(2)
    # ln 2 = hi + lo, hi with few enough significant bits that k * hi is exact for every exponent k.
    keep = 12 if bits == 32 else 32
    hi = math.ldexp(math.floor(math.ldexp(float(ln2), keep)), -keep)
    lo = float(ln2 - decimal.Decimal(hi))
    series = [2 / (2 * i + 1) for i in range(1, 10)]  # 2/3, 2/5, ..., 2/19
    return (1.0, 2.0, tiny, math.ldexp(1.0, mant), float(mant), hi, lo, math.inf, *series)


_LN_32 = _ln_table(32)
_LN_64 = _ln_table(64)


@_kernel(inline="always")
def _ln_constants(a):
    """:func:`_ln_table` in the dtype of array ``a`` (a tuple of typed constants: Python floats would be float64)."""
    f = a.dtype.type
    t = _LN_32 if a.itemsize == 4 else _LN_64
    return (
        f(t[0]), f(t[1]), f(t[2]), f(t[3]), f(t[4]), f(t[5]), f(t[6]), f(t[7]),
        f(t[8]), f(t[9]), f(t[10]), f(t[11]), f(t[12]), f(t[13]), f(t[14]), f(t[15]), f(t[16]),
    )  # fmt: skip


@_kernel(inline="always")
def _ln(v, c, wide):
    """Natural log of ``v >= 0`` (``-inf`` at 0, ``v`` itself if not finite), a SIMD loop's worth of code.

    ``v = m 2**k``; ``log(m) = f - f**2/2 + s (f**2/2 + R)``, ``f = m - 1``,
    ``s = f / (2 + f)``, ``R = 2 s**2/3 + 2 s**4/5 + ...`` (fdlibm's
    formulation with the series' own coefficients): ``|s| < 0.172``, so four
    terms reach float32 rounding and nine (``wide``) float64 rounding.
    Subnormal ``v`` is scaled up first.  ``c`` is :func:`_ln_constants`.
    """
    one, two, tiny, scale, mant, ln2_hi, ln2_lo, inf = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    sub = v < tiny
    m, k = _split_exponent(v * scale if sub else v)
    if sub:
        k -= mant
    f = m - one
    s = f / (two + f)
    z = s * s
    if wide:
        r = z * (
            c[8]
            + z * (c[9] + z * (c[10] + z * (c[11] + z * (c[12] + z * (c[13] + z * (c[14] + z * (c[15] + z * c[16])))))))
        )
    else:
        r = z * (c[8] + z * (c[9] + z * (c[10] + z * c[11])))
    hfsq = f * f / two
    y = k * ln2_hi + ((f - hfsq + s * (hfsq + r)) + k * ln2_lo)
    return -inf if v == 0 else (y if v < inf else v)  # v < inf is False for inf and nan


# ------------------------------------------------------------------ Mel, log
@_kernel()
def _mel_lanes(pw, mel_w, mel_lo, mel_hi, mel_off, melflat, peak, out, t0, count, floor, log_k, lanes):
    """Band-limited Mel product of the power block, clamped and logged, into ``out[:, t0 : t0 + count]``.

    Only each band's nonzero bins are read, while the block is still in cache.
    The log (times ``log_k``: 1, or ``1 / ln 10``) is taken as each band's
    row is written out, and ``peak[b]`` keeps the largest log lane ``b`` has
    seen: the utterance's maximum for the dynamic-range clamp, without a pass
    of its own.  (Measured on Zen 4: a separate log loop over the whole Mel
    block, then a copy, cost 5-10% of a 60 s call more than this.)
    """
    n_mels = out.shape[0]
    mel = melflat[: n_mels * lanes].reshape((n_mels, lanes))
    for mm in range(n_mels):
        acc = mel[mm]
        for b in range(lanes):
            acc[b] = 0
        base = mel_off[mm] - mel_lo[mm]
        for k in range(mel_lo[mm], mel_hi[mm]):
            w = mel_w[base + k]
            p = pw[k]
            for b in range(lanes):
                acc[b] += w * p[b]
    c = _ln_constants(melflat)
    wide = melflat.itemsize == 8
    for mm in range(n_mels):
        row = out[mm, t0:]
        acc = mel[mm]
        if count == lanes:
            for b in range(lanes):
                y = _ln(max(acc[b], floor), c, wide) * log_k
                row[b] = y
                peak[b] = max(peak[b], y)
        else:
            for b in range(count):
                y = _ln(max(acc[b], floor), c, wide) * log_k
                row[b] = y
                peak[b] = max(peak[b], y)


@_kernel()
def _log_post_row(y, peak, dyn, dynamic_range, offset, scale):
    """In place on one utterance's logs: ``(max(y, peak - dynamic_range) + offset) * scale``."""
    f = y.dtype.type
    lo = peak - f(dynamic_range) if dyn else f(-np.inf)
    off, sc = f(offset), f(scale)
    for i in range(y.shape[0]):
        y[i] = (max(y[i], lo) + off) * sc


@_kernel()
def log_post(y, peaks, dyn, dynamic_range, offset, scale):
    """In place on logs ``y`` ``(batch, n)``: ``(max(y, peak - dynamic_range) + offset) * scale``, row by row.

    ``peaks[s]`` is the maximum of row ``s`` (one utterance): the largest of
    the peaks the frame ranges' kernel calls returned.
    """
    for s in range(y.shape[0]):
        _log_post_row(y[s], peaks[s], dyn, dynamic_range, offset, scale)


# ------------------------------------------------------------ the fused path
# The packed plan (built once per config and dtype by numba_backend._kernel_plan):
# a call converts three arrays instead of some 25 arguments (measured: 3.1 us of
# Numba dispatch per call with 25, 0.4 with 8).  ``ints`` starts with this header,
# then radices, stage-twiddle offsets and the Mel bands' first bins, ends and
# weight offsets; ``floats`` holds the window (input_scale folded in), the stage
# twiddles' real then imaginary parts, the split-step twiddles' and the Mel
# weights; ``params`` (float64) the scalars below.
(I_HOP, I_FLEN, I_PAD, I_MODE, I_SILENCE, I_REMOVE_DC, I_MAGNITUDE, I_N_FFT, I_N_MELS, I_STAGES,
 I_TWIDDLES, I_LOG10, I_DYN, I_HEADER) = range(14)  # fmt: skip
P_C_SIG, P_C_FRAME, P_FLOOR, P_DYNAMIC_RANGE, P_OFFSET, P_SCALE, P_SIZE = range(7)


@_kernel(inline="always")
def _unpack(floats, ints):
    """The plan's tables as views of ``floats`` and ``ints``."""
    flen, half, n_mels, ns, ntw = ints[I_FLEN], ints[I_N_FFT] // 2, ints[I_N_MELS], ints[I_STAGES], ints[I_TWIDDLES]
    i = I_HEADER
    radices, twoff = ints[i : i + ns], ints[i + ns : i + 2 * ns]
    i += 2 * ns
    mel_lo, mel_hi, mel_off = ints[i : i + n_mels], ints[i + n_mels : i + 2 * n_mels], ints[i + 2 * n_mels :]
    win, j = floats[:flen], flen
    twr, twi = floats[j : j + ntw], floats[j + ntw : j + 2 * ntw]
    j += 2 * ntw
    rtr, rti = floats[j : j + half + 1], floats[j + half + 1 : j + 2 * half + 2]
    mel_w = floats[j + 2 * half + 2 :]
    return win, radices, twr, twi, twoff, rtr, rti, mel_w, mel_lo, mel_hi, mel_off


def _workspace_layout(hop, flen, n_fft, n_mels, itemsize, lanes):
    """``(period, lead, cols, size)``: the transposed samples' shape and the workspace's length in items.

    The workspace holds, in order: the transposed samples ``(period, cols)``,
    the edge blocks' segment (as many), the FFT's four ping-pong planes and
    the power block (``n_fft / 2 (+1)`` rows of :func:`_row_stride`), the Mel
    block ``(n_mels, lanes)``, then the lane peaks and the previous
    pre-emphasised sample (``lanes`` each).  Plain Python as well
    (``_workspace_layout.py_func``): the back end sizes each thread's workspace with it.
    """
    if hop <= flen:
        # Overlapping (or touching) frames: transposed signal, see the module doc.
        v = 64 // itemsize
        period, lead, cols = hop, hop, -(-(lanes + 1 + (flen - 1) // hop) // v) * v
    else:
        period, lead, cols = flen + 1, 1, lanes
    half = n_fft // 2
    stride = lanes + 16 // itemsize
    return period, lead, cols, 2 * period * cols + (5 * half + 1) * stride + n_mels * lanes + 2 * lanes


_workspace_layout = _kernel(inline="always")(_workspace_layout)


@_kernel(inline="always")
def _mel_block(x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work, lanes, t48, t32, t16):
    """Log-Mel features of frames ``[t_first, t_stop)`` of every signal.

    ``x`` is ``(batch, nr)``, each row followed by the config's trailing
    silence (zeros, never copied); ``out`` is ``(batch, n_mels, n_frames)``.
    ``peaks[s]`` receives the largest log of signal ``s`` in the range (if
    ``peaks`` is not empty).  ``work`` is a workspace of at least
    :func:`_workspace_layout` items (zeros when new).  With
    ``finish`` (the range is every frame) the dynamic-range clamp, offset and
    scale are applied here too; otherwise the caller applies them with
    :func:`log_post` once every range is done.  ``t_first`` must be a
    multiple of ``LANES`` unless it is the only block.

    Blocks are ``lanes`` frames wide while more than ``lanes - 16`` are left;
    the tail (at most ``lanes - 16`` frames) takes one block of ``t48`` lanes
    if ``t32`` is ``None``, else (:func:`_tails`) a block of ``t48``, ``t32``
    or ``t16`` lanes for a tail of 33-48, 17-32 or 1-16 frames (literals, each
    at least the tail it takes).  Inlined into each entry point, so that the
    entry's literals reach every lane loop: its blocks are inlined here, at most
    two, and the pipeline's leaves compiled once per width.  Every distinct width
    is a compiled copy of the whole block pipeline, so a variant that uses fewer
    widths compiles in a fraction of the time (:mod:`.variants`).
    """
    win, radices, twr, twi, twoff, rtr, rti, mel_w, mel_lo, mel_hi, mel_off = _unpack(floats, ints)
    hop, flen, pad, mode = ints[I_HOP], ints[I_FLEN], ints[I_PAD], ints[I_MODE]
    remove_dc, magnitude = ints[I_REMOVE_DC] != 0, ints[I_MAGNITUDE] != 0
    nb, nr = x.shape
    n = nr + ints[I_SILENCE]
    half = rtr.shape[0] - 1
    dt = x.dtype
    f = dt.type
    c_sig, c_frame, fl = f(params[P_C_SIG]), f(params[P_C_FRAME]), f(params[P_FLOOR])
    log_k = f(1 / np.log(10.0)) if ints[I_LOG10] else f(1.0)
    period, lead, cols, _ = _workspace_layout(hop, flen, ints[I_N_FFT], out.shape[1], x.itemsize, lanes)
    # Carved from the caller's workspace (one per thread, kept between calls): no
    # allocation per call, and the transposed samples' unfilled columns keep the
    # finite values of an earlier call (or the zeros it was created with).
    i = 0
    tflat = work[i : i + period * cols]
    tb = tflat.reshape((period, cols))
    i += period * cols
    seg = work[i : i + period * cols]
    i += period * cols
    stride = _row_stride(x.itemsize, lanes)
    planes = work[i : i + (5 * half + 1) * stride]
    ar = planes[: half * stride].reshape((half, stride))
    ai = planes[half * stride : 2 * half * stride].reshape((half, stride))
    br = planes[2 * half * stride : 3 * half * stride].reshape((half, stride))
    bi = planes[3 * half * stride : 4 * half * stride].reshape((half, stride))
    pw = planes[4 * half * stride :].reshape((half + 1, stride))
    i += (5 * half + 1) * stride
    melflat = work[i : i + out.shape[1] * lanes]
    i += out.shape[1] * lanes
    peak = work[i : i + lanes]
    u_prev = work[i + lanes : i + 2 * lanes]
    dc = np.empty(lanes, np.float64)
    post = ints[I_DYN] != 0 or params[P_OFFSET] != 0 or params[P_SCALE] != 1
    # What every block shares, as tuples (compiled away: only to keep the calls short).
    geometry = (n, nr, hop, flen, pad, mode, period, lead, cols, remove_dc, magnitude)
    coefs = (c_sig, c_frame, fl, log_k)
    tables = (win, radices, twr, twi, twoff, rtr, rti, mel_w, mel_lo, mel_hi, mel_off)
    bufs = (tflat, tb, seg, ar, ai, br, bi, pw, melflat, peak, u_prev, dc)
    for s in range(nb):
        xs = x[s]
        o = out[s]
        for b in range(lanes):
            peak[b] = -np.inf
        t0 = t_first
        while t0 < t_stop:
            # Full blocks, then the tail in one block of the variant's width for
            # it (lanes64: 1 s = 102 frames = 64 + 48 lanes, not 64 + 32 + 16).
            left = t_stop - t0
            if left > lanes - 16:
                _one_block(xs, o, t0, min(left, lanes), geometry, coefs, tables, bufs, kinds, lanes)
                t0 += lanes
                continue
            # ``t32 is None`` is decided as Numba types the entry point: the
            # branch not taken is neither typed nor compiled.
            if t32 is None:
                _one_block(xs, o, t0, left, geometry, coefs, tables, bufs, kinds, t48)
            else:
                _tails(xs, o, t0, left, geometry, coefs, tables, bufs, kinds, t48, t32, t16)
            t0 = t_stop
        top = peak[0]
        for b in range(1, lanes):
            top = max(top, peak[b])
        if peaks.shape[0]:
            peaks[s] = top
        if finish and post:
            _log_post_row(out[s].reshape(-1), top, ints[I_DYN] != 0, params[P_DYNAMIC_RANGE], params[P_OFFSET],
                          params[P_SCALE])  # fmt: skip


@_kernel()
def _tails(xs, o, t0, left, geometry, coefs, tables, bufs, kinds, t48, t32, t16):
    """The tail block of a variant with three tail widths (``lanes64``), compiled only for it."""
    if left > 32:
        _one_block(xs, o, t0, left, geometry, coefs, tables, bufs, kinds, t48)
    elif left > 16:
        _one_block(xs, o, t0, left, geometry, coefs, tables, bufs, kinds, t32)
    else:
        _one_block(xs, o, t0, left, geometry, coefs, tables, bufs, kinds, t16)


@_kernel()
def _gather(x, n, nr, first, count, hop, flen, pad, mode, c_sig, tb, lanes, k8f, k8, k4f, k4, k5, k3, k2, gathered):
    """:func:`_fill_gathered`, compiled only where the config's ``gathered`` flag is set (:func:`stage_kinds`)."""
    if gathered is not None:
        _fill_gathered(x, n, nr, first, count, hop, flen, pad, mode, c_sig, tb, lanes)


@_kernel(inline="always")
def _one_block(xs, out, t0, count, geometry, coefs, tables, bufs, kinds, lanes):
    """Frames ``[t0, t0 + count)`` of one signal through ``lanes`` lanes (the buffers may be wider)."""
    n, nr, hop, flen, pad, mode, period, lead, cols, remove_dc, magnitude = geometry
    c_sig, c_frame, fl, log_k = coefs
    win, radices, twr, twi, twoff, rtr, rti, mel_w, mel_lo, mel_hi, mel_off = tables
    tflat, tb, seg, ar, ai, br, bi, pw, melflat, peak, u_prev, dc = bufs
    if hop <= flen:
        c_eff = _fill_transposed(xs, n, nr, t0, count, hop, flen, pad, mode, c_sig, tflat, cols, seg)
    else:
        _gather(xs, n, nr, t0, count, hop, flen, pad, mode, c_sig, tb, lanes,
                kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5], kinds[6], kinds[7])  # fmt: skip
        c_eff = c_sig * 0
    _pack(tb, period, lead, flen, c_eff, remove_dc, c_frame, win, ar.shape[0], ar, ai, u_prev, dc, lanes)
    _fft_power(ar, ai, br, bi, ar.shape[0], radices, twr, twi, twoff, rtr, rti, magnitude, pw, lanes,
               kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5], kinds[6], kinds[7])  # fmt: skip
    _mel_lanes(pw, mel_w, mel_lo, mel_hi, mel_off, melflat, peak, out, t0, count, fl, log_k, lanes)


# One compiled entry point per variant shape (main width, tail widths): the
# literals make every lane loop's trip count a compile-time constant, and a
# process compiles only the entry points it calls (:mod:`.variants` names
# them; ``tests/test_variants.py`` checks every variant has one).  A variant
# whose tails all take one width passes ``None`` for the other two.
@_kernel()
def mel_block_64(x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work):
    _mel_block(x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work, 64, 48, 32, 16)


@_kernel()
def mel_block_64t48(x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work):
    _mel_block(x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work, 64, 48, None, None)


@_kernel()
def mel_block_64p(x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work):
    _mel_block(x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work, 64, 64, None, None)


@_kernel()
def mel_block_32(x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work):
    _mel_block(
        x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work, 32, 16, None, None
    )  # tails of 1-16 only


@_kernel()
def mel_block_16(x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work):
    _mel_block(
        x, out, peaks, t_first, t_stop, floats, ints, params, kinds, finish, work, 16, 16, None, None
    )  # full blocks only


#: Entry point by ``(lanes, t48, t32, t16)``: the block widths of :func:`_mel_block`.
MEL_BLOCK = {
    (64, 48, 32, 16): mel_block_64,
    (64, 48, 48, 48): mel_block_64t48,
    (64, 64, 64, 64): mel_block_64p,
    (32, 32, 32, 16): mel_block_32,
    (16, 16, 16, 16): mel_block_16,
}


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
        _fft_power(
            ar, ai, br, bi, half, radices, twr, twi, twoff, rtr, rti, magnitude, pw, LANES, 0, 0, 0, 0, 0, 0, 0, 0
        )
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
