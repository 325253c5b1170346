"""The reference front end: one small pure function per stage.

Every function works on the last axis and broadcasts over leading (batch)
axes.  Float32 stays float32 and float64 stays float64.  These functions are
the specification every other back end is tested against: keep them simple.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import DTypeLike

from ..errors import AudioError, ConfigError

if TYPE_CHECKING:
    from ..config import FeatureConfig

__all__ = [
    "apply_mel",
    "frame_signal",
    "log_compress",
    "power_spectrum",
    "preemphasis",
    "remove_dc_offset",
    "window",
    "window_for",
]


# ------------------------------------------------------------- pre-emphasis
def preemphasis(x: np.ndarray, coefficient: float, *, previous: np.ndarray | float = 0.0) -> np.ndarray:
    """First-order high-pass ``y[n] = x[n] - c * x[n-1]`` along the last axis.

    Parameters
    ----------
    x : ndarray
        Signal(s), shape ``(..., n)``.
    coefficient : float
        ``c``; 0 returns a copy of ``x``.
    previous : float or ndarray
        The sample before ``x[..., 0]`` (broadcast over the leading axes).
        0 for the start of a signal; the last sample of the previous block when
        streaming; ``x[..., 0]`` for Kaldi's per-frame form.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.
    """
    c = x.dtype.type(coefficient)
    y = np.empty_like(x)
    y[..., 1:] = x[..., 1:] - c * x[..., :-1]
    y[..., 0] = x[..., 0] - c * np.asarray(previous, dtype=x.dtype)
    return y


# ------------------------------------------------------------------ framing
def frame_signal(
    x: np.ndarray,
    frame_length: int,
    hop_length: int,
    *,
    center: bool = False,
    pad_mode: Literal["reflect", "constant", "edge"] = "reflect",
) -> np.ndarray:
    """Cut the last axis into overlapping frames.

    Parameters
    ----------
    x : ndarray
        Signal(s), shape ``(..., n)``.
    frame_length, hop_length : int
        Frame size and step in samples.
    center : bool
        If true, pad ``frame_length // 2`` samples on both sides with
        ``pad_mode`` first, so frame ``t`` is centred on sample ``t * hop``.
    pad_mode : {"reflect", "constant", "edge"}
        A :func:`numpy.pad` mode used when ``center`` is true.

    Returns
    -------
    ndarray
        Shape ``(..., n_frames, frame_length)``.  Without centring this is a
        read-only strided view of ``x`` (no copy); ``n_frames`` is
        ``1 + (n - frame_length) // hop_length`` or 0 when ``n < frame_length``.
    """
    if center:
        pad = frame_length // 2
        if pad_mode == "reflect" and x.shape[-1] <= pad:
            raise AudioError(f"reflect padding needs more than {pad} samples, got {x.shape[-1]}")
        widths = [(0, 0)] * (x.ndim - 1) + [(pad, pad)]
        x = np.pad(x, widths, mode=pad_mode)
    n = x.shape[-1]
    if n < frame_length:
        return np.empty((*x.shape[:-1], 0, frame_length), dtype=x.dtype)
    frames = np.lib.stride_tricks.sliding_window_view(x, frame_length, axis=-1)
    return frames[..., ::hop_length, :]


def remove_dc_offset(frames: np.ndarray) -> np.ndarray:
    """Subtract each frame's mean (Kaldi's ``remove_dc_offset``)."""
    return frames - frames.mean(axis=-1, keepdims=True, dtype=frames.dtype)


# ------------------------------------------------------------------- window
@functools.lru_cache(maxsize=64)
def _window(name: str, length: int, periodic: bool, dtype: np.dtype) -> np.ndarray:
    # Periodic windows are the symmetric window of length + 1, last sample cut.
    m = length + 1 if periodic else length
    n = np.arange(length, dtype=np.float64)
    denom = max(m - 1, 1)
    if name == "hamming":
        w = 0.54 - 0.46 * np.cos(2 * np.pi * n / denom)
    elif name == "hann":
        w = 0.5 - 0.5 * np.cos(2 * np.pi * n / denom)
    elif name == "povey":
        w = (0.5 - 0.5 * np.cos(2 * np.pi * n / denom)) ** 0.85
    elif name == "rectangular":
        w = np.ones(length)
    else:
        raise ConfigError(f"unknown window {name!r}; expected one of ['hamming', 'hann', 'povey', 'rectangular']")
    w = w.astype(dtype)
    w.flags.writeable = False
    return w


def window(name: str, length: int, *, periodic: bool = False, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Return an analysis window (cached, read-only).

    Parameters
    ----------
    name : {"hamming", "hann", "povey", "rectangular"}
        ``hamming``: ``0.54 - 0.46 cos(2 pi n / (M - 1))``; ``hann``:
        ``0.5 - 0.5 cos(2 pi n / (M - 1))``; ``povey``: ``hann ** 0.85``.
    length : int
        Number of samples.
    periodic : bool
        Periodic (``M = length + 1``, as ``torch.hann_window``) or symmetric
        (``M = length``, as ``numpy.hamming`` and Kaldi).
    dtype : dtype
        Output dtype.
    """
    return _window(name, int(length), bool(periodic), np.dtype(dtype))


def window_for(config: FeatureConfig, dtype: DTypeLike = np.float32) -> np.ndarray:
    """The window ``config`` asks for (cached, read-only)."""
    return window(config.window, config.frame_length, periodic=config.periodic_window, dtype=dtype)


# --------------------------------------------------------------- spectrum
def power_spectrum(frames: np.ndarray, n_fft: int, *, power: float = 2.0) -> np.ndarray:
    """``|rfft(frames, n_fft)| ** power`` over the last axis.

    Frames shorter than ``n_fft`` are zero-padded at the end.  Returns
    ``(..., n_fft // 2 + 1)`` in the real dtype matching ``frames``.
    """
    import scipy.fft

    if frames.shape[-1] > n_fft:
        raise ConfigError(f"n_fft={n_fft} is shorter than the frame length {frames.shape[-1]}")
    spectrum = scipy.fft.rfft(frames, n=n_fft, axis=-1)
    if power == 2.0:
        return spectrum.real**2 + spectrum.imag**2
    return np.abs(spectrum) ** power


def apply_mel(power: np.ndarray, filterbank: np.ndarray) -> np.ndarray:
    """Mel energies ``filterbank @ power.T``: ``(..., frames, bins)`` to ``(..., n_mels, frames)``."""
    return np.matmul(filterbank.astype(power.dtype, copy=False), np.swapaxes(power, -1, -2))


# -------------------------------------------------------------------- log
def log_compress(
    mel: np.ndarray,
    *,
    log: str = "ln",
    floor: float = 1e-10,
    dynamic_range: float | None = None,
    offset: float = 0.0,
    scale: float = 1.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(max(log(max(mel, floor)), peak - dynamic_range) + offset) * scale``.

    ``peak`` is the maximum over the last two axes (one utterance), so a batch
    gives the same result as a loop over its items.  ``out=mel`` works in place.
    """
    dtype = mel.dtype.type
    out = np.maximum(mel, dtype(floor), out=out)
    (np.log10 if log == "log10" else np.log)(out, out=out)
    if dynamic_range is not None:
        peak = out.max(axis=(-2, -1), keepdims=True) if out.size else out
        np.maximum(out, peak - dtype(dynamic_range), out=out)
    if offset:
        out += dtype(offset)
    if scale != 1.0:
        out *= dtype(scale)
    return out
