"""The reference front end against outside libraries, on real speech.

Tolerances: ``whisper`` vs openai-whisper: max absolute difference <= 1e-3
everywhere.  ``amser`` vs an independent librosa composition: max relative
difference <= 1e-4.  ``kaldi`` vs kaldi-native-fbank: <= 1e-3 wherever float32
arithmetic can resolve it.  kaldi-native-fbank computes in float32 with
kissfft, whose rounding error on a bin is about ``eps32 * |X_peak|``; on a
Mel band ``E`` far below the frame's strongest band ``E_peak`` that is a
relative energy error of ``~2 eps32 sqrt(E_peak / E)``.  Bands within 60 dB
of the peak (99.98% of entries on ../shared/data/asr) must agree to 1e-3;
weaker ones to ``1e-3 + 4 eps32 sqrt(E_peak / E)`` (measured worst: 0.79 of
that margin).  docs/frontend.md has the numbers.  Each back end is held to
the same bounds.
"""

from __future__ import annotations

import numpy as np
import pytest

from amser_dsp import PRESETS, features

WHISPER_ATOL = 1e-3
KALDI_ATOL = 1e-3
AMSER_RTOL = 1e-4


def test_whisper_preset_matches_openai_whisper(speech: list[np.ndarray], backend: str) -> None:
    torch = pytest.importorskip("torch")
    whisper_audio = pytest.importorskip("whisper.audio")
    for x in speech:
        expected = whisper_audio.log_mel_spectrogram(torch.from_numpy(x)).numpy()
        ours = features(x, 16000, "whisper", backend=backend)
        assert ours.shape == expected.shape
        assert np.abs(ours - expected).max() <= WHISPER_ATOL


def kaldi_native_fbank(x: np.ndarray) -> np.ndarray:
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, (x * 32768).tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).T


def kaldi_tolerance(exact_log_energies: np.ndarray) -> np.ndarray:
    """Per-entry bound: 1e-3 plus the float32 resolution of each band (see module doc)."""
    headroom = np.exp(exact_log_energies.max(axis=0, keepdims=True) - exact_log_energies)
    return KALDI_ATOL + 4 * np.finfo(np.float32).eps * np.sqrt(headroom)


def test_kaldi_preset_matches_kaldi_native_fbank(speech: list[np.ndarray], backend: str) -> None:
    for x in speech:
        expected = kaldi_native_fbank(x)
        ours = features(x, 16000, "kaldi", backend=backend)
        exact = features(x.astype(np.float64), 16000, "kaldi", backend="numpy")
        assert ours.shape == expected.shape
        diff = np.abs(ours - expected)
        resolvable = exact >= exact.max(axis=0, keepdims=True) - np.log(1e6)  # within 60 dB of the peak band
        assert diff[resolvable].max() <= KALDI_ATOL
        assert np.all(diff <= kaldi_tolerance(exact))


def librosa_amser(x: np.ndarray) -> np.ndarray:
    """The amser preset composed independently from librosa, SciPy and NumPy (float64)."""
    librosa = pytest.importorskip("librosa")
    from scipy.signal import get_window

    cfg = PRESETS["amser"]
    y = np.append(x[0], x[1:] - cfg.preemphasis * x[:-1])
    frames = librosa.util.frame(y, frame_length=cfg.frame_length, hop_length=cfg.hop_length, axis=0)
    windowed = frames * get_window("hamming", cfg.frame_length, fftbins=False)
    power = np.abs(np.fft.rfft(windowed, n=cfg.n_fft)) ** 2
    bank = librosa.filters.mel(sr=16000, n_fft=cfg.n_fft, n_mels=80, htk=True, norm=None, dtype=np.float64)
    return np.log(np.maximum(bank @ power.T, cfg.log_floor))


def test_amser_preset_matches_librosa_composition(speech: list[np.ndarray], backend: str) -> None:
    for x in speech:
        expected = librosa_amser(x.astype(np.float64))
        ours = features(x.astype(np.float64), 16000, "amser", backend=backend)
        assert ours.shape == expected.shape
        assert np.max(np.abs(ours - expected) / np.abs(expected)) <= AMSER_RTOL


def test_amser_float32_close_to_float64_reference(speech: list[np.ndarray], backend: str) -> None:
    # float32 arithmetic loses ~1e-6 relative on energies, i.e. ~1e-6 absolute on
    # their logs; near log == 0 a relative bound is meaningless, so bound both.
    for x in speech:
        expected = librosa_amser(x.astype(np.float64))
        ours = features(x, 16000, "amser", backend=backend)
        assert np.all(np.abs(ours - expected) <= AMSER_RTOL * np.maximum(np.abs(expected), 1.0))
