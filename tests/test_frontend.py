"""The reference stages and features(): shapes, dtypes, invariants, bad input.

Tests that go through ``features()`` run once per installed back end.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import amser_dsp
from amser_dsp import PRESETS, AudioError, FeatureConfig, SampleRateError, features
from amser_dsp import frontend as fe

from .strategies import configs, signals

PRESET_NAMES = sorted(PRESETS)


# ------------------------------------------------------------------ stages
def test_preemphasis_formula(rng: np.random.Generator) -> None:
    x = rng.standard_normal(100).astype(np.float32)
    y = fe.preemphasis(x, 0.97)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[1:], x[1:] - np.float32(0.97) * x[:-1], rtol=0, atol=0)
    assert y[0] == x[0]
    z = fe.preemphasis(x, 0.97, previous=x[0])
    assert z[0] == pytest.approx(x[0] * 0.03, rel=1e-5)


def test_preemphasis_streams_with_previous_sample(rng: np.random.Generator) -> None:
    x = rng.standard_normal(1000)
    whole = fe.preemphasis(x, 0.95)
    parts = np.concatenate([fe.preemphasis(x[:337], 0.95), fe.preemphasis(x[337:], 0.95, previous=x[336])])
    np.testing.assert_array_equal(whole, parts)


def test_frame_signal_is_a_view_in_snip_mode(rng: np.random.Generator) -> None:
    x = rng.standard_normal(1000).astype(np.float32)
    frames = fe.frame_signal(x, 400, 160)
    assert frames.shape == (1 + (1000 - 400) // 160, 400)
    assert np.shares_memory(frames, x)
    for t in range(frames.shape[0]):
        np.testing.assert_array_equal(frames[t], x[t * 160 : t * 160 + 400])


def test_frame_signal_center_reflect_pads_like_numpy(rng: np.random.Generator) -> None:
    x = rng.standard_normal(1000)
    frames = fe.frame_signal(x, 400, 160, center=True, pad_mode="reflect")
    padded = np.pad(x, 200, mode="reflect")
    assert frames.shape == (1 + 1000 // 160, 400)
    np.testing.assert_array_equal(frames[3], padded[480:880])


def test_frame_signal_short_input_gives_zero_frames() -> None:
    assert fe.frame_signal(np.zeros(10, np.float32), 400, 160).shape == (0, 400)
    with pytest.raises(AudioError, match="reflect padding needs more than 200 samples"):
        fe.frame_signal(np.zeros(150), 400, 160, center=True)


def test_windows_match_numpy_and_torch_conventions() -> None:
    np.testing.assert_allclose(fe.window("hamming", 400, dtype=np.float64), np.hamming(400), atol=1e-12)
    np.testing.assert_allclose(fe.window("hann", 400, dtype=np.float64), np.hanning(400), atol=1e-12)
    periodic = fe.window("hann", 400, periodic=True, dtype=np.float64)
    np.testing.assert_allclose(periodic, np.hanning(401)[:400], atol=1e-12)
    povey = fe.window("povey", 400, dtype=np.float64)
    np.testing.assert_allclose(povey, np.hanning(400) ** 0.85, atol=1e-12)
    assert (fe.window("rectangular", 7) == 1).all()


def test_cached_tables_are_read_only() -> None:
    w = fe.window("hamming", 400)
    bank = fe.mel_filterbank(16000, 512, 80)
    assert fe.window("hamming", 400) is w and fe.mel_filterbank(16000, 512, 80) is bank
    for table in (w, bank):
        with pytest.raises(ValueError, match="read-only"):
            table[0] = 1


def test_power_spectrum_matches_numpy_fft(rng: np.random.Generator) -> None:
    frames = rng.standard_normal((7, 400))
    expected = np.abs(np.fft.rfft(frames, n=512)) ** 2
    np.testing.assert_allclose(fe.power_spectrum(frames, 512), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fe.power_spectrum(frames, 512, power=1.0), np.sqrt(expected), rtol=1e-10)
    assert fe.power_spectrum(frames.astype(np.float32), 512).dtype == np.float32


@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_mel_scale_round_trips(scale: str) -> None:
    hz = np.linspace(0, 8000, 101)
    np.testing.assert_allclose(fe.mel_to_hz(fe.hz_to_mel(hz, scale), scale), hz, atol=1e-9)
    assert fe.hz_to_mel(1000.0, "slaney") == pytest.approx(15.0)
    assert fe.hz_to_mel(700.0, "htk") == pytest.approx(2595 * np.log10(2))


def test_filterbank_shape_and_triangles() -> None:
    bank = fe.mel_filterbank(16000, 512, 80, dtype=np.float64)
    assert bank.shape == (80, 257)
    assert bank.max() <= 1 + 1e-12 and bank.min() >= 0
    # Each band is one contiguous run of non-zero bins and bands move upward.
    starts = [np.flatnonzero(row)[0] for row in bank]
    assert all(np.all(np.diff(np.flatnonzero(row)) == 1) for row in bank)
    assert starts == sorted(starts)


def test_slaney_norm_gives_unit_area() -> None:
    bank = fe.mel_filterbank(16000, 4096, 40, scale="slaney", norm="slaney", dtype=np.float64)
    areas = bank.sum(axis=1) * (16000 / 4096)
    np.testing.assert_allclose(areas, 1.0, rtol=0.02)


def test_log_compress_rules() -> None:
    mel = np.array([[0.0, 1e-12, 1.0, 100.0]], dtype=np.float32)
    out = fe.log_compress(mel.copy(), log="log10", floor=1e-10)
    np.testing.assert_allclose(out, [[-10, -10, 0, 2]], atol=1e-6)
    out = fe.log_compress(mel.copy(), log="log10", floor=1e-10, dynamic_range=8.0, offset=4.0, scale=0.25)
    np.testing.assert_allclose(out, (np.maximum([[-10, -10, 0, 2]], 2 - 8) + 4) / 4, atol=1e-6)
    assert fe.log_compress(mel.copy(), log="ln", floor=1.0).tolist() == [[0, 0, 0, pytest.approx(np.log(100))]]


# ---------------------------------------------------------------- features
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_features_shape_dtype_and_layout(backend: str, preset: str, sample_audio: np.ndarray) -> None:
    cfg = PRESETS[preset]
    out = features(sample_audio, 16000, preset, backend=backend)
    assert out.shape == (80, cfg.num_frames(sample_audio.size))
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.isfinite(out).all()
    out64 = features(sample_audio.astype(np.float64), 16000, preset, backend=backend)
    assert out64.dtype == np.float64
    np.testing.assert_allclose(out64, out, atol=2e-3 if preset == "kaldi" else 2e-4)


@given(cfg=configs(), n=st.integers(0, 3000))
def test_frame_count_formula(cfg: FeatureConfig, n: int) -> None:
    pad = cfg.frame_length // 2 if cfg.padding == "center" else 0
    if n == 0 or n + 2 * pad < cfg.frame_length:
        expected = 0
    else:
        expected = max(0, 1 + (n + 2 * pad - cfg.frame_length) // cfg.hop_length - cfg.drop_last_frame)
    assert cfg.num_frames(n) == expected
    if n == 0:
        return
    x = np.linspace(-0.5, 0.5, n, dtype=np.float32)
    if cfg.padding == "center" and cfg.pad_mode == "reflect" and n <= pad:
        with pytest.raises(AudioError, match="reflect padding"):
            features(x, cfg.sample_rate, cfg, backend="numpy")
        return
    assert features(x, cfg.sample_rate, cfg, backend="numpy").shape == (cfg.n_mels, expected)


@given(x=signals(min_size=1, max_size=3000), preset=st.sampled_from(PRESET_NAMES))
def test_finite_float32_for_any_finite_signal(x: np.ndarray, preset: str) -> None:
    cfg = PRESETS[preset]
    if x.size < cfg.min_samples and cfg.padding == "center":
        with pytest.raises(AudioError):
            features(x, 16000, preset)
        return
    out = features(x, 16000, preset)
    assert out.dtype == np.float32
    assert out.shape == (80, cfg.num_frames(x.size))
    assert np.isfinite(out).all()


@given(cfg=configs(), data=st.data())
def test_any_config_gives_finite_features(cfg: FeatureConfig, data: st.DataObject) -> None:
    x = data.draw(signals(min_size=max(cfg.min_samples, 1), max_size=cfg.min_samples + 2000))
    out = features(x, cfg.sample_rate, cfg, backend="numpy")
    assert out.shape == (cfg.n_mels, cfg.num_frames(x.size))
    assert np.isfinite(out).all()


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_batch_equals_loop(backend: str, preset: str, rng: np.random.Generator) -> None:
    batch = rng.uniform(-0.5, 0.5, size=(2, 3, 4000)).astype(np.float32)
    batch[0, 1] = 0  # digital silence inside a batch
    out = features(batch, 16000, preset, backend=backend)
    assert out.shape == (2, 3, 80, PRESETS[preset].num_frames(4000))
    # float32 rounding: a batch may take other BLAS/FFT kernels than one signal (2e-6 apart on arm64's OpenBLAS).
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(
                out[i, j], features(batch[i, j], 16000, preset, backend=backend), rtol=1e-5, atol=1e-5
            )


def test_blocked_equals_unblocked(sample_audio: np.ndarray) -> None:
    for cfg in PRESETS.values():
        whole = fe.log_mel(sample_audio, cfg)
        blocked = fe.log_mel(sample_audio, cfg, block_frames=37)
        np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-5)


def test_silence_and_full_scale_square(backend: str) -> None:
    silence = np.zeros(16000, np.float32)
    square = np.where(np.arange(16000) % 64 < 32, 1.0, -1.0).astype(np.float32)
    for preset in PRESET_NAMES:
        for x in (silence, square):
            out = features(x, 16000, preset, backend=backend)
            assert np.isfinite(out).all()
    amser_silence = features(silence, 16000, "amser", backend=backend)
    assert np.all(amser_silence == np.float32(np.log(np.float32(1e-10))))


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("audio", "error", "message"),
    [
        (np.zeros(0, np.float32), AudioError, "empty"),
        (np.array([0.1, np.nan] * 500, np.float32), AudioError, "NaN or infinite"),
        (np.array([0.1, np.inf] * 500), AudioError, "NaN or infinite"),
        (np.zeros((16000, 2), np.float32), AudioError, r"looks like \(n_samples, n_channels\)"),
        (np.zeros((4000, 2, 1), np.float32), AudioError, r"looks like \(n_samples, n_channels\)"),
        (np.zeros(1000, np.uint8), AudioError, "integer dtype uint8.*int16 / int32 PCM"),
        (np.zeros(1000, np.int64), AudioError, "integer dtype int64"),
        (np.array(["a", "b"]), AudioError, "dtype <U1"),
        (np.zeros(1000, complex), AudioError, "complex128"),
        (np.zeros(1000, bool), AudioError, "dtype bool"),
        (np.float32(0.5), AudioError, "scalar"),
        ([[0.1, 0.2], [0.3]], AudioError, "could not be converted"),
    ],
)
def test_bad_audio_raises_audio_error(audio: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        features(audio, 16000)  # type: ignore[arg-type]


def test_integer_pcm_is_scaled_the_same_way_everywhere(sample_audio: np.ndarray) -> None:
    # int16 / int32 PCM (what microphone libraries deliver) means samples * 2**-15 / 2**-31,
    # in features(), the streaming encoder, encode_audio and OnlineFeatures alike.
    pcm16 = np.round(sample_audio * 32767).astype(np.int16)
    scaled = pcm16.astype(np.float32) / 32768
    np.testing.assert_array_equal(features(pcm16, 16000), features(scaled, 16000))
    pcm32 = pcm16.astype(np.int32) << 16
    np.testing.assert_array_equal(features(pcm32, 16000), features(scaled, 16000))
    whole = amser_dsp.encode_audio(scaled, chunk_seconds=1.0)
    assert amser_dsp.encode_audio(pcm16, chunk_seconds=1.0) == whole
    enc = amser_dsp.StreamEncoder(chunk_seconds=1.0)
    streamed = b"".join(enc.write(pcm16[i : i + 1600]) for i in range(0, pcm16.size, 1600)) + enc.close()
    assert streamed == whole
    online = amser_dsp.OnlineFeatures("amser")
    online.accept_waveform(pcm16)
    online.input_finished()
    np.testing.assert_allclose(online.get_frames(), features(scaled, 16000, "amser"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rate", [8000, 44100, 16000.0, True, "16000"])
def test_sample_rate_mismatch(rate: object) -> None:
    with pytest.raises(SampleRateError, match=r"sample rate|sample_rate"):
        features(np.zeros(16000, np.float32), rate)  # type: ignore[arg-type]


def test_errors_are_library_and_builtin_types() -> None:
    assert issubclass(AudioError, amser_dsp.AmserError) and issubclass(AudioError, ValueError)
    assert issubclass(SampleRateError, AudioError)
    assert issubclass(amser_dsp.BackendUnavailableError, ImportError)


def test_float16_is_promoted_to_float32(sample_audio: np.ndarray) -> None:
    out = features(sample_audio.astype(np.float16), 16000)
    assert out.dtype == np.float32


def test_input_not_modified(sample_audio: np.ndarray, backend: str) -> None:
    x = sample_audio.copy()
    for preset in PRESET_NAMES:
        features(x, 16000, preset, backend=backend)
    np.testing.assert_array_equal(x, sample_audio)


# ------------------------------------------------------------ OnlineFeatures
@pytest.mark.parametrize("preset", ["amser", "kaldi", "whisper"])
def test_online_features_equal_offline_whatever_the_blocks(sample_audio: np.ndarray, preset: str, rng) -> None:
    config = amser_dsp.get_preset(preset)
    offline_config = config.replace(dynamic_range=None)  # the per-utterance clamp needs the whole utterance
    expected = features(sample_audio, 16000, offline_config, backend="numpy")
    online = amser_dsp.OnlineFeatures(preset)
    ready, pos = [], 0
    while pos < sample_audio.size:
        n = int(rng.integers(1, 4000))
        online.accept_waveform(sample_audio[pos : pos + n])
        pos += n
        ready.append(online.num_frames_ready)
        # Every frame whose samples have all arrived is ready (the end padding waits for input_finished).
        padded = min(pos, sample_audio.size) + config.center_pad
        assert online.num_frames_ready >= min(
            expected.shape[1], max(0, 1 + (padded - config.frame_length - config.center_pad) // config.hop_length)
        )
    assert ready == sorted(ready)
    online.input_finished()
    assert online.finished and online.num_frames_ready == expected.shape[1]
    np.testing.assert_allclose(online.get_frames(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(online.get_frames(10, 20), online.get_frames()[:, 10:20])
    assert not online.get_frames().flags.writeable


def test_online_features_refuse_frames_not_ready() -> None:
    online = amser_dsp.OnlineFeatures()
    online.accept_waveform(np.zeros(1000, np.float32))
    with pytest.raises(AudioError, match="not ready"):
        online.get_frames(0, online.num_frames_ready + 1)
    with pytest.raises(AudioError, match="must be 1-D"):
        online.accept_waveform(np.zeros((2, 100), np.float32))
    online.input_finished()
    with pytest.raises(AudioError, match="after finish"):
        online.accept_waveform(np.zeros(10, np.float32))
