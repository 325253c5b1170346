"""The SVD codec: rank rules, determinism, documented quantisation bounds, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import amser_dsp
from amser_dsp import CodecError
from amser_dsp.codec import SVDCodec, codec_ids, error_bound, get_codec, truncated_svd

DTYPES = ["float32", "float16", "int8"]


@st.composite
def feature_matrices(draw: st.DrawFn) -> np.ndarray:
    """Log-Mel-like matrices: low-rank structure plus noise, assorted shapes and offsets."""
    m = draw(st.integers(1, 40))
    n = draw(st.integers(1, 120))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    k = draw(st.integers(1, 6))
    x = rng.standard_normal((m, k)) @ rng.standard_normal((k, n)) * draw(st.sampled_from([0.01, 1.0, 30.0]))
    x += rng.standard_normal((m, n)) * draw(st.sampled_from([0.0, 0.1]))
    x -= draw(st.sampled_from([0.0, 10.0]))
    return x.astype(np.float32)


def reconstruction(x: np.ndarray, r: int) -> np.ndarray:
    u, _, c = truncated_svd(x)
    return u[:, :r] @ c[:r]


@given(feature_matrices(), st.sampled_from(DTYPES), st.integers(1, 40), st.sampled_from(["zlib", None]))
def test_round_trip_within_documented_bound(x: np.ndarray, dtype: str, rank: int, entropy: str | None) -> None:
    codec = SVDCodec(rank=rank, factor_dtype=dtype, entropy=entropy)
    payload = codec.encode_chunk(x)
    decoded = codec.decode_chunk(payload, *x.shape)
    u, c, us, cs = codec.decoded_factors(payload, *x.shape)
    r = u.shape[1]
    assert r == min(rank, *x.shape)
    exact = reconstruction(x, r)
    bound = error_bound(u, c, us, cs, dtype)
    # The product itself is float32: allow its rounding relative to the values' size.
    slack = 4 * np.finfo(np.float32).eps * (np.abs(u.astype(np.float64)) @ np.abs(c.astype(np.float64)))
    assert np.all(np.abs(decoded - exact) <= bound + slack + 1e-6 * np.abs(exact).max(initial=0) * (dtype == "float32"))
    assert decoded.dtype == np.float32 and decoded.shape == x.shape


@given(feature_matrices())
def test_full_rank_float32_is_lossless_to_float32_precision(x: np.ndarray) -> None:
    decoded = amser_dsp.decode(amser_dsp.encode(x, ratio=1.0, factor_dtype="float32"))
    scale = max(float(np.abs(x).max()), 1e-30)
    assert np.abs(decoded - x).max() <= 1e-5 * scale


@given(feature_matrices(), st.floats(0.05, 1.0))
def test_energy_rule_keeps_at_least_the_fraction(x: np.ndarray, e: float) -> None:
    codec = SVDCodec(energy=e, factor_dtype="float32")
    u, _ = codec.factorise(x)
    _, energy, _ = truncated_svd(x)
    total = energy.sum()
    if total > 0:
        assert energy[: u.shape[1]].sum() >= e * total * (1 - 1e-9)
        # ...and is the smallest such rank.
        assert u.shape[1] == 1 or energy[: u.shape[1] - 1].sum() < e * total


def test_ratio_rule_is_the_papers_r_over_k(sample_audio: np.ndarray) -> None:
    f = amser_dsp.features(sample_audio, 16000, "amser")
    assert amser_dsp.inspect(amser_dsp.encode(f, ratio=0.125)).ranks == [10]
    assert amser_dsp.inspect(amser_dsp.encode(f)).ranks == [10]  # the default is the paper's point
    assert amser_dsp.inspect(amser_dsp.encode(f, rank=3)).ranks == [3]


def test_equal_input_gives_equal_bytes_and_signs_are_fixed(rng: np.random.Generator) -> None:
    x = rng.standard_normal((80, 300)).astype(np.float32)
    assert amser_dsp.encode(x, rank=8) == amser_dsp.encode(x.copy(), rank=8)
    u, _, _ = truncated_svd(x)
    pivots = np.abs(u).argmax(axis=0)
    assert np.all(u[pivots, np.arange(u.shape[1])] > 0)


def test_sizes_shrink_with_precision(sample_audio: np.ndarray) -> None:
    f = amser_dsp.features(sample_audio, 16000, "amser")
    sizes = [len(amser_dsp.encode(f, rank=10, factor_dtype=d)) for d in DTYPES]
    assert sizes[0] > sizes[1] > sizes[2]
    raw = len(amser_dsp.encode(f, rank=10, factor_dtype="int8", entropy=None))
    assert sizes[2] < raw
    # Header and framing are small next to the factors.
    info = amser_dsp.inspect(amser_dsp.encode(f, rank=10, factor_dtype="float32", entropy=None))
    assert info.payload_bytes >= 4 * 10 * (80 + f.shape[1])
    assert info.total_bytes - info.payload_bytes < 500


def test_zero_frames_and_zero_matrix() -> None:
    empty = np.zeros((80, 0), np.float32)
    assert amser_dsp.decode(amser_dsp.encode(empty)).shape == (80, 0)
    zeros = np.zeros((5, 7), np.float32)
    np.testing.assert_array_equal(amser_dsp.decode(amser_dsp.encode(zeros, factor_dtype="int8")), zeros)


def test_codec_config_round_trip_and_registry() -> None:
    assert "svd" in codec_ids()
    for kwargs in ({"rank": 4}, {"ratio": 0.5}, {"energy": 0.9, "factor_dtype": "int8", "entropy": None}):
        codec = SVDCodec(**kwargs)
        assert get_codec(codec.get_config()) == codec
    with pytest.raises(CodecError, match="unknown codec id 'nope'"):
        get_codec({"id": "nope"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0}, r"rank=0 is invalid: expected a positive integer"),
        ({"rank": 2.5}, r"rank=2.5 is invalid"),
        ({"ratio": 1.5}, r"ratio=1.5 is invalid: expected a number in \(0, 1\]"),
        ({"energy": 0.0}, r"energy=0.0 is invalid"),
        ({"rank": 3, "energy": 0.5}, r"at most one of rank, ratio, energy; got rank, energy"),
        ({"factor_dtype": "int4"}, r"factor_dtype='int4' is invalid: expected one of"),
        ({"entropy": "brotli"}, r"entropy='brotli' is invalid"),
        ({"chunk_frames": 0}, r"chunk_frames=0 is invalid"),
        ({"config": "whisper"}, r"features have 5 Mel bands but the config has n_mels=80"),
    ],
)
def test_bad_parameters_raise_codec_error(kwargs: dict, match: str) -> None:
    x = np.ones((5, 10), np.float32)
    with pytest.raises(CodecError, match=match):
        amser_dsp.encode(x, **kwargs)


@pytest.mark.parametrize(
    ("features", "match"),
    [
        (np.ones(10, np.float32), r"shape \(10,\); expected a 2-D \(n_mels, n_frames\)"),
        (np.array([[1.0, np.nan]]), "NaN or infinite"),
        (np.array([["a"]]), "dtype <U1; expected a real floating-point"),
    ],
)
def test_bad_features_raise_codec_error(features: np.ndarray, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        amser_dsp.encode(features)


def test_zstd_error_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(amser_dsp.BackendUnavailableError, match="zstandard"):
        amser_dsp.encode(np.ones((3, 3), np.float32), entropy="zstd")


def test_encoded_object_keeps_config_and_header(sample_audio: np.ndarray) -> None:
    f = amser_dsp.features(sample_audio, 16000, "whisper")
    enc = amser_dsp.decode_container(amser_dsp.encode(f, config="whisper", chunk_frames=100))
    assert enc.config == amser_dsp.get_preset("whisper")
    assert enc.header["codec"]["id"] == "svd"
    assert enc.features.shape == f.shape
    info = amser_dsp.inspect(amser_dsp.encode(f, config="whisper", chunk_frames=100))
    assert info.n_chunks == 4 and info.n_frames == f.shape[1] and info.sample_rate == 16000
    assert info.kbps is not None and 0 < info.pcm_percent < 20
