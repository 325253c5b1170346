"""SVD and raw codecs: round trips within documented bounds, rank selection, sizes, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import amser_dsp
from amser_dsp import CodecError, UnsupportedVersionError, decode, encode, inspect
from amser_dsp.codec import SvdCodec, codec_from_config, registered
from amser_dsp.codec.svd import choose_rank, singular_values, truncated_svd

feature_matrices = st.tuples(st.integers(1, 40), st.integers(1, 120)).flatmap(
    lambda shape: hnp.arrays(np.float32, shape, elements=st.floats(-30, 30, width=32))
)


def rank_r(x: np.ndarray, r: int) -> np.ndarray:
    u, s, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    return (u[:, :r] * s[:r]) @ vt[:r]


def int8_bound(x: np.ndarray, r: int) -> np.ndarray:
    """The documented int8 bound: sum_k (a_k |C[k,t]| + b_k |U[i,k]| + a_k b_k / 2) / 2, plus float32 slack."""
    u, _, c = truncated_svd(x, r)
    a = np.abs(u).max(axis=0) / 127
    b = np.abs(c).max(axis=1) / 127
    bound = (a[None, :] @ np.abs(c) + np.abs(u) @ b[:, None] + (a * b).sum() / 2) / 2
    return bound + 1e-4 * (1 + np.abs(x).max())


@given(x=feature_matrices, data=st.data())
def test_round_trip_within_dtype_bounds(x: np.ndarray, data: st.DataObject) -> None:
    r = data.draw(st.integers(1, min(x.shape)))
    ref = rank_r(x, r)
    scale = 1 + np.abs(x).max()
    out32 = decode(encode(x, rank=r, factor_dtype="float32"))
    assert out32.shape == x.shape and out32.dtype == np.float32
    # float32 rank-r: float32 rounding of the factorisation only (and ties between equal singular values).
    s = singular_values(x)
    if r == min(x.shape) or s[r - 1] - s[r] > 1e-3 * scale:
        np.testing.assert_allclose(out32, ref, atol=2e-4 * scale * np.sqrt(min(x.shape)))
    u, _, c = truncated_svd(x, r)
    out16 = decode(encode(x, rank=r, factor_dtype="float16"))
    f16 = (np.abs(u) @ np.abs(c)) * 2**-10 + 1e-4 * scale
    assert np.all(np.abs(out16 - u @ c) <= f16)
    out8 = decode(encode(x, rank=r, factor_dtype="int8"))
    assert np.all(np.abs(out8 - u @ c) <= int8_bound(x, r))


@given(x=feature_matrices)
def test_full_rank_float32_is_lossless(x: np.ndarray) -> None:
    out = decode(encode(x, rank=min(x.shape), factor_dtype="float32", entropy=None))
    np.testing.assert_allclose(out, x, atol=1e-5 * (1 + np.abs(x).max()) * np.sqrt(x.shape[0]))


@given(x=feature_matrices, e=st.floats(0.05, 1.0))
def test_energy_keeps_at_least_e(x: np.ndarray, e: float) -> None:
    r = choose_rank(x, rank=None, ratio=None, energy=e)
    power = singular_values(x) ** 2
    if power.sum() > 0:
        assert power[:r].sum() >= (e - 1e-9) * power.sum()
        if r > 1:
            assert power[: r - 1].sum() < e * power.sum() + 1e-6 * power.sum()


@pytest.mark.parametrize(
    ("ratio", "k", "r"), [(0.125, 80, 10), (0.1, 80, 8), (1.0, 80, 80), (0.01, 80, 1), (0.125, 30, 4)]
)
def test_ratio_is_the_papers_r_over_k(ratio: float, k: int, r: int) -> None:
    x = (
        np.random.default_rng(0).standard_normal((80, 200))[:, :k]
        if k < 80
        else np.random.default_rng(0).standard_normal((80, 200))
    )
    assert choose_rank(x, rank=None, ratio=ratio, energy=None) == r


def test_deterministic_bytes(sample_audio: np.ndarray) -> None:
    f = amser_dsp.features(sample_audio, 16000, "whisper")
    assert encode(f, ratio=0.125, config="whisper") == encode(f.copy(), ratio=0.125, config="whisper")
    assert encode(f, ratio=0.125) != encode(-f, ratio=0.125)


def test_header_carries_config_and_codec(sample_audio: np.ndarray) -> None:
    f = amser_dsp.features(sample_audio, 16000, "kaldi")
    info = inspect(encode(f, rank=12, factor_dtype="int8", config="kaldi"))
    assert info.config == amser_dsp.get_preset("kaldi")
    assert info.codec == {
        "codec": "svd",
        "rank": 12,
        "ratio": None,
        "energy": None,
        "factor_dtype": "int8",
        "entropy": "zlib",
    }
    assert info.n_frames == f.shape[1] and info.n_chunks == 1
    assert info.header_bytes < 80  # presets compress against the format's dictionary
    custom = amser_dsp.get_preset("amser").replace(n_mels=40, f_min=100.0)
    f40 = amser_dsp.features(sample_audio, 16000, custom)
    assert amser_dsp.decode_container(encode(f40, rank=5, config=custom)).config == custom


def test_chunks_are_factorised_separately(sample_audio: np.ndarray) -> None:
    f = amser_dsp.features(sample_audio, 16000, "amser")
    blob = encode(f, rank=80, factor_dtype="float32", chunk_frames=100)
    assert inspect(blob).n_chunks == -(-f.shape[1] // 100)
    np.testing.assert_allclose(decode(blob), f, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_raw_codec(sample_audio: np.ndarray, dtype: str) -> None:
    f = amser_dsp.features(sample_audio, 16000, "whisper")
    out = decode(encode(f, codec={"codec": "raw", "dtype": dtype}))
    np.testing.assert_allclose(out, f, rtol=2**-11 if dtype == "float16" else 0, atol=0)


def test_zstd_entropy(sample_audio: np.ndarray) -> None:
    pytest.importorskip("zstandard")
    f = amser_dsp.features(sample_audio, 16000, "whisper")
    np.testing.assert_array_equal(decode(encode(f, rank=10, entropy="zstd")), decode(encode(f, rank=10, entropy=None)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(rank=0), "rank=0"),
        (dict(rank=2.5), "rank=2.5"),
        (dict(ratio=1.5), r"ratio=1.5 .* \(0, 1\]"),
        (dict(energy=0), "energy=0"),
        (dict(rank=3, ratio=0.1), "exactly one"),
        (dict(rank=3, factor_dtype="int4"), "factor_dtype='int4'"),
        (dict(rank=3, entropy="lzma"), "entropy='lzma'"),
        (dict(codec={"codec": "nope"}), "unknown codec 'nope'"),
        (dict(codec={"codec": ["svd"]}), r"unknown codec \['svd'\]"),
        (dict(codec={"codec": "svd", "rank": 3, "colour": 1}), r"no parameter\(s\) \['colour'\]"),
        (dict(rank=3, chunk_frames=0), "chunk_frames=0"),
    ],
)
def test_bad_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        encode(np.ones((80, 50), np.float32), **kwargs)


def test_choose_rank_without_a_target_is_refused() -> None:
    with pytest.raises(CodecError, match="one of rank, ratio or energy"):
        choose_rank(np.ones((4, 6), np.float32), rank=None, ratio=None, energy=None)


@pytest.mark.parametrize("name", [["svd"], {"codec": "svd"}, 3])
def test_header_codec_name_of_another_type_is_unknown(name: object) -> None:
    with pytest.raises(UnsupportedVersionError, match="is unknown"):
        codec_from_config({"codec": name, "rank": 3})


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.ones(80, np.float32), "2-D float"),
        (np.ones((80, 10), np.int16), "2-D float"),
        (np.full((80, 10), np.nan, np.float32), "NaN"),
        (np.ones((40, 10), np.float32), "n_mels=80"),
    ],
)
def test_bad_features(features: np.ndarray, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        encode(features, rank=2, config="amser")


def test_float16_overflow_is_an_error() -> None:
    with pytest.raises(CodecError, match="overflow float16"):
        encode(np.full((80, 20), 1e5, np.float32), rank=1, factor_dtype="float16")


def test_every_codec_is_registered() -> None:
    assert {"raw", "svd"} <= set(registered())
    assert SvdCodec.from_config(SvdCodec(rank=3).get_config()) == SvdCodec(rank=3)


def test_empty_features_round_trip() -> None:
    blob = encode(np.zeros((80, 0), np.float32), rank=3, config="amser")
    assert decode(blob).shape == (80, 0) and inspect(blob).n_chunks == 0


@given(data=st.binary(max_size=400), width=st.sampled_from([2, 4]))
def test_byte_shuffle_round_trips(data: bytes, width: int) -> None:
    from amser_dsp.codec.svd import _shuffle, _unshuffle

    raw = data[: len(data) // width * width]
    words = _unshuffle(_shuffle(raw, width), width)
    assert words.dtype == np.dtype(f"<u{width}") and words.tobytes() == raw


@pytest.fixture(params=["zlib", "isal"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the standard library's inflate and with ISA-L's (when installed)."""
    import zlib

    from amser_dsp.codec import svd

    module = pytest.importorskip("isal.isal_zlib") if request.param == "isal" else zlib
    monkeypatch.setattr(svd, "_inflater", lambda: module)
    return request.param


def test_both_inflaters_decode_alike_and_refuse_alike(inflater: str, sample_audio: np.ndarray) -> None:
    from amser_dsp.codec import svd

    x = amser_dsp.features(sample_audio, 16000, "whisper")
    for dtype in ("int8", "float16", "float32"):
        codec = SvdCodec(rank=6, factor_dtype=dtype)
        payload = codec.encode_chunk(x)
        np.testing.assert_array_equal(
            codec.decode_chunk(payload, 80, x.shape[1], 1 << 26), decode(encode(x, codec=codec))
        )
        for bad in (payload[:-3], payload + b"\0", payload[:2] + b"\xff" + payload[3:]):
            with pytest.raises(amser_dsp.CorruptContainerError):
                codec.decode_chunk(bad, 80, x.shape[1], 1 << 26)
    bomb = zlib_bomb()
    with pytest.raises(amser_dsp.CorruptContainerError, match="expected size"):
        svd._entropy_decode(bomb, "zlib", 1000, 1 << 20)


def zlib_bomb() -> bytes:
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(b"\0" * (50 << 20)) + comp.flush()
