"""Mel filter banks: the one builder the config's validation and every front end share.

A leaf module (it imports only NumPy and :mod:`amser_dsp.errors`), so
:mod:`amser_dsp.config` can check that every band gets an FFT bin without
importing the front end.  Banks are cached and read-only.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import DTypeLike

if TYPE_CHECKING:
    from .config import FeatureConfig

__all__ = ["hz_to_mel", "mel_filterbank", "mel_filterbank_for", "mel_to_hz"]


# The Slaney scale: linear (3 Mel per 200 Hz) below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float, scale: str = "htk") -> np.ndarray:
    """Convert Hz to Mel on the ``htk`` or ``slaney`` scale."""
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    logs = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, logs, hz / _F_SP)


def mel_to_hz(mel: np.ndarray | float, scale: str = "htk") -> np.ndarray:
    """Convert Mel to Hz; the inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    exps = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, exps, _F_SP * mel)


@functools.lru_cache(maxsize=64)
def _mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    scale: str,
    triangles: str,
    norm: str | None,
    dtype: np.dtype,
) -> np.ndarray:
    bin_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges_mel = np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2)
    if triangles == "mel":
        # Kaldi: triangles linear in Mel, over bins strictly inside each band.
        x, edges = hz_to_mel(bin_hz, scale), edges_mel
    else:
        # librosa/Whisper: triangles linear in Hz between Mel-spaced edges.
        x, edges = bin_hz, mel_to_hz(edges_mel, scale)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (x - left) / (centre - left)
    falling = (right - x) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        hz = mel_to_hz(edges_mel, scale)
        weights *= (2.0 / (hz[2:] - hz[:-2]))[:, None]
    weights = weights.astype(dtype)
    weights.flags.writeable = False
    return weights


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    *,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "htk",
    triangles: str = "hz",
    norm: str | None = None,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """Triangular Mel filter bank, shape ``(n_mels, n_fft // 2 + 1)`` (cached, read-only).

    Band ``m`` has edges at Mel points ``m``, ``m + 1``, ``m + 2`` of
    ``n_mels + 2`` points spaced evenly between ``f_min`` and ``f_max``.

    Parameters
    ----------
    sample_rate, n_fft, n_mels : int
        Audio rate, FFT size and number of bands.
    f_min, f_max : float
        Lowest and highest edge in Hz (``None``: Nyquist).
    scale : {"htk", "slaney"}
        Mel formula (see :func:`hz_to_mel`).
    triangles : {"hz", "mel"}
        Weights linear in Hz between the edges (librosa) or linear in Mel (Kaldi).
    norm : {"slaney", None}
        ``slaney`` divides each triangle by half its width in Hz (unit area).
    dtype : dtype
        Output dtype.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    return _mel_filterbank(
        int(sample_rate),
        int(n_fft),
        int(n_mels),
        float(f_min),
        float(f_max),
        scale,
        triangles,
        norm,
        np.dtype(dtype),
    )


def mel_filterbank_for(config: FeatureConfig, dtype: DTypeLike = np.float32) -> np.ndarray:
    """The Mel filter bank ``config`` asks for (cached, read-only)."""
    return mel_filterbank(
        config.sample_rate,
        config.n_fft,
        config.n_mels,
        f_min=config.f_min,
        f_max=config.upper_frequency,
        scale=config.mel_scale,
        triangles=config.mel_triangles,
        norm=config.mel_norm,
        dtype=dtype,
    )
