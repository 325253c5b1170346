"""The NumPy reference front end: stages, their composition, and streaming extraction."""

from ..filterbank import hz_to_mel, mel_filterbank, mel_filterbank_for, mel_to_hz
from .extract import check_audio, log_mel, mel_energies, padded_signal
from .stages import (
    apply_mel,
    frame_signal,
    log_compress,
    power_spectrum,
    preemphasis,
    remove_dc_offset,
    window,
    window_for,
)
from .streaming import OnlineFeatures

__all__ = [
    "OnlineFeatures",
    "apply_mel",
    "check_audio",
    "frame_signal",
    "hz_to_mel",
    "log_compress",
    "log_mel",
    "mel_energies",
    "mel_filterbank",
    "mel_filterbank_for",
    "mel_to_hz",
    "padded_signal",
    "power_spectrum",
    "preemphasis",
    "remove_dc_offset",
    "window",
    "window_for",
]
