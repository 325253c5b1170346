"""Numba kernels of the Numba back end (imported only by :mod:`.numba_backend`).

Layout: a block of ``LANES`` frames is processed at once, stored *lane-major*:
every buffer is ``(points, LANES)`` with the frame index innermost, so each
butterfly, each power bin and each Mel product is a loop over 16 contiguous
values that LLVM turns into SIMD instructions (one AVX-512 register in float32).

The real FFT of ``N = 2 M`` points is a complex FFT of ``M`` points on
``z[m] = x[2m] + i x[2m+1]`` followed by the usual split step.  The complex FFT
is a Stockham autosort FFT (no bit reversal) with radix-4, -2, -3 and -5
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

import numba
import numpy as np

__all__ = ["LANES", "frames_power", "log_post", "mel_block", "mel_energies_kernel"]

#: Frames processed together; 16 float32 lanes fill one AVX-512 register
#: (two AVX2 or four NEON registers: the loops stay vectorised on ARM).
LANES = 16

_FM = {"contract"}
_JIT = {"cache": True, "nogil": True, "fastmath": _FM, "error_model": "numpy", "boundscheck": False}


def _noalias(dispatcher):
    """Compile ``dispatcher`` with its array arguments marked ``noalias``.

    Without it LLVM must assume the input and output buffers overlap and
    leaves the 16-lane loops scalar, or guards them with runtime checks that
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


# Pad-mode codes shared with numba_backend.
PAD_REFLECT, PAD_CONSTANT, PAD_EDGE = 0, 1, 2


# ----------------------------------------------------------------- samples
@_kernel(inline="always")
def _padded_sample(x, n, j, pad, mode, c_sig):
    """Value at padded index ``j`` of the signal-pre-emphasised, padded signal."""
    i = j - pad
    if i < 0 or i >= n:
        if mode == PAD_CONSTANT:
            return x[0] * 0
        if mode == PAD_EDGE:
            i = 0 if i < 0 else n - 1
        else:  # reflect (pad < n is checked before the call)
            i = -i if i < 0 else 2 * (n - 1) - i
    if i == 0 or c_sig == 0:
        return x[i]
    return x[i] - c_sig * x[i - 1]


@_kernel()
def _load_block(x, n, first, count, hop, flen, pad, mode, c_sig, fr):
    """Frames ``first .. first + count - 1`` into ``fr[:flen, :count]`` (lanes past ``count`` repeat the last)."""
    start = first * hop - pad  # signal index of the first sample of the first frame
    last = (first + count - 1) * hop - pad
    inside = start - (1 if c_sig != 0 else 0) >= 0 and last + flen <= n
    for b in range(LANES):
        fb = first + (b if b < count else count - 1)
        s = fb * hop - pad
        if inside:
            if c_sig != 0:
                for k in range(flen):
                    fr[k, b] = x[s + k] - c_sig * x[s + k - 1]
            else:
                for k in range(flen):
                    fr[k, b] = x[s + k]
        else:
            for k in range(flen):
                fr[k, b] = _padded_sample(x, n, fb * hop + k, pad, mode, c_sig)


@_kernel()
def _condition(fr, flen, remove_dc, c_frame):
    """Kaldi's per-frame DC removal and pre-emphasis ``y[0] = x[0] - c x[0]``, in place."""
    if remove_dc:
        acc = np.zeros(LANES, dtype=fr.dtype)
        for k in range(flen):
            for b in range(LANES):
                acc[b] += fr[k, b]
        inv = fr.dtype.type(1.0) / flen
        for b in range(LANES):
            acc[b] *= inv
        for k in range(flen):
            for b in range(LANES):
                fr[k, b] -= acc[b]
    if c_frame != 0:
        for k in range(flen - 1, 0, -1):
            for b in range(LANES):
                fr[k, b] -= c_frame * fr[k - 1, b]
        for b in range(LANES):
            fr[0, b] -= c_frame * fr[0, b]


@_kernel()
def _window_pack(fr, flen, win, half, zr, zi):
    """Window and pack even/odd samples as complex ``z[m] = x[2m] + i x[2m+1]``, zero-padded."""
    pairs = flen // 2
    for m in range(pairs):
        w0 = win[2 * m]
        w1 = win[2 * m + 1]
        for b in range(LANES):
            zr[m, b] = fr[2 * m, b] * w0
            zi[m, b] = fr[2 * m + 1, b] * w1
    m0 = pairs
    if flen % 2 == 1:
        w0 = win[flen - 1]
        for b in range(LANES):
            zr[pairs, b] = fr[flen - 1, b] * w0
            zi[pairs, b] = 0
        m0 = pairs + 1
    for m in range(m0, half):
        for b in range(LANES):
            zr[m, b] = 0
            zi[m, b] = 0


# --------------------------------------------------------------------- FFT
@_kernel()
def _stage2(xr, xi, yr, yi, m, ns, twr, twi, off):
    q = m // 2
    for j in range(q):
        k = j % ns
        d = (j // ns) * ns * 2 + k
        w1r = twr[off + k]
        w1i = twi[off + k]
        for b in range(LANES):
            a0r = xr[j, b]
            a0i = xi[j, b]
            ur = xr[j + q, b]
            ui = xi[j + q, b]
            a1r = ur * w1r - ui * w1i
            a1i = ur * w1i + ui * w1r
            yr[d, b] = a0r + a1r
            yi[d, b] = a0i + a1i
            yr[d + ns, b] = a0r - a1r
            yi[d + ns, b] = a0i - a1i


@_kernel()
def _stage3(xr, xi, yr, yi, m, ns, twr, twi, off):
    q = m // 3
    c = xr.dtype.type(0.8660254037844386)  # sin(2 pi / 3)
    h = xr.dtype.type(0.5)
    for j in range(q):
        k = j % ns
        d = (j // ns) * ns * 3 + k
        t = off + 2 * k
        w1r = twr[t]
        w1i = twi[t]
        w2r = twr[t + 1]
        w2i = twi[t + 1]
        for b in range(LANES):
            a0r = xr[j, b]
            a0i = xi[j, b]
            ur = xr[j + q, b]
            ui = xi[j + q, b]
            a1r = ur * w1r - ui * w1i
            a1i = ur * w1i + ui * w1r
            ur = xr[j + 2 * q, b]
            ui = xi[j + 2 * q, b]
            a2r = ur * w2r - ui * w2i
            a2i = ur * w2i + ui * w2r
            sr = a1r + a2r
            si = a1i + a2i
            dr = a1r - a2r
            di = a1i - a2i
            mr = a0r - h * sr
            mi = a0i - h * si
            yr[d, b] = a0r + sr
            yi[d, b] = a0i + si
            yr[d + ns, b] = mr + c * di
            yi[d + ns, b] = mi - c * dr
            yr[d + 2 * ns, b] = mr - c * di
            yi[d + 2 * ns, b] = mi + c * dr


@_kernel()
def _stage4(xr, xi, yr, yi, m, ns, twr, twi, off):
    q = m // 4
    for j in range(q):
        k = j % ns
        d = (j // ns) * ns * 4 + k
        t = off + 3 * k
        w1r = twr[t]
        w1i = twi[t]
        w2r = twr[t + 1]
        w2i = twi[t + 1]
        w3r = twr[t + 2]
        w3i = twi[t + 2]
        for b in range(LANES):
            a0r = xr[j, b]
            a0i = xi[j, b]
            ur = xr[j + q, b]
            ui = xi[j + q, b]
            a1r = ur * w1r - ui * w1i
            a1i = ur * w1i + ui * w1r
            ur = xr[j + 2 * q, b]
            ui = xi[j + 2 * q, b]
            a2r = ur * w2r - ui * w2i
            a2i = ur * w2i + ui * w2r
            ur = xr[j + 3 * q, b]
            ui = xi[j + 3 * q, b]
            a3r = ur * w3r - ui * w3i
            a3i = ur * w3i + ui * w3r
            t0r = a0r + a2r
            t0i = a0i + a2i
            t1r = a0r - a2r
            t1i = a0i - a2i
            t2r = a1r + a3r
            t2i = a1i + a3i
            # (a1 - a3) * (-i)
            t3r = a1i - a3i
            t3i = a3r - a1r
            yr[d, b] = t0r + t2r
            yi[d, b] = t0i + t2i
            yr[d + ns, b] = t1r + t3r
            yi[d + ns, b] = t1i + t3i
            yr[d + 2 * ns, b] = t0r - t2r
            yi[d + 2 * ns, b] = t0i - t2i
            yr[d + 3 * ns, b] = t1r - t3r
            yi[d + 3 * ns, b] = t1i - t3i


@_kernel()
def _stage5(xr, xi, yr, yi, m, ns, twr, twi, off):
    q = m // 5
    f = xr.dtype.type
    c1 = f(0.30901699437494745)  # cos(2 pi / 5)
    c2 = f(-0.8090169943749475)  # cos(4 pi / 5)
    s1 = f(0.9510565162951535)  # sin(2 pi / 5)
    s2 = f(0.5877852522924731)  # sin(4 pi / 5)
    for j in range(q):
        k = j % ns
        d = (j // ns) * ns * 5 + k
        t = off + 4 * k
        w1r = twr[t]
        w1i = twi[t]
        w2r = twr[t + 1]
        w2i = twi[t + 1]
        w3r = twr[t + 2]
        w3i = twi[t + 2]
        w4r = twr[t + 3]
        w4i = twi[t + 3]
        for b in range(LANES):
            a0r = xr[j, b]
            a0i = xi[j, b]
            ur = xr[j + q, b]
            ui = xi[j + q, b]
            a1r = ur * w1r - ui * w1i
            a1i = ur * w1i + ui * w1r
            ur = xr[j + 2 * q, b]
            ui = xi[j + 2 * q, b]
            a2r = ur * w2r - ui * w2i
            a2i = ur * w2i + ui * w2r
            ur = xr[j + 3 * q, b]
            ui = xi[j + 3 * q, b]
            a3r = ur * w3r - ui * w3i
            a3i = ur * w3i + ui * w3r
            ur = xr[j + 4 * q, b]
            ui = xi[j + 4 * q, b]
            a4r = ur * w4r - ui * w4i
            a4i = ur * w4i + ui * w4r
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
            yr[d, b] = a0r + b1r + b2r
            yi[d, b] = a0i + b1i + b2i
            yr[d + ns, b] = tar + tci
            yi[d + ns, b] = tai - tcr
            yr[d + 2 * ns, b] = tbr + tdi
            yi[d + 2 * ns, b] = tbi - tdr
            yr[d + 3 * ns, b] = tbr - tdi
            yi[d + 3 * ns, b] = tbi + tdr
            yr[d + 4 * ns, b] = tar - tci
            yi[d + 4 * ns, b] = tai + tcr


@_kernel()
def _fft_lanes(ar, ai, br, bi, m, radices, twr, twi, twoff):
    """In-lane complex FFT of ``m`` points; returns True if the result is in ``(br, bi)``."""
    ns = 1
    in_b = False
    for s in range(radices.shape[0]):
        p = radices[s]
        off = twoff[s]
        if in_b:
            xr, xi, yr, yi = br, bi, ar, ai
        else:
            xr, xi, yr, yi = ar, ai, br, bi
        if p == 4:
            _stage4(xr, xi, yr, yi, m, ns, twr, twi, off)
        elif p == 2:
            _stage2(xr, xi, yr, yi, m, ns, twr, twi, off)
        elif p == 3:
            _stage3(xr, xi, yr, yi, m, ns, twr, twi, off)
        else:
            _stage5(xr, xi, yr, yi, m, ns, twr, twi, off)
        in_b = not in_b
        ns *= p
    return in_b


@_kernel()
def _power_lanes(zr, zi, m, rtr, rti, magnitude, pw):
    """Split step of the real FFT and ``|X[k]|**2`` (or ``|X[k]|``) into ``pw[k, lane]``, k = 0..m."""
    h = zr.dtype.type(0.5)
    for k in range(m + 1):
        k1 = k if k < m else 0
        k2 = (m - k) if k > 0 else 0
        wr = rtr[k]
        wi = rti[k]
        for b in range(LANES):
            ar = zr[k1, b]
            ai = zi[k1, b]
            cr = zr[k2, b]
            ci = zi[k2, b]
            er = h * (ar + cr)
            ei = h * (ai - ci)
            orr = h * (ai + ci)
            oi = h * (cr - ar)
            xr = er + wr * orr - wi * oi
            xi = ei + wr * oi + wi * orr
            v = xr * xr + xi * xi
            pw[k, b] = np.sqrt(v) if magnitude else v


# -------------------------------------------------------------- full path
@_kernel()
def mel_block(
    x, out, t_first, t_stop, hop, flen, pad, mode, c_sig, remove_dc, c_frame, win,
    radices, twr, twi, twoff, rtr, rti, magnitude, mel_w, mel_lo, mel_hi, mel_off, floor,
):
    """Clamped Mel energies ``max(mel, floor)`` of frames ``[t_first, t_stop)`` of every signal.

    ``x`` is ``(batch, n)``; ``out`` is ``(batch, n_mels, n_frames)``.  ``win``
    already includes ``input_scale`` (every stage before the FFT is linear).
    """
    nb, n = x.shape
    n_mels = out.shape[1]
    half = rtr.shape[0] - 1
    dt = x.dtype
    fr = np.empty((flen, LANES), dt)
    ar = np.empty((half, LANES), dt)
    ai = np.empty((half, LANES), dt)
    br = np.empty((half, LANES), dt)
    bi = np.empty((half, LANES), dt)
    pw = np.empty((half + 1, LANES), dt)
    acc = np.empty(LANES, dt)
    fl = dt.type(floor)
    for s in range(nb):
        xs = x[s]
        for t0 in range(t_first, t_stop, LANES):
            count = min(LANES, t_stop - t0)
            _load_block(xs, n, t0, count, hop, flen, pad, mode, c_sig, fr)
            _condition(fr, flen, remove_dc, c_frame)
            _window_pack(fr, flen, win, half, ar, ai)
            if _fft_lanes(ar, ai, br, bi, half, radices, twr, twi, twoff):
                _power_lanes(br, bi, half, rtr, rti, magnitude, pw)
            else:
                _power_lanes(ar, ai, half, rtr, rti, magnitude, pw)
            # Band-limited Mel product while the power spectrum is in L1.
            for mm in range(n_mels):
                for b in range(LANES):
                    acc[b] = 0
                base = mel_off[mm] - mel_lo[mm]
                for k in range(mel_lo[mm], mel_hi[mm]):
                    w = mel_w[base + k]
                    for b in range(LANES):
                        acc[b] += w * pw[k, b]
                row = out[s, mm]
                if count == LANES:
                    for b in range(LANES):
                        row[t0 + b] = max(acc[b], fl)
                else:
                    for b in range(count):
                        row[t0 + b] = max(acc[b], fl)


@_kernel()
def frames_power(frames, out, radices, twr, twi, twoff, rtr, rti, magnitude):
    """Power spectrum of rows: ``frames`` ``(rows, flen)`` to ``out`` ``(rows, n_bins)``."""
    rows, flen = frames.shape
    half = rtr.shape[0] - 1
    dt = frames.dtype
    fr = np.empty((flen, LANES), dt)
    ones = np.ones(flen, dt)
    ar = np.empty((half, LANES), dt)
    ai = np.empty((half, LANES), dt)
    br = np.empty((half, LANES), dt)
    bi = np.empty((half, LANES), dt)
    pw = np.empty((half + 1, LANES), dt)
    for r0 in range(0, rows, LANES):
        count = min(LANES, rows - r0)
        for b in range(LANES):
            rb = r0 + (b if b < count else count - 1)
            for k in range(flen):
                fr[k, b] = frames[rb, k]
        _window_pack(fr, flen, ones, half, ar, ai)
        if _fft_lanes(ar, ai, br, bi, half, radices, twr, twi, twoff):
            _power_lanes(br, bi, half, rtr, rti, magnitude, pw)
        else:
            _power_lanes(ar, ai, half, rtr, rti, magnitude, pw)
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
def log_post(y, a, dyn, dynamic_range, offset, scale):
    """In place on natural logs ``y`` ``(batch, n)``: ``(max(a y, peak - dr) + offset) * scale``.

    ``a`` converts the natural log to the configured base; ``peak`` is the
    maximum of ``a y`` per batch row (one utterance).
    """
    f = y.dtype.type
    af = f(a)
    off = f(offset)
    sc = f(scale)
    for s in range(y.shape[0]):
        row = y[s]
        lo = f(-np.inf)
        if dyn:
            peak = f(-np.inf)
            for i in range(row.shape[0]):
                peak = max(peak, row[i])
            lo = f(peak * af) - f(dynamic_range)
        for i in range(row.shape[0]):
            row[i] = (max(row[i] * af, lo) + off) * sc
