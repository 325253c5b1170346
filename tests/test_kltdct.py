"""The KLT-DCT codec: numerics, table training, round trips, rate control, hostile input."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import amser_dsp
from amser_dsp import (
    AmserError,
    CodecError,
    CorruptContainerError,
    LimitExceededError,
    UnknownTablesError,
    decode,
    decode_container,
    encode,
    inspect,
)
from amser_dsp.codec import KltDctCodec, kltdct, rans
from amser_dsp.codec.train import clip_folds, combine_sensitivities, fit_basis, fit_tables, join_clips
from amser_dsp.container import read_all

SHIPPED = kltdct.load_tables(kltdct.DEFAULT_TABLES)
WHISPER = amser_dsp.get_preset("whisper")


@pytest.fixture(scope="module")
def tables(speech: list[np.ndarray]) -> kltdct.KltDctTables:
    feats = [amser_dsp.features(x, 16000, "whisper") for x in speech]
    return fit_tables(feats, name="test-tables", config_digest=amser_dsp.get_preset("whisper").digest(), block=16)


def test_basis_is_orthonormal_and_deterministic(speech: list[np.ndarray]) -> None:
    feats = [amser_dsp.features(x, 16000, "whisper") for x in speech[:2]]
    _mean, basis = fit_basis(feats)
    np.testing.assert_allclose(basis.T @ basis, np.eye(80), atol=1e-10)
    assert np.all(basis[np.argmax(np.abs(basis), axis=0), np.arange(80)] > 0)
    _mean2, basis2 = fit_basis(feats)
    np.testing.assert_array_equal(basis, basis2)


def test_analysis_synthesis_is_exact(tables: kltdct.KltDctTables, sample_audio: np.ndarray) -> None:
    x = amser_dsp.features(sample_audio, 16000, "whisper")
    coeffs = kltdct.analyse(x, tables)
    assert coeffs.shape == (80, -(-x.shape[1] // 16), 16)
    np.testing.assert_allclose(kltdct.synthesise(coeffs, tables, x.shape[1]), x, atol=2e-5)


def test_quantisation_error_is_bounded_by_half_a_step(tables: kltdct.KltDctTables, sample_audio: np.ndarray) -> None:
    x = amser_dsp.features(sample_audio, 16000, "whisper")
    coeffs = kltdct.analyse(x, tables)
    for step_index in (-8, 0, 8):
        s = kltdct.steps(tables, step_index)
        q = kltdct.quantise(coeffs, s)
        err = np.abs(kltdct.dequantise(q, s) - coeffs)
        assert np.all(err <= s[:, None, :] / 2 * (1 + 1e-5))
        # Orthonormal transforms: the feature-domain error energy equals the coefficient-domain one.
        rec = kltdct.synthesise(kltdct.dequantise(q, s), tables, x.shape[1])
        padded = np.pad(x, ((0, 0), (0, coeffs.shape[1] * 16 - x.shape[1])), mode="edge")
        full = kltdct.synthesise(kltdct.dequantise(q, s), tables, padded.shape[1])
        np.testing.assert_allclose(((full - padded) ** 2).sum(), (err**2).sum(), rtol=1e-3)
        assert rec.shape == x.shape


def test_step_grid_and_contexts_are_integers(tables: kltdct.KltDctTables) -> None:
    assert kltdct.step_size(8) == 2.0 and kltdct.step_size(-8) == 0.5
    ctx = kltdct.table_contexts(tables, 5)
    assert ctx.dtype == np.int32
    np.testing.assert_array_equal(ctx, tables.scale_index.astype(np.int32) - 5)


def test_tables_round_trip_with_digest(tables: kltdct.KltDctTables) -> None:
    again = kltdct.tables_from_bytes(tables.to_bytes())
    assert again.sha256 == tables.sha256 and again.name == "test-tables"
    np.testing.assert_array_equal(again.basis, tables.basis)
    with pytest.raises(ValueError, match="read-only"):
        again.basis[0, 0] = 1


def test_unknown_tables_are_a_codec_error() -> None:
    for name in ("nope", "../kltdct/whisper-kltdct16-v1", ".hidden"):
        with pytest.raises(UnknownTablesError, match="no codec tables named"):
            kltdct.load_tables(name)
    with pytest.raises(UnknownTablesError):
        KltDctCodec(tables="nope")


def test_features_that_do_not_fit_are_refused(tables: kltdct.KltDctTables) -> None:
    with pytest.raises(CodecError, match="do not fit"):
        kltdct.analyse(np.zeros((40, 10), np.float32), tables)


def test_shipped_tables_load_and_describe_the_whisper_preset() -> None:
    t = kltdct.load_tables("whisper-kltdct16-v1")
    assert t.config_digest == amser_dsp.get_preset("whisper").digest()
    assert t.block == 16 and t.n_mels == 80 and len(t.meta["clips"]) == 87
    np.testing.assert_allclose(t.basis.T @ t.basis, np.eye(80), atol=1e-5)
    # Whisper's measured sensitivity falls with the KLT component and with temporal frequency.
    assert t.weight[0, 0] > t.weight[40, 0] > t.weight[79, 0]
    assert t.weight[0, 3] > t.weight[0, 15]


# ------------------------------------------------------------------ the codec
def whisper_like(draw_shape: tuple[int, int]) -> st.SearchStrategy[np.ndarray]:
    """Features in the whisper preset's range: max - 2 <= x <= max."""
    return hnp.arrays(np.float32, draw_shape, elements=st.floats(-1.5, 1.5, width=32))


def _error_bound(x: np.ndarray, step_index: int) -> float:
    """The documented bound on the squared error: (S/2)^2 per coded coefficient plus the energy of the uncoded ones."""
    coeffs = kltdct.analyse(x, SHIPPED)
    step, coded = kltdct.steps(SHIPPED, step_index), kltdct._coding_plan(SHIPPED, step_index).coded
    per_coeff = np.where(coded[:, None, :], (step[:, None, :] / 2) ** 2, coeffs**2)
    return float(per_coeff.sum()) * (1 + 1e-4) + 1e-6 * x.size


@settings(max_examples=60, deadline=None)
@given(
    x=st.tuples(st.just(80), st.integers(1, 70)).flatmap(whisper_like),
    step_index=st.integers(kltdct.STEP_INDEX_MIN, kltdct.STEP_INDEX_MAX),
)
def test_round_trip_within_the_documented_bound(x: np.ndarray, step_index: int) -> None:
    out = decode(encode(x, config="whisper", codec=KltDctCodec(step=step_index)))
    assert out.shape == x.shape and out.dtype == np.float32
    # Clipping to the chunk's range only removes error; the transform is orthonormal.
    assert x.min() <= out.min() and out.max() <= x.max()
    assert float(((out - x) ** 2).sum()) <= _error_bound(x, step_index)


def test_round_trip_of_speech_at_every_step(speech: list[np.ndarray]) -> None:
    x = amser_dsp.features(speech[0], 16000, "whisper")
    sizes = []
    for step_index in (-64, -16, 0, 16, 63):
        blob = encode(x, config="whisper", codec=KltDctCodec(step=step_index))
        out = decode(blob)
        assert float(((out - x) ** 2).sum()) <= _error_bound(x, step_index)
        sizes.append(len(blob))
    assert sizes == sorted(sizes, reverse=True)  # coarser steps, fewer bytes
    finest = decode(encode(x, config="whisper", codec=KltDctCodec(step=-64)))
    assert np.abs(finest - x).max() < 0.02 and np.sqrt(np.mean((finest - x) ** 2)) < 2e-3


def test_deterministic_and_identified_in_the_header(sample_audio: np.ndarray) -> None:
    x = amser_dsp.features(sample_audio, 16000, "whisper")
    a = encode(x, config="whisper", codec={"codec": "kltdct", "step": 4})
    assert a == encode(x, config="whisper", codec=KltDctCodec(step=4))
    info = inspect(a)
    assert info.codec == {
        "codec": "kltdct",
        "step": 4,
        "tables": "whisper-kltdct16-v1",
        "tables_sha256": SHIPPED.sha256[:16],
    }


def _payload(blob: bytes) -> bytes:
    _, chunks, _ = read_all(blob)
    assert len(chunks) == 1
    return chunks[0].payload


@pytest.mark.parametrize("kbps", [1.5, 3.0, 6.0, 12.0])
def test_rate_control_meets_the_target_with_the_finest_step(speech: list[np.ndarray], kbps: float) -> None:
    x = amser_dsp.features(speech[1], 16000, "whisper")
    seconds = x.shape[1] / 100
    payload = _payload(encode(x, config="whisper", kbps=kbps))
    assert len(payload) * 8 / seconds / 1000 <= kbps
    chosen = struct.unpack_from("<b", payload)[0]
    finer = _payload(encode(x, config="whisper", codec=KltDctCodec(step=chosen - 1)))
    # The bisection works on the ideal code length: the real stream may differ by a few bytes.
    assert (len(finer) + 4) * 8 / seconds / 1000 > kbps


@pytest.mark.parametrize("quality", [0.03, 0.06, 0.1])
def test_quality_bounds_the_rms_error(speech: list[np.ndarray], quality: float) -> None:
    x = amser_dsp.features(speech[2], 16000, "whisper")
    x = x[:, : x.shape[1] // 16 * 16]  # whole blocks: the coefficient error is the feature error
    out = decode(encode(x, config="whisper", quality=quality))
    rms = float(np.sqrt(np.mean((out - x) ** 2)))
    assert rms <= quality
    assert rms > quality / 3  # not needlessly fine


def test_stream_encode_equals_chunked_whole_file(sample_audio: np.ndarray) -> None:
    enc = amser_dsp.StreamEncoder("whisper", chunk_seconds=0.5, kbps=4.0)
    out = b"".join(enc.write(sample_audio[i : i + 320]) for i in range(0, sample_audio.size, 320)) + enc.close()
    assert out == amser_dsp.encode_audio(sample_audio, "whisper", chunk_seconds=0.5, kbps=4.0)
    decoded = decode_container(out)
    assert decoded.info.n_chunks == -(-decoded.info.n_frames // 50)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"step": 1, "kbps": 3.0}, CodecError, "at most one"),
        ({"step": 1.5}, CodecError, "step=1.5"),
        ({"step": 64}, CodecError, "step=64"),
        ({"kbps": 0}, CodecError, "kbps=0"),
        ({"quality": float("nan")}, CodecError, "quality=nan"),
        ({"tables_sha256": "0" * 16}, UnknownTablesError, "SHA-256"),
    ],
)
def test_bad_parameters(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        KltDctCodec(**kwargs)


def test_refuses_features_of_another_preset(sample_audio: np.ndarray) -> None:
    x = amser_dsp.features(sample_audio, 16000, "kaldi")
    with pytest.raises(CodecError, match="trained on 'whisper' features"):
        encode(x, config="kaldi", kbps=4.0)
    with pytest.raises(CodecError, match="trained on 'whisper' features"):
        amser_dsp.StreamEncoder("kaldi", kbps=4.0)
    with pytest.raises(CodecError, match="do not fit"):
        encode(np.zeros((40, 10), np.float32), codec={"codec": "kltdct"})
    with pytest.raises(CodecError, match=r"kbps \(kltdct\), rank \(svd\) .* belong to different codecs"):
        encode(x, kbps=4.0, rank=3)


def _chunk_decode(payload: bytes, n_frames: int = 40, limit: int = 1 << 26) -> np.ndarray:
    return KltDctCodec(step=0).decode_chunk(payload, 80, n_frames, limit)


def test_hostile_chunk_payloads() -> None:
    x = amser_dsp.features(amser_dsp.load_audio(amser_dsp.sample_path()), 16000, "whisper")[:, :40]
    good = KltDctCodec(step=0).encode_chunk(x)
    np.testing.assert_array_equal(_chunk_decode(good), decode(encode(x, codec=KltDctCodec(step=0))))
    cases = {
        "short head": good[:5],
        "step out of range": struct.pack("<b", 100) + good[1:],
        "nan range": good[:1] + struct.pack("<ff", float("nan"), 1.0) + good[9:],
        "inverted range": good[:1] + struct.pack("<ff", 2.0, 1.0) + good[9:],
        "truncated stream": good[:-1],
        "trailing byte": good + b"\0",
        "other step": struct.pack("<b", 5) + good[1:],
    }
    for name, payload in cases.items():
        with pytest.raises(CorruptContainerError):
            _chunk_decode(payload)
            pytest.fail(name)
    with pytest.raises(LimitExceededError):
        _chunk_decode(good, n_frames=360_000, limit=1 << 20)
    with pytest.raises(CorruptContainerError, match="Mel bands"):
        KltDctCodec(step=0).decode_chunk(good, 40, 40, 1 << 26)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), n_frames=st.integers(1, 200))
def test_random_payloads_raise_only_amser_errors(payload: bytes, n_frames: int) -> None:
    try:
        out = _chunk_decode(payload, n_frames)
    except AmserError:
        return
    assert out.shape == (80, n_frames) and np.isfinite(out).all()


def test_container_naming_other_tables_is_refused(sample_audio: np.ndarray) -> None:
    x = amser_dsp.features(sample_audio, 16000, "whisper")
    blob = encode(x, config="whisper", codec=KltDctCodec(step=0))
    info = inspect(blob)
    # A decoder whose tables of that name differ (another training run) refuses instead of decoding garbage.
    other = kltdct.KltDctTables(**{**SHIPPED.__dict__, "mean": SHIPPED.mean + 1, "sha256": "f" * 64})
    kltdct.register_tables(other)
    try:
        with pytest.raises(UnknownTablesError, match="SHA-256"):
            decode(blob)
    finally:
        kltdct._REGISTERED.clear()
    assert decode(blob).shape == x.shape and info.n_chunks == 1


def test_registered_tables_code_and_decode(speech: list[np.ndarray]) -> None:
    feats = [amser_dsp.features(x, 16000, "whisper") for x in speech[:3]]
    own = fit_tables(feats, name="my-tables", config_digest=WHISPER.digest(), weight=SHIPPED.weight, meta={})
    kltdct.register_tables(own)
    try:
        blob = encode(feats[0], config="whisper", codec={"codec": "kltdct", "tables": "my-tables", "step": 0})
        assert inspect(blob).codec["tables_sha256"] == own.sha256[:16]
        assert decode(blob).shape == feats[0].shape
    finally:
        kltdct._REGISTERED.clear()
    with pytest.raises(UnknownTablesError):
        decode(blob)


def test_speaker_folds_are_disjoint_and_cover_every_clip() -> None:
    rows = [{"id": f"c{i}", "speaker": f"s{i % 5}"} for i in range(23)]
    folds = clip_folds(rows, 2)
    assert set(folds) == {r["id"] for r in rows}
    by_speaker: dict[str, set[int]] = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], set()).add(folds[r["id"]])
    assert all(len(f) == 1 for f in by_speaker.values()) and set(folds.values()) == {0, 1}


def test_clips_are_joined_into_pieces_of_at_most_a_window_in_order() -> None:
    clips = [np.full((2, n), i, np.float32) for i, n in enumerate((1200, 1500, 400, 3500, 100, 2900))]
    pieces = join_clips(clips, 3000)
    assert [p.shape[1] for p in pieces] == [2700, 400, 3500, 3000]  # a longer clip stands alone
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), np.concatenate(clips, axis=1))


def test_sensitivities_of_several_recognisers_count_each_relative_to_itself() -> None:
    rng = np.random.default_rng(0)
    small = np.exp(rng.normal(size=(80, 16)))
    large = 50 * np.exp(rng.normal(size=(80, 16)))  # a larger encoder: larger raw errors everywhere
    both = combine_sensitivities([small, large])
    assert np.isclose(np.exp(np.log(both).mean()), 1.0)
    expected = small / np.exp(np.log(small).mean()) + large / np.exp(np.log(large).mean())
    np.testing.assert_allclose(both, expected / np.exp(np.log(expected).mean()))
    np.testing.assert_allclose(combine_sensitivities([large]), large / np.exp(np.log(large).mean()))


def test_fit_tables_measures_each_encoder_on_joined_clips(speech: list[np.ndarray]) -> None:
    feats = [amser_dsp.features(x, 16000, "whisper") for x in speech[:3]]
    seen: list[list[int]] = []

    def encoder(scale: float):  # type: ignore[no-untyped-def]
        def encode(items: list[np.ndarray]) -> list[np.ndarray]:
            seen.append([f.shape[1] for f in items])
            return [scale * f[:8] for f in items]  # the low bands only, like a recogniser deaf to the rest

        return encode

    t = fit_tables(
        feats, name="t", config_digest=WHISPER.digest(), encoders=[encoder(1.0), encoder(9.0)], piece_frames=3000
    )
    assert seen[0] == [sum(f.shape[1] for f in feats)]  # short clips: one piece
    assert np.isclose(np.exp(np.log(t.weight.astype(np.float64)).mean()), 1.0, atol=1e-4)
    assert t.weight[0].mean() > t.weight[-1].mean()  # the noise goes where the encoder does not look


def test_uncoded_coefficients_are_the_small_ones() -> None:
    for step_index in (-16, 0, 16):
        plan = kltdct._coding_plan(SHIPPED, step_index)
        scale_in_steps = 2.0 ** ((SHIPPED.scale_index - step_index) / 8)
        assert np.all(scale_in_steps[~plan.coded] < 0.2) and np.all(scale_in_steps[plan.coded] >= 0.17)
        assert plan.context.min() >= kltdct.CODED_MIN_CONTEXT and plan.context.max() <= rans.SCALE_INDEX_MAX
        assert plan.step.size == plan.context.size == plan.coded.sum()


@settings(max_examples=40, deadline=None)
@given(
    x=st.tuples(st.just(80), st.integers(1, 90)).flatmap(whisper_like),
    target=st.one_of(
        st.builds(lambda k: {"kbps": k}, st.floats(0.01, 500)),
        st.builds(lambda d: {"quality": d}, st.floats(1e-4, 5)),
    ),
)
def test_rate_and_quality_control_on_any_input(x: np.ndarray, target: dict) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        blob = encode(x, config="whisper", **target)
    out = decode(blob)
    assert out.shape == x.shape and np.isfinite(out).all()
    step = struct.unpack_from("<b", _payload(blob))[0]
    assert kltdct.STEP_INDEX_MIN <= step <= kltdct.STEP_INDEX_MAX
    missed = [w for w in caught if issubclass(w.category, amser_dsp.TargetNotMetWarning)]
    # A target that cannot be met is said, and then the nearest step is used.
    if missed:
        assert "cannot be met" in str(missed[0].message)
        if "quality" in target:
            assert step == kltdct.STEP_INDEX_MIN
    if "kbps" in target and not missed:  # what is not said is met, up to the documented framing
        info = amser_dsp.inspect(blob)
        assert (info.n_bytes - info.header_bytes - 30) * 8 / info.seconds / 1000 <= target["kbps"]
    if "quality" in target and not missed:
        coeffs = kltdct.analyse(x, SHIPPED)
        assert kltdct._coefficient_rms_error(coeffs, kltdct._coding_plan(SHIPPED, step)) <= target["quality"]


def test_an_unreachable_rate_is_said(sample_audio: np.ndarray) -> None:
    x = amser_dsp.features(sample_audio, 16000, "whisper")
    with pytest.warns(amser_dsp.TargetNotMetWarning, match=r"kbps=0.1 cannot be met: the header and framing alone"):
        blob = encode(x, config="whisper", kbps=0.1)
    assert amser_dsp.inspect(blob).kbps > 0.1
    enc = amser_dsp.StreamEncoder(kbps=0.1, chunk_seconds=1.0)
    with pytest.warns(amser_dsp.TargetNotMetWarning, match=r"kbps=0.1 cannot be met"):
        enc.write(sample_audio)
        enc.close()
    long = np.concatenate([x] * 10, axis=1)  # 33 s: the header is a small share
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode(long, config="whisper", kbps=4)  # reachable: no warning
