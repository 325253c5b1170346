"""rANS entropy coder: round trips, engines agree, compression, tables, hostile streams."""

from __future__ import annotations

import hashlib
import sys
from importlib.resources import files

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from amser_dsp.codec import rans, rans_tables
from amser_dsp.errors import BackendUnavailableError, CodecError, CorruptContainerError

INT32 = st.integers(-(2**31), 2**31 - 1)
# Mostly small values (the common case) with escapes and int32 extremes mixed in.
SYMBOL = st.one_of(st.integers(-3, 3), st.integers(-40, 40), INT32, st.sampled_from([-(2**31), 2**31 - 1, 32, -32]))
CONTEXT = st.one_of(st.integers(rans.SCALE_INDEX_MIN, rans.SCALE_INDEX_MAX), st.just(rans.ZERO_CONTEXT))
ENGINES = ["python", pytest.param("numba", marks=pytest.mark.skipif(not rans.numba_available(), reason="no numba"))]


@st.composite
def streams(draw: st.DrawFn, max_size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(0, max_size))
    ctx = draw(hnp.arrays(np.int32, n, elements=CONTEXT))
    q = draw(hnp.arrays(np.int32, n, elements=SYMBOL))
    q[ctx == rans.ZERO_CONTEXT] = 0
    return q, ctx


def laplace_stream(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ctx = rng.integers(rans.SCALE_INDEX_MIN, rans.SCALE_INDEX_MAX + 1, n).astype(np.int32)
    return np.rint(rng.laplace(0.0, 2.0 ** (ctx / 8))).astype(np.int32), ctx


def decodes_canonically(data: bytes, ctx: np.ndarray, engine: str = "auto") -> bool:
    """True if ``data`` decodes to an array whose encoding is ``data``; False if it is rejected."""
    try:
        out = rans.decode(data, ctx, engine=engine)
    except CorruptContainerError:
        return False
    assert rans.encode(out, ctx, engine=engine) == data  # the documented guarantee
    return True


# ----------------------------------------------------------------- round trips
@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=60, deadline=None)
@given(stream=streams())
def test_round_trip(engine: str, stream: tuple[np.ndarray, np.ndarray]) -> None:
    q, ctx = stream
    data = rans.encode(q, ctx, engine=engine)
    out = rans.decode(data, ctx, engine=engine)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, q)


@settings(max_examples=60, deadline=None)
@given(stream=streams(max_size=400))
def test_engines_give_identical_bytes(stream: tuple[np.ndarray, np.ndarray]) -> None:
    if not rans.numba_available():
        pytest.skip("no numba")
    q, ctx = stream
    assert rans.encode(q, ctx, engine="numba") == rans.encode(q, ctx, engine="python")


def test_engines_agree_on_a_long_laplace_stream() -> None:
    if not rans.numba_available():
        pytest.skip("no numba")
    q, ctx = laplace_stream(20_000, seed=3)
    data = rans.encode(q, ctx, engine="numba")
    assert data == rans.encode(q, ctx, engine="python")
    np.testing.assert_array_equal(rans.decode(data, ctx, engine="python"), q)


def test_shapes_empty_and_zero_context() -> None:
    q, ctx = laplace_stream(600)
    data = rans.encode(q.reshape(20, 30), ctx.reshape(20, 30))
    assert rans.decode(data, ctx.reshape(20, 30)).shape == (20, 30)
    assert rans.encode(np.zeros(0, np.int32), np.zeros(0, np.int32)) == b""
    assert rans.decode(b"", np.zeros((0, 5), np.int32)).shape == (0, 5)
    zero = np.full(7, rans.ZERO_CONTEXT)
    assert rans.encode(np.zeros(7, np.int64), zero) == b""
    np.testing.assert_array_equal(rans.decode(b"", zero), np.zeros(7))
    # ZERO_CONTEXT symbols are skipped: the stream equals the one without them.
    mixed = ctx.copy()
    mixed[::3] = rans.ZERO_CONTEXT
    q0 = np.where(mixed == rans.ZERO_CONTEXT, 0, q)
    keep = mixed != rans.ZERO_CONTEXT
    assert rans.encode(q0, mixed) == rans.encode(q0[keep], mixed[keep])


@pytest.mark.parametrize("engine", ENGINES)
def test_all_escapes_int32_extremes(engine: str) -> None:
    # ~9 bytes per symbol: more than the encoder's first buffer guess, so the retry path runs.
    q = np.resize(np.array([-(2**31), 2**31 - 1, 32, -33], np.int64), 1000)
    ctx = np.resize(np.arange(rans.SCALE_INDEX_MIN, rans.SCALE_INDEX_MAX + 1), 1000)
    data = rans.encode(q, ctx, engine=engine)
    assert len(data) > 3 * q.size + 64
    np.testing.assert_array_equal(rans.decode(data, ctx, engine=engine), q)
    assert len(data) * 8 == pytest.approx(rans.cost_bits(q, ctx), rel=0.01)


def test_without_numba_auto_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    q, ctx = laplace_stream(500, seed=4)
    expected = rans.encode(q, ctx, engine="python")
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    rans._numba_engine.cache_clear()
    try:
        assert not rans.numba_available()
        assert rans.encode(q, ctx) == expected
        np.testing.assert_array_equal(rans.decode(expected, ctx), q)
        with pytest.raises(BackendUnavailableError):
            rans.encode(q, ctx, engine="numba")
    finally:
        rans._numba_engine.cache_clear()


def test_bad_arguments_raise_codec_error() -> None:
    q, ctx = laplace_stream(10)
    with pytest.raises(CodecError, match="ZERO_CONTEXT"):
        rans.encode(np.ones(3, np.int32), np.full(3, rans.ZERO_CONTEXT))
    with pytest.raises(CodecError, match="table indices"):
        rans.encode(q, ctx + 200)
    with pytest.raises(CodecError, match="table indices"):
        rans.decode(b"", np.array([rans.SCALE_INDEX_MIN - 1]))
    with pytest.raises(CodecError, match="int32"):
        rans.encode(np.array([2**31]), np.array([0]))
    with pytest.raises(CodecError, match="shape"):
        rans.encode(q[:5], ctx)
    with pytest.raises(CodecError, match="integer"):
        rans.encode(q.astype(np.float64), ctx)
    with pytest.raises(CodecError, match="integer"):
        rans.decode(b"", ctx.astype(np.float32))
    with pytest.raises(CodecError, match="engine"):
        rans.encode(q, ctx, engine="fortran")


# ----------------------------------------------------------------- compression
def test_compression_close_to_ideal_cost() -> None:
    q, ctx = laplace_stream(100_000, seed=1)
    data = rans.encode(q, ctx)
    ideal = rans.cost_bits(q, ctx)
    assert ideal <= len(data) * 8 <= ideal * 1.01 + 16 * 8


def test_tables_fit_the_laplace_model() -> None:
    # Cost under the tables vs the entropy of the exact discretised Laplace: the
    # integer rounding and the escape code lose little, except at the grid's tiny
    # scales where every symbol's floor of one frequency unit dominates.
    for i in (-16, 0, 8, 24, 40):
        p = rans_tables._laplace_probabilities(2.0 ** (i / 8))
        t = rans.load_tables()
        excess = float(p @ t.cost[i - rans.SCALE_INDEX_MIN]) - float(-(p * np.log2(p)).sum())
        assert 0 <= excess < 0.003


def test_cost_bits_matches_symbol_by_symbol() -> None:
    t = rans.load_tables()
    q = np.array([0, 1, -1, 31, -31, 32, -(2**31), 2**31 - 1, 0])
    ctx = np.array([0, 0, 0, 10, 10, 10, -45, 48, rans.ZERO_CONTEXT])
    expected = 0.0
    for v, c in zip(q[:-1], ctx[:-1], strict=True):
        row = t.cost[c - rans.SCALE_INDEX_MIN]
        if abs(v) <= rans.ALPHABET:
            expected += row[2 * abs(v) - (v > 0)]
        else:
            k = int(t.escape_k[c - rans.SCALE_INDEX_MIN])
            w = abs(int(v)) - rans.ALPHABET - 1 + 2**k
            expected += row[rans.ESCAPE] + 2 * w.bit_length() - k  # zeros, w, sign
    assert rans.cost_bits(q, ctx) == pytest.approx(expected)


# ----------------------------------------------------------------------- tables
def test_table_invariants() -> None:
    t = rans.load_tables()
    assert t.sha256 == rans.TABLES_SHA256
    assert t.freq.shape == (rans.N_TABLES, rans.N_SYMBOLS)
    assert (t.freq >= 1).all()
    assert (t.freq.sum(axis=1) == 2**rans.PRECISION).all()
    mags = t.freq[:, : rans.ESCAPE]
    assert (mags[:, 1::2] == mags[:, 2::2]).all()  # +k and -k alike
    by_mag = np.concatenate([mags[:, :1], mags[:, 1::2]], axis=1)
    assert (np.diff(by_mag, axis=1) <= 0).all()  # monotone in |q|
    assert (np.diff(by_mag[:, 0]) <= 0).all()  # wider scale, rarer zero
    assert pytest.approx(0.02, rel=0.05) == 2.0 ** (rans.SCALE_INDEX_MIN / 8)
    assert 2.0 ** (rans.SCALE_INDEX_MAX / 8) == 64


def test_shipped_file_is_what_the_build_script_writes() -> None:
    shipped = (files("amser_dsp.codec") / "data" / "laplace_tables_v1.npz").read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == rans.TABLES_SHA256
    rebuilt = rans_tables.build_tables()
    # Rebuilding runs libm's exp; another platform could round a frequency by one
    # unit, which is why the decoder only ever reads the shipped file.
    assert np.abs(rebuilt["freq"].astype(int) - rans.load_tables().freq).max() <= 1
    np.testing.assert_array_equal(rebuilt["escape_k"], rans.load_tables().escape_k)


def test_tampered_table_file_is_refused() -> None:
    shipped = (files("amser_dsp.codec") / "data" / "laplace_tables_v1.npz").read_bytes()
    with pytest.raises(CodecError, match="SHA-256"):
        rans._tables_from_bytes(shipped[:-1] + bytes([shipped[-1] ^ 1]), rans.TABLES_SHA256)


def test_scale_to_index() -> None:
    assert rans_tables.scale_to_index(1.0) == 0
    assert rans_tables.scale_to_index(2.0 ** (5 / 8) * 1.02) == 5
    assert rans_tables.scale_to_index(0.0) == rans.SCALE_INDEX_MIN
    assert rans_tables.scale_to_index(1e9) == rans.SCALE_INDEX_MAX
    np.testing.assert_array_equal(rans_tables.scale_to_index(np.array([0.5, 2.0])), [-8, 8])
    with pytest.raises(CodecError):
        rans_tables.scale_to_index(float("nan"))


# ----------------------------------------------------------------- hostile data
# Guarantee: decode(d) raises CorruptContainerError or returns s with
# encode(s) == d.  So no modification of a valid stream decodes to the original
# array; in practice the final-state check rejects nearly all of them.
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("escapes", [False, True])
def test_every_truncation_and_bit_flip(engine: str, escapes: bool) -> None:
    q, ctx = laplace_stream(300, seed=2)
    q[np.abs(q) > rans.ALPHABET] = 0
    if escapes:
        q[::50] = [10**6, -(2**31), 2**31 - 1, 500, -40, 77]
    data = rans.encode(q, ctx, engine=engine)
    for cut in range(len(data)):
        assert not decodes_canonically(data[:cut], ctx, engine)
    assert not decodes_canonically(data + b"\0", ctx, engine)
    rng = np.random.default_rng(0)
    flips = rng.integers(0, len(data) * 8, 300 if engine == "numba" else 100)
    rejected = 0
    for bit in flips:
        bad = bytearray(data)
        bad[bit >> 3] ^= 1 << (bit & 7)
        rejected += not decodes_canonically(bytes(bad), ctx, engine)
    # The final-state check catches nearly every flip; escape bits are raw
    # information with no redundancy, so a flip that lands on one of them (a
    # sixth of this stream's bits) may only change that value.
    assert rejected >= (0.8 if escapes else 0.95) * flips.size


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=64), stream=streams(max_size=60))
def test_random_bytes_only_raise_corrupt(engine: str, data: bytes, stream: tuple[np.ndarray, np.ndarray]) -> None:
    decodes_canonically(data, stream[1], engine)


def test_decoder_stays_in_bounds_with_huge_contexts_and_tiny_data() -> None:
    # Decoding work is bounded by contexts.size: a short stream cannot make it loop or allocate more.
    ctx = np.full(200_000, rans.SCALE_INDEX_MIN, np.int32)
    data = rans.encode(np.zeros_like(ctx), ctx)
    assert len(data) < 64
    for bad in (data[:-1], data + b"\x00", b"\x00\x80\x00\x00" * 2, b"\xff" * 8):
        with pytest.raises(CorruptContainerError):
            rans.decode(bad, ctx)
