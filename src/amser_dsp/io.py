"""Audio input through soundfile, resampled with scipy."""

from __future__ import annotations

import os
from math import gcd
from typing import BinaryIO

import numpy as np

from .errors import AudioError

__all__ = ["AUDIO_SUFFIXES", "load_audio"]

#: The file names the commands take as audio when they list a folder (what libsndfile reads).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".mp3")


def load_audio(source: str | os.PathLike[str] | BinaryIO, sample_rate: int | None = 16_000) -> np.ndarray:
    """Read an audio file as mono float32 samples at ``sample_rate``.

    Parameters
    ----------
    source : path or binary file object
        Anything libsndfile reads: WAV, FLAC, OGG/Vorbis, OGG/Opus, AIFF, ...
    sample_rate : int or None
        Target rate in Hz; the file is resampled with
        :func:`scipy.signal.resample_poly` if it differs.  ``None`` keeps the
        file's own rate.

    Returns
    -------
    ndarray
        1-D float32.  Integer PCM is scaled to [-1, 1) (divided by 2**15 for
        16-bit); several channels are averaged to one.

    Raises
    ------
    AudioError
        If the file is missing, unreadable, not audio, or holds no samples.
    """
    import soundfile as sf

    if sample_rate is not None and (
        isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0
    ):
        raise AudioError(f"sample_rate must be a positive integer in Hz or None, got {sample_rate!r}")
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<file object>")
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise AudioError(f"audio file not found: {name}")
    try:
        data, file_rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"cannot read audio from {name}: {exc}") from None
    if data.size == 0:
        raise AudioError(f"audio file {name} holds no samples")
    samples = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if sample_rate is not None and file_rate != sample_rate:
        from scipy.signal import resample_poly

        g = gcd(int(file_rate), sample_rate)
        samples = resample_poly(samples, sample_rate // g, int(file_rate) // g).astype(np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)
