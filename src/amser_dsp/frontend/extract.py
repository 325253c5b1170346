"""Composition of the stages into log-Mel features, and checks at the door."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..config import FeatureConfig, get_preset
from ..errors import AudioError, SampleRateError
from .stages import (
    apply_mel,
    frame_signal,
    log_compress,
    mel_filterbank_for,
    power_spectrum,
    preemphasis,
    remove_dc_offset,
    window_for,
)

__all__ = [
    "check_audio",
    "compress",
    "condition_signal",
    "features",
    "frame_energies",
    "log_mel",
    "mel_energies",
    "with_trailing_silence",
]

# Smallest trailing axis accepted as a signal when leading axes are larger:
# (n_samples, n_channels) arrays from soundfile end in 1-8 channels.
_MAX_CHANNELS = 8


def check_audio(audio: object, sample_rate: int, config: FeatureConfig) -> np.ndarray:
    """Validate audio for ``config`` and return it as a C-contiguous float array.

    Float64 stays float64; float16 and float32 become float32.

    Raises
    ------
    SampleRateError
        If ``sample_rate`` differs from ``config.sample_rate``.
    AudioError
        If the audio is not a real floating-point array, is empty, holds NaN
        or Inf, or looks like ``(n_samples, n_channels)`` rather than
        ``(..., n_samples)``.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise SampleRateError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")
    if sample_rate != config.sample_rate:
        raise SampleRateError(
            f"audio sample rate {sample_rate} Hz does not match the config's "
            f"{config.sample_rate} Hz; resample first (amser_dsp.load_audio(path, "
            f"sample_rate={config.sample_rate}) does)"
        )
    try:
        x = np.asarray(audio)
    except Exception as exc:  # ragged lists, objects numpy cannot hold
        raise AudioError(f"audio could not be converted to an array: {exc}") from None
    if x.dtype.kind in "iu":
        raise AudioError(
            f"audio has integer dtype {x.dtype}; expected floating-point samples in [-1, 1) "
            "(divide 16-bit PCM by 32768, or use amser_dsp.load_audio)"
        )
    if x.dtype.kind != "f":
        raise AudioError(f"audio has dtype {x.dtype}; expected float32 or float64 samples")
    if x.ndim == 0:
        raise AudioError("audio is a scalar; expected an array of shape (..., n_samples)")
    if x.size == 0:
        raise AudioError(f"audio is empty (shape {x.shape}); expected at least one sample")
    if x.ndim > 1 and x.shape[-1] <= _MAX_CHANNELS and max(x.shape[:-1]) > x.shape[-1]:
        raise AudioError(
            f"audio of shape {x.shape} looks like (n_samples, n_channels); expected "
            "(..., n_samples): transpose it, or mix down to mono (load_audio does)"
        )
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples; expected finite values")
    return np.ascontiguousarray(x)


def with_trailing_silence(samples: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, FeatureConfig]:
    """Append ``config.trailing_silence`` zeros to the last axis; return them and the config without it.

    Every back end starts its ``log_mel`` with this, so the silence is
    handled once, the same way, everywhere.
    """
    if not config.trailing_silence:
        return samples, config
    zeros = np.zeros((*samples.shape[:-1], config.trailing_silence), samples.dtype)
    return np.concatenate([samples, zeros], axis=-1), config.replace(trailing_silence=0)


def condition_signal(samples: np.ndarray, config: FeatureConfig, *, previous: float = 0.0) -> np.ndarray:
    """Scale and (signal-scope) pre-emphasise samples: the sample-wise stages before framing.

    ``previous`` is the raw sample before ``samples[..., 0]`` (0 at the start
    of a signal; the last sample of the previous block when streaming).
    """
    dtype = samples.dtype.type
    x = samples * dtype(config.input_scale) if config.input_scale != 1.0 else samples
    if config.preemphasis and config.preemphasis_scope == "signal":
        x = preemphasis(x, config.preemphasis, previous=dtype(previous) * dtype(config.input_scale))
    return x


def frame_energies(frames: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Mel energies ``(..., n_mels, n)`` of frames ``(..., n, frame_length)``: the per-frame stages."""
    if config.remove_dc:
        frames = remove_dc_offset(frames)
    if config.preemphasis and config.preemphasis_scope == "frame":
        frames = preemphasis(frames, config.preemphasis, previous=frames[..., 0])
    spectrum = power_spectrum(frames * window_for(config, frames.dtype), config.n_fft, power=config.power)
    return apply_mel(spectrum, mel_filterbank_for(config, frames.dtype))


def mel_energies(samples: np.ndarray, config: FeatureConfig, *, block_frames: int | None = None) -> np.ndarray:
    """Mel filter-bank energies before the log, shape ``(..., n_mels, n_frames)``.

    Parameters
    ----------
    samples : ndarray
        Checked float32 or float64 audio, ``(..., n_samples)``.
    config : FeatureConfig
        How to make the features.
    block_frames : int, optional
        Process this many frames at a time (keeps intermediates in cache on
        long audio).  ``None`` does all frames at once.  The result does not
        depend on it beyond rounding.
    """
    samples, config = with_trailing_silence(samples, config)
    x = condition_signal(samples, config)
    frames = frame_signal(
        x,
        config.frame_length,
        config.hop_length,
        center=config.padding == "center",
        pad_mode=config.pad_mode,
    )
    n_frames = config.num_frames(samples.shape[-1])
    frames = frames[..., :n_frames, :]  # drop_last_frame
    out = np.empty((*samples.shape[:-1], config.n_mels, n_frames), dtype=samples.dtype)
    step = n_frames if block_frames is None else block_frames
    for start in range(0, n_frames, max(step, 1)):
        out[..., :, start : start + step] = frame_energies(frames[..., start : start + step, :], config)
    return out


def compress(mel: np.ndarray, config: FeatureConfig, *, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`log_compress` with the parameters of ``config`` (``out=mel`` works in place)."""
    return log_compress(
        mel,
        out=out,
        log=config.log,
        floor=config.log_floor,
        dynamic_range=config.dynamic_range,
        offset=config.log_offset,
        scale=config.log_scale,
    )


def log_mel(samples: np.ndarray, config: FeatureConfig, *, block_frames: int | None = None) -> np.ndarray:
    """Log-Mel features of checked audio: :func:`mel_energies` then :func:`log_compress`."""
    return compress(mel_energies(samples, config, block_frames=block_frames), config)


def features(
    audio: ArrayLike,
    sample_rate: int,
    preset: str | FeatureConfig = "amser",
    *,
    backend: str | None = None,
) -> np.ndarray:
    """Log-Mel filter-bank features of ``audio``.

    Parameters
    ----------
    audio : array_like
        Float samples in [-1, 1), shape ``(n_samples,)`` or a batch
        ``(..., n_samples)`` of equal-length signals.
    sample_rate : int
        Sample rate of ``audio`` in Hz; must equal the config's.
    preset : str or FeatureConfig
        A preset name (``"amser"``, ``"whisper"``, ``"kaldi"``) or a config.
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
    from ..backends import resolve

    config = get_preset(preset)
    x = check_audio(audio, sample_rate, config)
    return resolve(backend).log_mel(x, config)
