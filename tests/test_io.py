"""load_audio: formats, scaling, mixdown, resampling, bad files; the bundled clip."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import amser_dsp
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
