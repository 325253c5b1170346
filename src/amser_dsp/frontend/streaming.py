"""Streaming log-Mel extraction whose output equals the offline :func:`amser_dsp.features`.

The shape follows kaldi-native-fbank's ``OnlineFbank``: :meth:`OnlineFeatures.accept_waveform`
takes blocks of any size, :meth:`OnlineFeatures.input_finished` flushes the end,
:attr:`OnlineFeatures.num_frames_ready` tells how many frames can be popped and
:meth:`OnlineFeatures.pop` returns them.

Exactness: the offline reference applies element-wise operations (input
scale, pre-emphasis), then per-frame operations (DC removal, per-frame
pre-emphasis, window, FFT, Mel product, log).  The streaming extractor keeps
the pre-emphasis state and the samples a frame still needs, pads the start and
the end exactly as ``numpy.pad`` does for the whole signal, and runs the same
per-frame functions, so each frame is computed from identical samples by
identical operations.  One exception: the Mel product is a BLAS matrix
product whose rounding depends on the batch shape, so with ``exact=True`` (the
default) frames are released in the NumPy back end's aligned blocks of 512
frames (5.12 s at a 10 ms hop) and at the end; the result then equals
``features(x, sr, config, backend="numpy")`` bit for bit.  ``exact=False``
releases every frame at once (latency of one frame), equal to within float32
rounding of the Mel product (about 1 ulp).

Dynamic range (Whisper's ``max - 8`` clamp) needs the maximum of an utterance,
which a stream does not know in advance.  Here the clamp is applied to the
frames returned by each :meth:`OnlineFeatures.pop` call: the peak is the
maximum over those frames.  :func:`chunked_features` computes the same thing
offline for a fixed chunk size, and :class:`amser_dsp.StreamEncoder` pops one
chunk at a time, so a streamed container and a chunked whole-file container
are identical.  Without ``dynamic_range`` the chunking does not matter.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..config import FeatureConfig, get_preset
from ..errors import AudioError
from .extract import check_audio, mel_energies
from .stages import (
    apply_mel,
    log_compress,
    mel_filterbank_for,
    power_spectrum,
    preemphasis,
    remove_dc_offset,
    window_for,
)

__all__ = ["OnlineFeatures", "chunked_features"]

#: Frames per Mel block: the NumPy back end's ``block_frames``, so results match it bit for bit.
_BLOCK = 512


def _compress(mel: np.ndarray, config: FeatureConfig) -> np.ndarray:
    return log_compress(
        mel,
        log=config.log,
        floor=config.log_floor,
        dynamic_range=config.dynamic_range,
        offset=config.log_offset,
        scale=config.log_scale,
    )


def chunked_features(
    audio: ArrayLike, sample_rate: int, preset: str | FeatureConfig = "amser", *, chunk_frames: int
) -> np.ndarray:
    """Offline features with the dynamic-range clamp applied per chunk of ``chunk_frames``.

    Equals :func:`amser_dsp.features` when the config has no ``dynamic_range``,
    and equals what :class:`OnlineFeatures` returns when popped ``chunk_frames``
    at a time otherwise.
    """
    config = get_preset(preset)
    x = check_audio(audio, sample_rate, config)
    if x.ndim != 1:
        raise AudioError(f"chunked_features takes one signal of shape (n_samples,), got {x.shape}")
    mel = mel_energies(x, config, block_frames=_BLOCK)
    out = np.empty_like(mel)
    n = mel.shape[-1]
    for start in range(0, n, chunk_frames):
        out[:, start : start + chunk_frames] = _compress(mel[:, start : start + chunk_frames], config)
    return out


class OnlineFeatures:
    """Incremental log-Mel extractor, equal to the offline reference for any block sizes.

    Parameters
    ----------
    preset : str or FeatureConfig
        The feature config.
    dtype : {numpy.float32, numpy.float64}
        Arithmetic dtype (the offline result's dtype for the same input dtype).

    Examples
    --------
    >>> import numpy as np, amser_dsp
    >>> from amser_dsp.frontend.streaming import OnlineFeatures
    >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    >>> online = OnlineFeatures("amser")
    >>> for block in np.array_split(x, 7):
    ...     online.accept_waveform(block)
    >>> online.input_finished()
    >>> bool(np.array_equal(online.pop(), amser_dsp.features(x, 16000, "amser")))
    True
    """

    def __init__(
        self, preset: str | FeatureConfig = "amser", *, dtype: type = np.float32, exact: bool = True
    ) -> None:
        self.config = get_preset(preset)
        self.exact = bool(exact)
        self._spec: list[np.ndarray] = []  # power spectra (frames, bins) waiting for an aligned Mel block
        self._spec_count = 0
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise AudioError(f"dtype={self.dtype} is invalid: expected float32 or float64")
        cfg = self.config
        self._win = window_for(cfg, self.dtype)
        self._bank = mel_filterbank_for(cfg, self.dtype)
        self._pad = cfg.center_pad
        self._n_in = 0  # samples accepted
        self._prev = self.dtype.type(0)  # last scaled sample, for signal pre-emphasis
        self._head: np.ndarray | None = None  # the first samples, until left padding can be made
        self._buf = np.empty(0, self.dtype)  # padded-signal samples from frame `_next` on
        self._next = 0  # index of the next frame to compute
        self._finished = False
        self._mel: list[np.ndarray] = []  # computed Mel energies not yet popped
        self._ready = 0

    # ---------------------------------------------------------------- input
    def accept_waveform(self, samples: ArrayLike, sample_rate: int | None = None) -> None:
        """Append a block of samples (any length, including 0)."""
        if self._finished:
            raise AudioError("accept_waveform after input_finished; make a new OnlineFeatures")
        x = np.asarray(samples)
        if x.size == 0:
            return
        x = check_audio(x, self.config.sample_rate if sample_rate is None else sample_rate, self.config)
        if x.ndim != 1:
            raise AudioError(f"samples must be one channel of shape (n,), got {x.shape}")
        x = x.astype(self.dtype, copy=False)
        cfg = self.config
        if cfg.input_scale != 1.0:
            x = x * self.dtype.type(cfg.input_scale)
        if cfg.preemphasis and cfg.preemphasis_scope == "signal":
            y = preemphasis(x, cfg.preemphasis, previous=self._prev)
            self._prev = x[-1]
            x = y
        self._n_in += x.size
        if (self._pad and self._head is not None) or (self._pad and self._n_in - x.size == 0):
            # Left padding needs the first pad + 1 samples (reflect reads x[1..pad]).
            head = x if self._head is None else np.concatenate([self._head, x])
            if head.size <= self._pad:
                self._head = head
                return
            self._head = None
            left = np.pad(head[: self._pad + 1], (self._pad, 0), mode=cfg.pad_mode)[: self._pad]
            x = np.concatenate([left, head])
        self._buf = np.concatenate([self._buf, x]) if self._buf.size else x
        self._compute(final=False)

    def input_finished(self) -> None:
        """Declare the end of the input: pad the end and compute the last frames."""
        if self._finished:
            return
        self._finished = True
        cfg = self.config
        if self._pad:
            if self._head is not None:
                head = self._head
                self._head = None
                if cfg.pad_mode == "reflect" and head.size <= self._pad:
                    raise AudioError(f"reflect padding needs more than {self._pad} samples, got {head.size}")
                self._buf = np.pad(head, (self._pad, self._pad), mode=cfg.pad_mode)
            elif self._n_in:
                tail_src = self._buf[-(self._pad + 1) :]
                right = np.pad(tail_src, (0, self._pad), mode=cfg.pad_mode)[-self._pad :]
                self._buf = np.concatenate([self._buf, right])
        self._compute(final=True)

    # ---------------------------------------------------------------- frames
    def _compute(self, *, final: bool) -> None:
        cfg = self.config
        fl, hop = cfg.frame_length, cfg.hop_length
        total = cfg.num_frames(self._n_in)
        available = 0 if self._buf.size < fl else 1 + (self._buf.size - fl) // hop
        # Before the end, a frame counted in num_frames(samples so far) is final.
        limit = total - self._next
        count = min(available, limit)
        if count > 0:
            frames = np.lib.stride_tricks.sliding_window_view(self._buf, fl)[::hop][:count]
            self._spec.append(self._frames_to_spectrum(frames))
            self._spec_count += count
            self._next += count
            self._buf = self._buf[count * hop :].copy()
        if final:
            self._buf = self._buf[:0]
        # The Mel product (BLAS) rounds differently for different batch shapes, so
        # in exact mode it runs on the NumPy back end's aligned blocks of frames.
        block = _BLOCK if self.exact else max(self._spec_count, 1)
        if self._spec_count >= block or (final and self._spec_count):
            spec = np.concatenate(self._spec) if len(self._spec) > 1 else self._spec[0]
            usable = self._spec_count if final else (self._spec_count // block) * block
            for start in range(0, usable, block):
                self._mel.append(apply_mel(spec[start : start + block], self._bank))
            rest = spec[usable:]
            self._spec = [rest] if rest.shape[0] else []
            self._spec_count -= usable
            self._ready += usable

    def _frames_to_spectrum(self, block: np.ndarray) -> np.ndarray:
        # The per-frame body of extract.mel_energies, unchanged (the FFT is per frame, exact).
        cfg = self.config
        if cfg.remove_dc:
            block = remove_dc_offset(block)
        if cfg.preemphasis and cfg.preemphasis_scope == "frame":
            block = preemphasis(block, cfg.preemphasis, previous=block[..., 0])
        return power_spectrum(block * self._win, cfg.n_fft, power=cfg.power)

    @property
    def num_frames_ready(self) -> int:
        """Frames computed and not yet popped."""
        return self._ready

    @property
    def is_finished(self) -> bool:
        """True after :meth:`input_finished`."""
        return self._finished

    def pop_mel(self, n: int | None = None) -> np.ndarray:
        """Pop up to ``n`` frames (all if None) of Mel energies before the log, ``(n_mels, k)``."""
        k = self._ready if n is None else max(0, min(int(n), self._ready))
        mel = np.concatenate(self._mel, axis=1) if len(self._mel) > 1 else (
            self._mel[0] if self._mel else np.empty((self.config.n_mels, 0), self.dtype)
        )
        out, rest = mel[:, :k], mel[:, k:]
        self._mel = [rest] if rest.shape[1] else []
        self._ready -= k
        return np.ascontiguousarray(out)

    def pop(self, n: int | None = None) -> np.ndarray:
        """Pop up to ``n`` frames (all if None) of log-Mel features, ``(n_mels, k)``.

        With ``dynamic_range`` set, the clamp is relative to the peak of the
        frames returned by this call.
        """
        return _compress(self.pop_mel(n), self.config)
