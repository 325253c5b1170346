"""The dispatching feature extractor: checks at the door, then the selected back end.

It sits above both the reference front end (:mod:`amser_dsp.frontend`) and the
back ends (:mod:`amser_dsp.backends`), so neither imports the other's caller.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .backends import resolve
from .config import DEFAULT_PRESET, FeatureConfig, get_preset
from .frontend.extract import check_audio

__all__ = ["features"]


def features(
    audio: ArrayLike,
    sample_rate: int,
    preset: str | FeatureConfig = DEFAULT_PRESET,
    *,
    backend: str | None = None,
) -> np.ndarray:
    """Log-Mel filter-bank features of ``audio``.

    Parameters
    ----------
    audio : array_like
        Float samples in [-1, 1) (or int16 / int32 PCM, scaled by 2**-15 /
        2**-31), shape ``(n_samples,)`` or a batch ``(..., n_samples)`` of
        equal-length signals.
    sample_rate : int
        Sample rate of ``audio`` in Hz; must equal the config's.
    preset : str or FeatureConfig
        A preset name (``"whisper"``, the default; ``"amser"``, ``"kaldi"``) or a config.
    backend : str, optional
        Back end name; default: the ``use_backend`` context, then the
        ``AMSER_DSP_BACKEND`` environment variable, then the fastest installed.

    Returns
    -------
    ndarray
        ``(..., n_mels, n_frames)``, float32 (float64 if the input is float64),
        with ``n_frames = config.num_frames(n_samples)``; audio shorter than
        one frame gives zero frames (or :class:`AudioError` where reflect
        padding is impossible, see :attr:`FeatureConfig.min_samples`).

    Raises
    ------
    ConfigError, AudioError, SampleRateError, UnknownBackendError, BackendUnavailableError
    """
    config = get_preset(preset)
    x = check_audio(audio, sample_rate, config)
    return resolve(backend).log_mel(x, config)
