"""Static rANS entropy coder with shipped discretised-Laplace tables.

Each signed integer symbol ``q`` is coded with one of :data:`N_TABLES` fixed
frequency tables, chosen per symbol by an integer *context*: the index ``i`` of
the table's Laplace scale ``s_i = 2 ** (i / 8)`` (in quantiser steps), with
``SCALE_INDEX_MIN <= i <= SCALE_INDEX_MAX`` (``s`` from about 0.02 to 64).  The
grid ratio ``2 ** (1/8)`` is the quantiser step ratio of
:mod:`amser_dsp.codec.kltdct`, so the context of a coefficient is an integer
difference of two indices and no float is involved in choosing a table.

Alphabet: ``-ALPHABET .. ALPHABET`` plus an ESCAPE symbol for ``|q| > ALPHABET``;
an escaped value follows its ESCAPE as bypass bits (the Exp-Golomb code, of a
per-table order, of ``|q| - ALPHABET - 1``, then a sign bit), so every int32
value round-trips.  The bypass bits are coded as equiprobable rANS pieces on
the same state (exactly one bit each, the cost of a separate raw stream), so
there is a single stream whose end and final states are checked; raw bits
carry no redundancy, though, so a flip that lands on an escape's information
bits may only change that value.  The special context
:data:`ZERO_CONTEXT` marks symbols that are always zero (e.g. coefficients a
rate controller drops): they cost nothing and both coder loops skip them.

Tables are built once by ``python -m amser_dsp.codec.rans_tables --build-tables`` and
shipped in ``data/laplace_tables_v1.npz`` (integer arrays only; SHA-256 checked
on load against :data:`TABLES_SHA256`).  The decoder runs on other machines
than the encoder, so nothing here is ever recomputed from floats at run time.

Stream layout (``encode`` output), for ``n`` coded (non-zero-context) symbols::

    n == 0:  empty
    n  > 0:  state0 (u32 big-endian) | state1 (u32 big-endian) | renormalisation bytes

Two interleaved rANS states (coded symbol ``j`` uses state ``j & 1``) in the
byte-wise layout of ryg_rans: states live in ``[2**23, 2**31)``, precision
:data:`PRECISION` bits, the encoder starts and the decoder must end at
``2**23``, and the last symbol must end the data exactly.

Guarantee: :func:`decode` returns an array only if re-encoding it gives back
exactly the input bytes (every decoder step is the inverse of one encoder step
on the same state interval, and the final states, the end of data and the
escaped values' range are checked).  Any change to a valid stream therefore
raises :class:`~amser_dsp.errors.CorruptContainerError` or decodes to a
different array; in practice the final-state check (two 31-bit states) catches
nearly all damage (tested: every truncation; measured: 99.97 % of single-bit
flips in Laplace streams without escapes, ~90 % in a stream where a sixth of
the bits are escaped int32 extremes).
Decoding is bounded: one pass over the symbols, at most three byte reads per
rANS step and at most 36 steps per escape; memory is ``O(contexts.size + len(data))``.

Speed: a Numba kernel (optional extra ``amser-dsp[numba]``, imported on first
use, compiled with ``cache=True, nogil=True``) and a pure-Python fallback run
the *same* loop source (:func:`_encode_loop`, :func:`_decode_loop`), so their
outputs are identical by construction (and tested).  Measured with
``PYTHONPATH=src python benchmarks/rans_speed.py``.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Callable
from importlib.resources import files
from typing import Any, NamedTuple

import numpy as np

from ..errors import BackendUnavailableError, CodecError, CorruptContainerError

#: The coding loops' integer vectors: NumPy arrays when Numba compiles them, lists in plain Python.
_Ints = np.ndarray | list[int]

__all__ = [
    "ALPHABET",
    "ESCAPE",
    "N_SYMBOLS",
    "N_TABLES",
    "PRECISION",
    "SCALE_INDEX_MAX",
    "SCALE_INDEX_MIN",
    "SCALE_STEPS_PER_OCTAVE",
    "TABLES_SHA256",
    "TABLE_VERSION",
    "ZERO_CONTEXT",
    "LaplaceTables",
    "cost_bits",
    "decode",
    "encode",
    "load_tables",
    "numba_available",
]

#: Version of the shipped table file; bump with a new file, keep old ones readable.
TABLE_VERSION = 1
#: Frequencies of every table sum to ``2 ** PRECISION``.
PRECISION = 16
#: Largest magnitude coded directly; larger ones go through ESCAPE.
ALPHABET = 31
#: Symbols per table: ``2 * ALPHABET + 1`` values plus ESCAPE.
N_SYMBOLS = 2 * ALPHABET + 2
#: Rank of the ESCAPE symbol (ranks order values 0, +1, -1, +2, -2, ...).
ESCAPE = N_SYMBOLS - 1
#: Table ``i`` has Laplace scale ``2 ** (i / SCALE_STEPS_PER_OCTAVE)`` quantiser steps.
SCALE_STEPS_PER_OCTAVE = 8
#: Smallest table index (scale 2 ** (-45/8) = 0.0203).
SCALE_INDEX_MIN = -45
#: Largest table index (scale 2 ** 6 = 64).
SCALE_INDEX_MAX = 48
N_TABLES = SCALE_INDEX_MAX - SCALE_INDEX_MIN + 1
#: Context of a symbol that is always zero: not coded, costs nothing.
ZERO_CONTEXT = -32768
#: SHA-256 of ``data/laplace_tables_v1.npz``.
TABLES_SHA256 = "df15ab9b18efeb149bca24fa7de01b9df509da078e0f8e0edf3a6cb385866787"

_TABLE_FILE = f"laplace_tables_v{TABLE_VERSION}.npz"
_RANS_L = 1 << 23  # lower end of the state interval [L, 256 L)
_BUCKET_BITS = 8  # decoder lookup: first rank of each of 256 slot buckets
_BUCKET_SHIFT = PRECISION - _BUCKET_BITS
_MAX_ESCAPE_BITS = 32  # Exp-Golomb value w = m + 2**k < 2**32 for every int32 input
_INT32_MAGNITUDE = 1 << 31

# Error codes of the loops (Numba cannot raise our exception classes).
_ERR_TRUNCATED = -1
_ERR_STATE = -2
_ERR_ESCAPE = -3
_ERR_TRAILING = -4
_ERRORS: dict[int, str] = {
    _ERR_TRUNCATED: "the stream ends early",
    _ERR_STATE: "a rANS state is out of range or does not end where encoding starts",
    _ERR_ESCAPE: "an escaped value is outside the int32 range",
    _ERR_TRAILING: "trailing bytes after the last symbol",
}


# -------------------------------------------------------------------- tables
class LaplaceTables(NamedTuple):
    """Integer tables derived from the shipped file (all read-only).

    Attributes
    ----------
    freq : ndarray of int64, (N_TABLES, N_SYMBOLS)
        Symbol frequencies by rank, each >= 1, each row summing to ``2 ** PRECISION``.
    cum : ndarray of int64, (N_TABLES, N_SYMBOLS + 1)
        Cumulative frequencies (row starts at 0, ends at ``2 ** PRECISION``).
    escape_k : ndarray of int64, (N_TABLES,)
        Exp-Golomb order of each table's escaped magnitudes.
    bucket : ndarray of int64, (N_TABLES, 2 ** 8)
        Rank of the symbol holding the first slot of each bucket (decoder start point).
    cost : ndarray of float64, (N_TABLES, N_SYMBOLS)
        ``-log2(freq / 2 ** PRECISION)`` (for :func:`cost_bits` only, never for coding).
    sha256 : str
        Digest of the table file.
    """

    freq: np.ndarray
    cum: np.ndarray
    escape_k: np.ndarray
    bucket: np.ndarray
    cost: np.ndarray
    sha256: str


def _exp_golomb_bits(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Length of the order-``k`` Exp-Golomb code of ``m >= 0`` (int64 arrays)."""
    w = m + (np.int64(1) << k)
    nbits = _bit_length(w)
    return 2 * nbits - k - 1


def _bit_length(w: np.ndarray) -> np.ndarray:
    # Exact for w < 2**53 (int64 -> float64 is exact there; log2 is not needed).
    _, e = np.frexp(w.astype(np.float64))
    return e.astype(np.int64)


def _tables_from_bytes(data: bytes, expected_sha256: str | None) -> LaplaceTables:
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        raise CodecError(f"entropy table file {_TABLE_FILE} has SHA-256 {sha}, expected {expected_sha256}")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        params, freq, escape_k = z["params"], z["freq"].astype(np.int64), z["escape_k"].astype(np.int64)
    expected = [TABLE_VERSION, PRECISION, ALPHABET, SCALE_STEPS_PER_OCTAVE]
    if params.tolist() != expected or freq.shape != (N_TABLES, N_SYMBOLS):
        raise CodecError(f"entropy table file {_TABLE_FILE} does not match this code version")
    cum = np.zeros((N_TABLES, N_SYMBOLS + 1), dtype=np.int64)
    np.cumsum(freq, axis=1, out=cum[:, 1:])
    # bucket[t, b]: the rank whose interval holds slot b << _BUCKET_SHIFT.
    starts = np.arange(1 << _BUCKET_BITS, dtype=np.int64) << _BUCKET_SHIFT
    bucket = np.stack([np.searchsorted(row, starts, side="right") - 1 for row in cum]).astype(np.int64)
    cost = PRECISION - np.log2(freq.astype(np.float64))
    for arr in (freq, cum, escape_k, bucket, cost):
        arr.flags.writeable = False
    return LaplaceTables(freq, cum, escape_k, bucket, cost, sha)


@functools.cache
def load_tables() -> LaplaceTables:
    """The shipped tables (cached); raises CodecError if the file is missing or altered."""
    resource = files(__package__) / "data" / _TABLE_FILE
    if not resource.is_file():
        raise CodecError(f"entropy table file {_TABLE_FILE} is missing from the amser_dsp package")
    return _tables_from_bytes(resource.read_bytes(), TABLES_SHA256)


# --------------------------------------------------------------------- loops
# Written once for both engines: Numba compiles them over NumPy arrays, the
# fallback runs them over Python lists / bytearray.  Only integer operations
# whose results agree between int64 and Python ints (values stay < 2**48).
#
# An escaped value is coded, after its ESCAPE symbol and on the same state, as
# uniform raw pieces (a piece of ``nb`` bits has frequency ``2**(PRECISION - nb)``,
# so it costs exactly ``nb`` bits): the Exp-Golomb code of order ``k`` of
# ``m = |q| - ALPHABET - 1`` (``z`` zero bits, a one, then the ``z + k`` bits of
# ``w = m + 2**k`` below its leading one, in pieces of at most 16 bits) and a
# sign bit.  Keeping these bits inside the rANS states (rather than in a
# separate raw stream) lets the final-state check catch damage to them too.
def _encode_loop(tab: _Ints, value: _Ints, freq: _Ints, cum: _Ints, escape_k: _Ints, out: _Ints | bytearray) -> int:
    """Encode backwards into ``out`` (filled from its end); returns the first used index, -1 if full."""
    n = len(tab)
    pos = len(out)
    x0 = _RANS_L
    x1 = _RANS_L
    for i in range(n - 1, -1, -1):
        x = x1 if i & 1 else x0
        t = tab[i]
        v = value[i]
        negative = 1 if v < 0 else 0
        mag = -v if negative else v
        r = 2 * mag - 1 + negative  # ranks: 0, +1, -1, +2, -2, ...
        if mag == 0:
            r = 0
        elif mag > ALPHABET:
            r = ESCAPE
            k = escape_k[t]
            w = mag - (ALPHABET + 1) + (1 << k)
            nbits = 0
            while (w >> nbits) > 0:
                nbits += 1
            z = nbits - k - 1
            nlow = nbits - 1
            n_chunks = (nlow + 15) >> 4
            # rANS is LIFO: pieces go in reverse decoding order: sign, chunks of
            # w from the bottom (16 bits, the top one shorter), the one, z zeros.
            for p in range(z + n_chunks + 2):
                nb = 1
                pv = 0
                if p == 0:
                    pv = negative
                elif p <= n_chunks:
                    sh = 16 * (p - 1)
                    nb = min(16, nlow - sh)
                    pv = (w >> sh) & ((1 << nb) - 1)
                elif p == n_chunks + 1:
                    pv = 1
                f = 1 << (PRECISION - nb)
                x_max = f << (31 - PRECISION)
                while x >= x_max:
                    if pos == 0:
                        return -1
                    pos -= 1
                    out[pos] = x & 0xFF
                    x >>= 8
                x = ((x // f) << PRECISION) + (x % f) + pv * f
        j = t * N_SYMBOLS + r
        f = freq[j]
        x_max = f << (31 - PRECISION)
        while x >= x_max:
            if pos == 0:
                return -1
            pos -= 1
            out[pos] = x & 0xFF
            x >>= 8
        x = ((x // f) << PRECISION) + (x % f) + cum[t * (N_SYMBOLS + 1) + r]
        if i & 1:
            x1 = x
        else:
            x0 = x
    if pos < 8:
        return -1
    for x in (x1, x0):  # big-endian, state0 first in the stream
        for _ in range(4):
            pos -= 1
            out[pos] = x & 0xFF
            x >>= 8
    return pos


def _decode_loop(tab: _Ints, data: _Ints | bytes, cum: _Ints, bucket: _Ints, escape_k: _Ints, out: _Ints) -> int:
    """Decode ``len(tab)`` values into ``out``; returns 0 or an error code."""
    n = len(tab)
    end = len(data)
    if end < 8:
        return _ERR_TRUNCATED
    x0 = 0
    x1 = 0
    for b in range(4):
        x0 = (x0 << 8) | data[b]
        x1 = (x1 << 8) | data[4 + b]
    if x0 < _RANS_L or x0 >= _RANS_L << 8 or x1 < _RANS_L or x1 >= _RANS_L << 8:
        return _ERR_STATE
    pos = 8
    mask = (1 << PRECISION) - 1
    for i in range(n):
        x = x1 if i & 1 else x0
        t = tab[i]
        slot = x & mask
        base = t * (N_SYMBOLS + 1)
        r = bucket[(t << _BUCKET_BITS) + (slot >> _BUCKET_SHIFT)]
        while cum[base + r + 1] <= slot:  # ends: the last cum is 2**PRECISION > slot
            r += 1
        c = cum[base + r]
        x = (cum[base + r + 1] - c) * (x >> PRECISION) + slot - c
        while x < _RANS_L:  # at most three reads: x >= 128 here
            if pos >= end:
                return _ERR_TRUNCATED
            x = (x << 8) | data[pos]
            pos += 1
        if r != ESCAPE:
            out[i] = (r + 1) >> 1 if r & 1 else -(r >> 1)
        else:
            k = escape_k[t]
            z = 0
            w = 1
            rem = -1  # bits of w still to read; -1 while reading the unary prefix
            while True:  # at most 32 + 2 + 2 pieces: z + k < 32 is checked
                nb = ((rem - 1) & 15) + 1 if rem > 0 else 1  # the top chunk is the short one
                f = 1 << (PRECISION - nb)
                slot = x & mask
                pv = slot >> (PRECISION - nb)
                x = f * (x >> PRECISION) + slot - pv * f
                while x < _RANS_L:
                    if pos >= end:
                        return _ERR_TRUNCATED
                    x = (x << 8) | data[pos]
                    pos += 1
                if rem < 0:
                    if pv:
                        rem = z + k
                    else:
                        z += 1
                        if z + k >= _MAX_ESCAPE_BITS:
                            return _ERR_ESCAPE
                elif rem > 0:
                    w = (w << nb) | pv
                    rem -= nb
                else:
                    mag = w - (1 << k) + ALPHABET + 1
                    if mag > _INT32_MAGNITUDE or (mag == _INT32_MAGNITUDE and pv == 0):
                        return _ERR_ESCAPE
                    out[i] = -mag if pv else mag
                    break
        if i & 1:
            x1 = x
        else:
            x0 = x
    if x0 != _RANS_L or x1 != _RANS_L:
        return _ERR_STATE
    if pos != end:
        return _ERR_TRAILING
    return 0


class _Engine(NamedTuple):
    encode_loop: Callable[..., int]
    decode_loop: Callable[..., int]
    native: bool  # loops take NumPy arrays (Numba) rather than lists


_PYTHON = _Engine(_encode_loop, _decode_loop, native=False)


@functools.cache
def _numba_engine() -> _Engine | None:
    try:
        import numba
    except ImportError:
        return None
    jit = numba.njit(cache=True, nogil=True, boundscheck=False)
    return _Engine(jit(_encode_loop), jit(_decode_loop), native=True)


def numba_available() -> bool:
    """Whether the Numba engine can be used (the ``numba`` extra is installed)."""
    return _numba_engine() is not None


def _engine(engine: str) -> _Engine:
    if engine == "python":
        return _PYTHON
    if engine not in ("auto", "numba"):
        raise CodecError(f"engine must be 'auto', 'numba' or 'python', got {engine!r}")
    native = _numba_engine()
    if native is None:
        if engine == "numba":
            raise BackendUnavailableError("the numba engine needs the optional extra: pip install 'amser-dsp[numba]'")
        return _PYTHON
    return native


@functools.cache
def _python_tables() -> tuple[list[int], list[int], list[int], list[int]]:
    t = load_tables()
    return t.freq.ravel().tolist(), t.cum.ravel().tolist(), t.bucket.ravel().tolist(), t.escape_k.tolist()


# ----------------------------------------------------------------------- API
def _check_contexts(contexts: Any) -> tuple[np.ndarray | None, np.ndarray]:
    """Flat contexts -> (mask of coded symbols or None if all are, table rows of the coded symbols)."""
    c = np.asarray(contexts)
    if c.dtype.kind not in "iu":
        raise CodecError(f"contexts must be an integer array, got dtype {c.dtype}")
    c = c.ravel()
    if c.size == 0 or (c.min() >= SCALE_INDEX_MIN and c.max() <= SCALE_INDEX_MAX):
        return None, np.subtract(c, SCALE_INDEX_MIN, dtype=np.int64)  # fast path: one pass, no compaction
    coded = c != ZERO_CONTEXT
    tab = np.subtract(c[coded], SCALE_INDEX_MIN, dtype=np.int64)
    if tab.size and (tab.min() < 0 or tab.max() >= N_TABLES):
        raise CodecError(
            f"contexts must be table indices {SCALE_INDEX_MIN}..{SCALE_INDEX_MAX} or ZERO_CONTEXT ({ZERO_CONTEXT}); "
            f"got values from {int(c[coded].min())} to {int(c[coded].max())}"
        )
    return coded, tab


def _check_symbols(symbols: Any, contexts: Any) -> np.ndarray:
    """Flat symbols as int32 or int64 (values checked to fit int32)."""
    q = np.asarray(symbols)
    if q.dtype.kind not in "iu":
        raise CodecError(f"symbols must be an integer array, got dtype {q.dtype}")
    if q.shape != np.shape(contexts):
        raise CodecError(f"symbols have shape {q.shape} but contexts have shape {np.shape(contexts)}")
    q = q.ravel()
    if q.dtype == np.int32:
        return q
    if q.size and (q.min() < -_INT32_MAGNITUDE or q.max() > _INT32_MAGNITUDE - 1):
        raise CodecError("symbols must fit in int32")
    return q.astype(np.int64)


# Rank of each value -ALPHABET-1 .. ALPHABET+1 (the ends stand for every escaped value).
_RANK_OF = np.array([ESCAPE, *(2 * abs(v) - (v > 0) for v in range(-ALPHABET, ALPHABET + 1)), ESCAPE], dtype=np.intp)


def _ranks(q: np.ndarray) -> np.ndarray:
    """Symbol rank of each value: ``2|q| - (q > 0)``, or ESCAPE beyond the alphabet (a table lookup)."""
    return _RANK_OF[np.clip(q, -ALPHABET - 1, ALPHABET + 1) + (ALPHABET + 1)]


def encode(symbols: np.ndarray, contexts: np.ndarray, *, engine: str = "auto") -> bytes:
    """Entropy-code integer symbols, each with the table its context names.

    Parameters
    ----------
    symbols : ndarray of int
        Values to code; any shape, any integer dtype with values in int32 range.
    contexts : ndarray of int
        Same shape: per symbol a table index ``SCALE_INDEX_MIN .. SCALE_INDEX_MAX``
        (Laplace scale ``2 ** (i / 8)`` quantiser steps) or :data:`ZERO_CONTEXT`
        (the symbol must be 0 and is not coded).  Callers with indices outside
        the grid clip them first (``np.clip``): it is lossless, only less compact.
    engine : {"auto", "numba", "python"}
        Loop implementation; outputs are identical.  "auto" uses Numba when installed.

    Returns
    -------
    bytes
        The stream (layout in the module docstring); empty when nothing is coded.

    Raises
    ------
    CodecError
        Non-integer or out-of-range symbols or contexts, mismatched shapes, or a
        non-zero symbol under ZERO_CONTEXT.
    """
    coded, tab = _check_contexts(contexts)
    q = _check_symbols(symbols, contexts)
    if coded is not None:
        if np.any(q[~coded]):
            raise CodecError("a symbol whose context is ZERO_CONTEXT is not zero")
        q = q[coded]
    if q.size == 0:
        return b""
    tables = load_tables()
    eng = _engine(engine)
    # Renormalisation emits <= 2 bytes per rANS step; an escape takes <= 37 steps.
    # Escapes are rare, so try a small buffer first and the worst case if it fills.
    for capacity in (3 * q.size + 64, 74 * q.size + 8):
        out = np.empty(capacity, dtype=np.uint8)
        if eng.native:
            # int64: negating int32's minimum would overflow in the compiled loop.
            start = eng.encode_loop(
                tab, q.astype(np.int64, copy=False), tables.freq.ravel(), tables.cum.ravel(), tables.escape_k, out
            )
            if start >= 0:
                return out[start:].tobytes()
        else:
            freq, cum, _, escape_k = _python_tables()
            buf = bytearray(capacity)
            start = eng.encode_loop(tab.tolist(), q.tolist(), freq, cum, escape_k, buf)
            if start >= 0:
                return bytes(buf[start:])
    raise AssertionError("unreachable: the second buffer has the worst-case size")


def decode(data: bytes, contexts: np.ndarray, *, engine: str = "auto") -> np.ndarray:
    """Invert :func:`encode` given the same contexts.

    Parameters
    ----------
    data : bytes
        A stream from :func:`encode`.
    contexts : ndarray of int
        The contexts used to encode it; their shape and size give the output's.
    engine : {"auto", "numba", "python"}
        Loop implementation; results are identical.

    Returns
    -------
    ndarray of int32
        The symbols, shaped like ``contexts``.

    Raises
    ------
    CodecError
        Invalid contexts (a caller error, not damage).
    CorruptContainerError
        The data is not exactly a stream :func:`encode` produces for these
        contexts: truncated, trailing bytes, wrong final state, bad escape codes.
    """
    coded, tab = _check_contexts(contexts)
    shape = np.shape(contexts)
    buf = bytes(data)
    if tab.size == 0:
        if buf:
            raise CorruptContainerError(f"entropy-coded stream has {len(buf)} bytes but no symbol is coded")
        return np.zeros(shape, dtype=np.int32)
    tables = load_tables()
    eng = _engine(engine)
    if eng.native:
        values = np.empty(tab.size, dtype=np.int32)
        status = eng.decode_loop(
            tab, np.frombuffer(buf, dtype=np.uint8), tables.cum.ravel(), tables.bucket.ravel(), tables.escape_k, values
        )
    else:
        _, cum, bucket, escape_k = _python_tables()
        value_list = [0] * tab.size
        status = eng.decode_loop(tab.tolist(), buf, cum, bucket, escape_k, value_list)
        values = np.array(value_list, dtype=np.int32)
    if status < 0:
        raise CorruptContainerError(f"entropy-coded stream is corrupt: {_ERRORS[status]}")
    if coded is None:
        return values.reshape(shape)
    out = np.zeros(coded.size, dtype=np.int32)
    out[coded] = values
    return out.reshape(shape)


def cost_bits(symbols: np.ndarray, contexts: np.ndarray) -> float:
    """Ideal code length in bits of :func:`encode`'s output (for rate control).

    ``-log2 p`` of every coded symbol under its table plus the exact escape
    bits.  The real stream is longer by the 8 bytes of final states and a
    small rounding overhead (well under 1 % on long streams).
    """
    coded, tab = _check_contexts(contexts)
    q = _check_symbols(symbols, contexts)
    q = q if coded is None else q[coded]
    tables = load_tables()
    rank = _ranks(q)
    bits = float(tables.cost.ravel()[tab * N_SYMBOLS + rank].sum())
    esc = rank == ESCAPE
    if esc.any():
        k = tables.escape_k[tab[esc]]
        bits += float((_exp_golomb_bits(np.abs(q[esc].astype(np.int64)) - (ALPHABET + 1), k) + 1).sum())
    return bits
