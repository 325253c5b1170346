"""Composition of the reference stages into log-Mel features, and the checks at the door.

This module is the specification of how the stages combine; it imports no back
end.  The dispatching :func:`amser_dsp.features` lives above both (in
:mod:`amser_dsp.api`).
"""

from __future__ import annotations

import numpy as np

from ..config import FeatureConfig
from ..errors import AudioError, SampleRateError
from ..filterbank import mel_filterbank_for
from .stages import (
    apply_mel,
    frame_signal,
    log_compress,
    power_spectrum,
    preemphasis,
    remove_dc_offset,
    window_for,
)

__all__ = [
    "PCM_SCALES",
    "as_float_audio",
    "check_audio",
    "check_padding",
    "compress",
    "condition_signal",
    "frame_energies",
    "log_mel",
    "mel_energies",
    "padded_signal",
    "with_trailing_silence",
]

# Smallest trailing axis accepted as a signal when leading axes are larger:
# (n_samples, n_channels) arrays from soundfile end in 1-8 channels.
_MAX_CHANNELS = 8

#: Integer PCM accepted as audio, with the factor that maps it to [-1, 1): what
#: soundfile, sounddevice and PyAudio deliver as ``int16`` / ``int32``.
PCM_SCALES = {np.dtype(np.int16): 2.0**-15, np.dtype(np.int32): 2.0**-31}


def as_float_audio(x: np.ndarray) -> np.ndarray:
    """Float samples of ``x``: float arrays unchanged, int16 / int32 PCM scaled by 2**-15 / 2**-31 to float32.

    Raises
    ------
    AudioError
        For any other dtype (unsigned or 8/64-bit integers, complex, bool, objects).
    """
    if x.dtype.kind == "f":
        return x
    scale = PCM_SCALES.get(x.dtype)
    if scale is None:
        if x.dtype.kind in "iu":
            raise AudioError(
                f"audio has integer dtype {x.dtype}; expected float samples in [-1, 1) or int16 / int32 PCM "
                "(convert other integer formats yourself, or use amser_dsp.load_audio)"
            )
        raise AudioError(f"audio has dtype {x.dtype}; expected float32 or float64 samples, or int16 / int32 PCM")
    return x.astype(np.float32) * np.float32(scale)


def check_audio(audio: object, sample_rate: int, config: FeatureConfig) -> np.ndarray:
    """Validate audio for ``config`` and return it as a C-contiguous float array.

    Float64 stays float64; float16 and float32 become float32; int16 and int32
    PCM become float32 scaled to [-1, 1) (:func:`as_float_audio`).

    Raises
    ------
    SampleRateError
        If ``sample_rate`` differs from ``config.sample_rate``.
    AudioError
        If the audio is not a real numeric array of a supported dtype, is empty,
        holds NaN or Inf, or looks like ``(n_samples, n_channels)`` rather than
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
    if x.ndim == 0:
        raise AudioError("audio is a scalar; expected an array of shape (..., n_samples)")
    if x.size == 0:
        raise AudioError(f"audio is empty (shape {x.shape}); expected at least one sample")
    if x.ndim > 1 and x.shape[-1] <= _MAX_CHANNELS and max(x.shape[:-1]) > x.shape[-1]:
        raise AudioError(
            f"audio of shape {x.shape} looks like (n_samples, n_channels); expected "
            "(..., n_samples): transpose it, or mix down to mono (load_audio does)"
        )
    x = as_float_audio(x)
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples; expected finite values")
    return np.ascontiguousarray(x)


def with_trailing_silence(samples: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, FeatureConfig]:
    """Append ``config.trailing_silence`` zeros to the last axis; return them and the config without it."""
    if not config.trailing_silence:
        return samples, config
    zeros = np.zeros((*samples.shape[:-1], config.trailing_silence), samples.dtype)
    return np.concatenate([samples, zeros], axis=-1), config.replace(trailing_silence=0)


def condition_signal(samples: np.ndarray, config: FeatureConfig, *, previous: float | np.ndarray = 0.0) -> np.ndarray:
    """Scale and (signal-scope) pre-emphasise samples: the sample-wise stages before framing.

    ``previous`` is the raw sample before ``samples[..., 0]`` (0 at the start
    of a signal; the last sample of the previous block when streaming).  With
    nothing to do, ``samples`` itself is returned (no copy).
    """
    dtype = samples.dtype.type
    x = samples * dtype(config.input_scale) if config.input_scale != 1.0 else samples
    if config.preemphasis and config.preemphasis_scope == "signal":
        x = preemphasis(x, config.preemphasis, previous=np.asarray(previous, samples.dtype) * dtype(config.input_scale))
    return x


def check_padding(n_samples: int, config: FeatureConfig) -> None:
    """Raise :class:`AudioError` if ``config`` reflect-pads and ``n_samples`` (plus trailing silence) are too few.

    Reflection needs more samples than the padding; every back end calls this
    first, so too-short audio fails the same way everywhere, even when it would
    give no frame.
    """
    m, p = n_samples + config.trailing_silence, config.center_pad
    if p and config.pad_mode == "reflect" and m <= p:
        raise AudioError(f"reflect padding needs more than {p} samples, got {m}")


def padded_signal(samples: np.ndarray, config: FeatureConfig, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Samples ``[start, stop)`` of the signal the frames are cut from, computed from that range alone.

    That signal is ``samples`` followed by ``config.trailing_silence`` zeros,
    conditioned (:func:`condition_signal`), then padded by ``config.center_pad``
    samples on both sides with ``config.pad_mode``.  Only the samples the range
    reads are conditioned (the padding reflects samples near the ends), so
    framing a long signal block by block never copies all of it; a range inside
    the audio with nothing to condition is a view of ``samples``.

    Raises
    ------
    AudioError
        If reflect padding is asked for and the signal is not longer than the padding.
    """
    n = samples.shape[-1]
    check_padding(n, config)
    m = n + config.trailing_silence  # conditioned samples
    p = config.center_pad
    stop = m + 2 * p if stop is None else stop
    reflect, edge = config.pad_mode == "reflect", config.pad_mode == "edge"
    # Conditioned samples [lo, hi) the range reads: its interior, and the sources of its padding.
    lo, hi = min(max(start - p, 0), m), min(max(stop - p, 0), m)
    spans = [(lo, hi)] if hi > lo else []
    n_left, n_right = max(min(stop, p) - start, 0), max(stop - max(start, p + m), 0)
    if n_left and (reflect or edge):
        spans.append((p - start - n_left + 1, p - start + 1) if reflect else (0, 1))
    first_right = max(start, p + m) - p  # padded index of the first right-pad sample, minus p
    if n_right and (reflect or edge):
        spans.append((2 * m - 1 - first_right - n_right, 2 * m - 1 - first_right) if reflect else (m - 1, m))
    if not spans:
        return np.zeros((*samples.shape[:-1], stop - start), samples.dtype)
    a, b = min(s[0] for s in spans), max(s[1] for s in spans)
    raw = samples[..., a : min(b, n)]
    if b > n:  # the trailing silence
        raw = np.concatenate([raw, np.zeros((*samples.shape[:-1], b - max(a, n)), samples.dtype)], axis=-1)
    previous = samples[..., a - 1] if 0 < a <= n else 0.0
    cond = condition_signal(raw, config, previous=previous)
    if not (n_left or n_right):
        return cond[..., lo - a : hi - a]
    parts = []
    if n_left:
        if reflect:
            parts.append(cond[..., p - start - n_left + 1 - a : p - start + 1 - a][..., ::-1])
        else:
            fill = cond[..., :1] if edge else np.zeros_like(cond[..., :1])
            parts.append(np.broadcast_to(fill, (*cond.shape[:-1], n_left)))
    parts.append(cond[..., lo - a : hi - a])
    if n_right:
        if reflect:
            parts.append(cond[..., 2 * m - 1 - first_right - n_right - a : 2 * m - 1 - first_right - a][..., ::-1])
        else:
            fill = cond[..., m - 1 - a : m - a] if edge else np.zeros_like(cond[..., :1])
            parts.append(np.broadcast_to(fill, (*cond.shape[:-1], n_right)))
    return np.concatenate(parts, axis=-1)


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
    check_padding(samples.shape[-1], config)
    n_frames = config.num_frames(samples.shape[-1])
    out = np.empty((*samples.shape[:-1], config.n_mels, n_frames), dtype=samples.dtype)
    step = max(n_frames if block_frames is None else block_frames, 1)
    for t0 in range(0, n_frames, step):
        t1 = min(t0 + step, n_frames)
        signal = padded_signal(
            samples, config, t0 * config.hop_length, (t1 - 1) * config.hop_length + config.frame_length
        )
        frames = frame_signal(signal, config.frame_length, config.hop_length)
        out[..., :, t0:t1] = frame_energies(frames, config)
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
    out = mel_energies(samples, config, block_frames=block_frames)
    return compress(out, config, out=out)
