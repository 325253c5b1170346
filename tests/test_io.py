"""load_audio: formats, scaling, mixdown, resampling, bad files; the bundled clip."""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import amser_dsp
import amser_dsp.io
from amser_dsp import AudioError, load_audio


def tone(rate: int, seconds: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "subtype", "atol"),
    [("WAV", "PCM_16", 1 / 32768), ("FLAC", "PCM_24", 1e-6), ("OGG", "VORBIS", 0.05), ("WAV", "FLOAT", 0)],
)
def test_formats_round_trip(tmp_path: Path, fmt: str, subtype: str, atol: float) -> None:
    x = tone(16000)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1 and y.flags.c_contiguous
    assert y.size == x.size
    np.testing.assert_allclose(y, x, atol=atol + 1e-7)


def test_int16_pcm_scaled_to_unit_range(tmp_path: Path) -> None:
    pcm = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    path = tmp_path / "pcm.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    y = load_audio(path)
    np.testing.assert_array_equal(y, pcm / 32768.0)
    assert y.min() >= -1 and y.max() < 1


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left, right = tone(16000, freq=300), tone(16000, freq=500)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_a_tone(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "r.wav"
    sf.write(path, tone(rate, seconds=1.0, freq=1000.0), rate, subtype="FLOAT")
    y = load_audio(path, sample_rate=16000)
    assert y.size == 16000
    spectrum = np.abs(np.fft.rfft(y[2000:-2000]))
    peak_hz = np.argmax(spectrum) * 16000 / (y.size - 4000)
    assert abs(peak_hz - 1000.0) < 2.0
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_native_rate_kept_with_none(tmp_path: Path) -> None:
    path = tmp_path / "n.wav"
    sf.write(path, tone(8000), 8000)
    assert load_audio(path, sample_rate=None).size == 4000


def test_file_object(tmp_path: Path) -> None:
    buf = io.BytesIO()
    sf.write(buf, tone(16000), 16000, format="FLAC")
    buf.seek(0)
    assert load_audio(buf).size == 8000


def test_zero_length_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="holds no samples"):
        load_audio(path)


@pytest.mark.parametrize("content", [b"", b"not audio at all" * 10, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_non_audio_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="cannot read audio"):
        load_audio(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.flac")


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, True])
def test_bad_target_rate(rate: object) -> None:
    with pytest.raises(AudioError, match="sample_rate"):
        load_audio(amser_dsp.sample_path(), sample_rate=rate)  # type: ignore[arg-type]


def test_bundled_clip_and_transcript() -> None:
    path = amser_dsp.sample_path()
    assert path.is_file() and path.suffix == ".flac"
    info = sf.info(str(path))
    assert info.samplerate == 16000 and info.channels == 1
    assert 2.0 < info.duration < 6.0
    assert amser_dsp.sample_transcript() == "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM"
    assert (path.parent / "LICENSE.md").read_text().count("CC BY 4.0") >= 1


# ------------------------------------------------------------------ hostile headers
def wav_bytes(x: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def with_rate(wav: bytes, rate: int) -> bytes:
    """The same WAV with its header's sample rate (and byte rate) replaced."""
    b = bytearray(wav)
    b[24:28] = struct.pack("<I", rate)
    b[28:32] = struct.pack("<I", (rate * 2) & 0xFFFFFFFF)
    return bytes(b)


def with_data_length(wav: bytes, n_bytes: int) -> bytes:
    b = bytearray(wav)
    i = b.find(b"data")
    b[i + 4 : i + 8] = struct.pack("<I", n_bytes)
    return bytes(b)


@pytest.mark.parametrize("rate", [1, 4000, 7999, 192_001, 1_000_003, 2**31 - 1])
def test_a_sample_rate_out_of_range_is_refused_before_resampling(rate: int) -> None:
    # A 2 KB WAV declaring 1,000,003 Hz made resample_poly build a 20-million-tap filter (seconds, 160 MB);
    # 2**31 - 1 Hz ended in a MemoryError.
    blob = with_rate(wav_bytes(tone(16000, 0.05)), rate)
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=f"sample rate of {rate} Hz; accepted are 8000 to 192000 Hz"):
            load_audio(io.BytesIO(blob))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


@pytest.mark.parametrize("rate", [8000, 192_000])
def test_the_bounds_of_the_sample_rates_are_accepted(rate: int) -> None:
    assert load_audio(io.BytesIO(with_rate(wav_bytes(tone(16000, 0.05)), rate)), sample_rate=None).size == 800


def test_a_target_rate_above_the_limit_is_refused() -> None:
    with pytest.raises(AudioError, match="at most 192000"):
        load_audio(amser_dsp.sample_path(), sample_rate=1_000_000)


def test_audio_header_checks_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "h.wav"
    path.write_bytes(wav_bytes(tone(16000, 0.25)))
    assert amser_dsp.io.audio_header(path) == amser_dsp.io.AudioHeader(16000, 1, 4000)
    path.write_bytes(with_rate(path.read_bytes(), 1_000_003))
    with pytest.raises(AudioError, match="1000003 Hz"):
        amser_dsp.io.audio_header(path)


def test_a_wav_cut_short_warns_and_gives_what_is_there() -> None:
    # Warned, not refused: the samples present are real audio (a copy or a recording cut short), and the
    # caller decides; the warning says how much the header promised.
    x = tone(16000, 0.25)
    blob = with_data_length(wav_bytes(x), 10_000_000)
    with pytest.warns(amser_dsp.AmserWarning, match=r"declares 312.50 s of audio but the file holds 0.25 s"):
        y = load_audio(io.BytesIO(blob))
    np.testing.assert_allclose(y, x, atol=1 / 32768)


@pytest.mark.parametrize("length", [0x7FFFFF00, 0xFFFFFFFF])
def test_a_streaming_writers_placeholder_length_is_not_warned_about(length: int) -> None:
    # arecord on a pipe (README: arecord ... | amser encode - -) cannot go back to write the length.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_audio(io.BytesIO(with_data_length(wav_bytes(tone(16000, 0.25)), length))).size == 4000


def test_a_flac_header_claiming_2_to_the_36_samples_allocates_nothing_for_them() -> None:
    # soundfile.read allocates what the header declares: 256 GiB here (a MemoryError).
    buf = io.BytesIO()
    sf.write(buf, tone(16000, 0.25), 16000, format="FLAC")
    b = bytearray(buf.getvalue())
    v = int.from_bytes(b[18:26], "big") | ((1 << 36) - 1)  # STREAMINFO's total samples: the low 36 bits
    b[18:26] = v.to_bytes(8, "big")
    tracemalloc.start()
    try:
        with pytest.raises(AudioError):
            load_audio(io.BytesIO(bytes(b)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_max_seconds_is_checked_from_the_header_and_while_reading(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    path.write_bytes(wav_bytes(tone(16000, 2.0)))
    assert load_audio(path, max_seconds=2.0).size == 32000  # exactly the limit is within it
    with pytest.raises(amser_dsp.LimitExceededError, match=r"lasts 2\.0 s; the limit is 1\.5 s"):
        load_audio(path, max_seconds=1.5)
    with pytest.raises(AudioError, match="max_seconds"):
        load_audio(path, max_seconds=0)


def test_many_channels_are_mixed_down_block_by_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (5000, 6)).astype(np.float32)
    path = tmp_path / "six.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    whole = load_audio(path)
    monkeypatch.setattr(amser_dsp.io, "BLOCK_SAMPLES", 600)  # 100 frames per block: 50 blocks
    np.testing.assert_array_equal(load_audio(path), whole)
    np.testing.assert_allclose(whole, x.mean(axis=1), atol=1e-7)


COMMON_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000)


def test_resampling_factors_are_exact_for_common_rates_and_bounded_for_any() -> None:
    from fractions import Fraction

    from amser_dsp.io import MAX_RESAMPLE_FACTOR, resample_factors

    for rate in COMMON_RATES:
        up, down = resample_factors(rate, 16000)
        assert Fraction(up, down) == Fraction(16000, rate)
    for rate in [*range(8000, 8100), *range(15900, 16100), *range(191_900, 192_001), 100_003, 176_089]:
        up, down = resample_factors(rate, 16000)
        assert max(up, down) <= MAX_RESAMPLE_FACTOR
        assert abs(rate * up / down / 16000 - 1) < 6e-4


def test_an_odd_rate_is_resampled_in_bounded_memory() -> None:
    # 191,999 Hz meant a 3.8-million-tap filter: 1.5 s of CPU and 290 MB for 0.02 s of audio.
    blob = wav_bytes(tone(16000, 0.02), rate=191_999)
    tracemalloc.start()
    try:
        y = load_audio(io.BytesIO(blob))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.size == amser_dsp.io.resampled_length(320, 191_999, 16000) and peak < 16 << 20


def test_the_store_plans_the_frames_load_audio_gives(tmp_path: Path) -> None:
    pytest.importorskip("numcodecs", reason="the feature store needs the zarr extra")
    from amser_dsp.zarrstore import expected_frames

    cfg = amser_dsp.get_preset("whisper")
    for rate in (44100, 191_999, 8001):
        path = tmp_path / f"r{rate}.wav"
        path.write_bytes(wav_bytes(tone(16000, 0.3), rate=rate))
        frames, _ = expected_frames(str(path), cfg)
        assert frames == amser_dsp.features(load_audio(path), 16000, cfg).shape[1]


def test_a_hostile_file_object_makes_no_noise_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    # An AIFF whose sound chunk is renamed makes libsndfile seek before the start of a BytesIO; the
    # ValueError inside soundfile's C callback was printed as "Exception ignored from cffi callback" (found
    # by tests/fuzz/fuzz_audio.py), on the terminal of `amser encode - - < file`.
    import sys

    buf = io.BytesIO()
    sf.write(buf, np.zeros(800, np.float32), 16000, format="AIFF", subtype="PCM_16")
    blob = buf.getvalue().replace(b"SSND", b"XXXX")
    noise: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: noise.append(f"{u.exc_type.__name__}: {u.exc_value}"))
    with pytest.raises(AudioError, match="cannot read audio"):
        load_audio(io.BytesIO(blob))
    assert noise == []


def test_a_short_run_of_the_audio_fuzzer_finds_nothing() -> None:
    # The long run is a command: see docs/fuzzing.md.
    from .fuzz import fuzz_audio

    summary = fuzz_audio.run(1200, seed=1, max_seconds=1.0, max_samples=16_000_000, findings=None, progress=False)
    assert summary["findings"] == 0, summary["first_findings"]
    assert len(summary["mutations"]) >= 15  # every kind of mutation ran
