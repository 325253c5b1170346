"""Audio files uploaded to the service (``POST /v1/transcribe/audio``): the baseline a device sends without amser.

A device that cannot compute features uploads its recording as WAV, FLAC or
Ogg Opus; the service decodes it and computes the ``whisper`` preset's
features itself, so both paths end in the same recogniser and their transfer
times compare end to end (docs/transfer.md).  The duration is checked from the
file's header before anything is decoded, so a hostile upload cannot make the
service allocate more than ``max_seconds`` of samples.
"""

from __future__ import annotations

import io

import numpy as np

from ... import features, load_audio
from ...config import get_preset
from ...errors import LimitExceededError, TooLongError
from ...io import audio_header

__all__ = ["audio_features"]


def audio_features(blob: bytes, *, max_seconds: float) -> tuple[np.ndarray, float]:
    """``whisper``-preset features of an audio file's bytes, and its duration in seconds.

    Raises
    ------
    AudioError
        If the bytes are not audio that libsndfile reads (WAV, FLAC, Ogg Opus/Vorbis, ...).
    LimitExceededError
        If the file says it lasts longer than ``max_seconds`` or has more than 8 channels.
    """
    header = audio_header(io.BytesIO(blob))  # rate and channels checked from the header, nothing decoded yet
    seconds = header.frames / header.sample_rate
    if seconds > max_seconds:
        raise TooLongError(f"audio of {seconds:.1f} s exceeds the limit of {max_seconds:g} s")
    if header.channels > 8:
        raise LimitExceededError(f"audio has {header.channels} channels; at most 8 are accepted")
    config = get_preset("whisper")
    # max_seconds again while reading: a header may understate what follows.
    audio = load_audio(io.BytesIO(blob), sample_rate=config.sample_rate, max_seconds=max_seconds)
    return features(audio, config.sample_rate, preset=config), seconds
