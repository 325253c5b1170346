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

from amser_dsp import features

from .agreement import kaldi_native_fbank, librosa_amser, openai_whisper, resolvable

WHISPER_ATOL = 1e-3
KALDI_ATOL = 1e-3
AMSER_RTOL = 1e-4


def test_whisper_preset_matches_openai_whisper(speech: list[np.ndarray], backend: str) -> None:
    pytest.importorskip("whisper")
    for x in speech:
        expected = openai_whisper(x)
        ours = features(x, 16000, "whisper", backend=backend)
        assert ours.shape == expected.shape
        assert np.abs(ours - expected).max() <= WHISPER_ATOL


def kaldi_tolerance(exact_log_energies: np.ndarray) -> np.ndarray:
    """Per-entry bound: 1e-3 plus the float32 resolution of each band (see module doc)."""
    headroom = np.exp(exact_log_energies.max(axis=0, keepdims=True) - exact_log_energies)
    return KALDI_ATOL + 4 * np.finfo(np.float32).eps * np.sqrt(headroom)


def test_kaldi_preset_matches_kaldi_native_fbank(speech: list[np.ndarray], backend: str) -> None:
    pytest.importorskip("kaldi_native_fbank")
    for x in speech:
        expected = kaldi_native_fbank(x)
        ours = features(x, 16000, "kaldi", backend=backend)
        exact = features(x.astype(np.float64), 16000, "kaldi", backend="numpy")
        assert ours.shape == expected.shape
        diff = np.abs(ours - expected)
        assert diff[resolvable(exact)].max() <= KALDI_ATOL
        assert np.all(diff <= kaldi_tolerance(exact))


def test_amser_preset_matches_librosa_composition(speech: list[np.ndarray], backend: str) -> None:
    pytest.importorskip("librosa")
    for x in speech:
        expected = librosa_amser(x)
        ours = features(x.astype(np.float64), 16000, "amser", backend=backend)
        assert ours.shape == expected.shape
        assert np.max(np.abs(ours - expected) / np.abs(expected)) <= AMSER_RTOL


def test_amser_float32_close_to_float64_reference(speech: list[np.ndarray], backend: str) -> None:
    # float32 arithmetic loses ~1e-6 relative on energies, i.e. ~1e-6 absolute on
    # their logs; near log == 0 a relative bound is meaningless, so bound both.
    pytest.importorskip("librosa")
    for x in speech:
        expected = librosa_amser(x)
        ours = features(x, 16000, "amser", backend=backend)
        assert np.all(np.abs(ours - expected) <= AMSER_RTOL * np.maximum(np.abs(expected), 1.0))
