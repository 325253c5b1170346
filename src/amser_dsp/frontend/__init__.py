"""The NumPy reference front end: stages and their composition."""

from .extract import check_audio, features, log_mel, mel_energies
from .stages import (
    apply_mel,
    frame_signal,
    hz_to_mel,
    log_compress,
    mel_filterbank,
    mel_filterbank_for,
    mel_to_hz,
    power_spectrum,
    preemphasis,
    remove_dc_offset,
    window,
    window_for,
)

__all__ = [
    "apply_mel",
    "check_audio",
    "features",
    "frame_signal",
    "hz_to_mel",
    "log_compress",
    "log_mel",
    "mel_energies",
    "mel_filterbank",
    "mel_filterbank_for",
    "mel_to_hz",
    "power_spectrum",
    "preemphasis",
    "remove_dc_offset",
    "window",
    "window_for",
]
