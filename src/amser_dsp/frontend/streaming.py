"""Streaming feature extraction: audio in blocks of any size, frames out as soon as they are known.

The framing state (the previous sample for pre-emphasis, the samples that
later frames still need, the centre padding at both ends) carries across
block borders, so the frames equal the offline ones.  Features are computed
chunk by chunk with the reference stages; :func:`chunked_features` applies
the same computation to a whole signal, so a streamed encode and a chunked
whole-file encode are byte-identical.

The per-utterance dynamic-range clamp (``config.dynamic_range``, Whisper's
``max - 8``) cannot be known before the end of the audio; streaming applies it
per emitted chunk, using the chunk's own maximum.  A one-chunk encode equals
offline :func:`~amser_dsp.features` exactly in that respect.
"""

from __future__ import annotations

import numpy as np

from ..config import DEFAULT_PRESET, FeatureConfig, get_preset
from ..errors import AudioError
from .extract import check_audio, compress, condition_signal, frame_energies
from .stages import frame_signal

__all__ = ["ChunkedFeatures", "OnlineFeatures", "chunked_features"]


class ChunkedFeatures:
    """Turn a stream of samples into feature chunks of ``chunk_frames`` frames.

    Parameters
    ----------
    config : FeatureConfig or preset name
        How features are made.
    chunk_frames : int or None
        Frames per emitted chunk (the last one may be shorter); ``None``: the
        whole signal is one chunk, computed and emitted by ``finish()``.
    emit_ready : bool
        With ``chunk_frames=None``, emit every frame as soon as it can be
        computed instead (for :class:`OnlineFeatures`).
    dtype : float32 or float64
        Working precision.

    Notes
    -----
    ``accept(samples)`` returns the chunks completed by those samples;
    ``finish()`` returns the rest (the end padding and the last, partial
    chunk).  The object is not thread-safe: use one per stream.
    """

    def __init__(
        self,
        config: FeatureConfig | str,
        chunk_frames: int | None = None,
        *,
        dtype: type = np.float32,
        emit_ready: bool = False,
    ) -> None:
        self.config = get_preset(config)
        self.emit_ready = emit_ready
        if chunk_frames is not None and (
            isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1
        ):
            raise AudioError(f"chunk_frames={chunk_frames!r} is invalid: expected a positive integer or None")
        self.chunk_frames = chunk_frames
        self.dtype = np.dtype(dtype)
        self.n_samples = 0  # raw samples accepted
        self.frames_emitted = 0
        self.finished = False
        self._pad = self.config.center_pad
        self._prev = 0.0  # last raw sample, for signal pre-emphasis
        self._head: np.ndarray | None = None if self._pad else np.empty(0, self.dtype)  # left padding, once known
        self._pending_raw = np.empty(0, self.dtype)  # conditioned samples held until the left padding is known
        self._buf = np.empty(0, self.dtype)  # conditioned (and left-padded) samples not yet consumed
        self._buf_start = 0  # padded-signal index of _buf[0]
        self._pending = np.empty((self.config.n_mels, 0), self.dtype)  # computed, not yet emitted

    # ------------------------------------------------------------ public API
    def accept(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add samples (1-D, at ``config.sample_rate``); return completed chunks."""
        if self.finished:
            raise AudioError("accept() after finish(): start a new stream")
        x = np.asarray(samples)
        if x.ndim != 1:
            raise AudioError(f"streamed audio blocks must be 1-D, got shape {x.shape}")
        if x.size == 0:
            return []
        # int16 / int32 PCM is scaled as features() scales it (check_audio), then brought to the working dtype.
        x = check_audio(x, self.config.sample_rate, self.config).astype(self.dtype, copy=False)
        self.n_samples += x.size
        self._append(x)
        if self.chunk_frames is None and not self.emit_ready:
            return []  # one chunk: computed once, at finish(), whatever the block sizes
        self._compute(final=False)
        return self._emit(final=False)

    def _append(self, x: np.ndarray) -> None:
        """Condition raw samples and add them to the buffer (left padding first, once known)."""
        cond = condition_signal(x, self.config, previous=self._prev)
        self._prev = float(x[-1])
        if self._head is None:
            # Left padding needs the first pad + 1 samples (reflect); hold samples until then.
            self._pending_raw = np.concatenate([self._pending_raw, cond])
            if self._pending_raw.size <= self._pad and self.config.pad_mode == "reflect":
                return
            cond, self._pending_raw = self._pending_raw, self._pending_raw[:0]
            self._head = self._pad_start(cond)
            cond = np.concatenate([self._head, cond])
        self._buf = np.concatenate([self._buf, cond])

    def finish(self) -> list[np.ndarray]:
        """Declare the end of the audio; return the remaining chunks."""
        if self.finished:
            return []
        self.finished = True
        if self.n_samples == 0:
            raise AudioError("the stream ended without any audio")
        if self.config.trailing_silence:
            self._append(np.zeros(self.config.trailing_silence, self.dtype))
        if self._head is None:
            pending = self._pending_raw
            if self.config.pad_mode == "reflect" and pending.size <= self._pad:
                raise AudioError(f"reflect padding needs more than {self._pad} samples, got {pending.size}")
            self._head = self._pad_start(pending)
            self._buf = np.concatenate([self._head, pending])
        if self._pad:
            self._buf = np.concatenate([self._buf, self._pad_end()])
        self._compute(final=True)
        return self._emit(final=True)

    # -------------------------------------------------------------- internals
    def _pad_start(self, cond: np.ndarray) -> np.ndarray:
        if not self._pad:
            return np.empty(0, self.dtype)
        return np.pad(cond[: self._pad + 1], (self._pad, 0), mode=self.config.pad_mode)[: self._pad]

    def _pad_end(self) -> np.ndarray:
        tail = self._buf[-(self._pad + 1) :]
        return np.pad(tail, (0, self._pad), mode=self.config.pad_mode)[-self._pad :]

    def _compute(self, *, final: bool) -> None:
        """Compute every frame the buffered samples determine, one chunk per stage call.

        Each chunk's frames go through the per-frame stages in one call of the
        same shape whatever the block sizes were, so results are bit-identical
        between streamed and whole-signal runs.
        """
        cfg = self.config
        end = self._buf_start + self._buf.size  # padded-signal samples available
        ready = 1 + (end - cfg.frame_length) // cfg.hop_length if end >= cfg.frame_length else 0
        if final:
            ready = min(ready, cfg.num_frames(self.n_samples))
        done = self.frames_emitted + self._pending.shape[1]
        step = self.chunk_frames or max(ready - done, 1)
        parts = [self._pending]
        while done < ready and (final or done + step <= ready):
            stop = min(done + step, ready)
            first = done * cfg.hop_length - self._buf_start
            span = self._buf[first : first + (stop - done - 1) * cfg.hop_length + cfg.frame_length]
            parts.append(frame_energies(frame_signal(span, cfg.frame_length, cfg.hop_length), cfg))
            done = stop
        self._pending = np.concatenate(parts, axis=1)
        # Drop the samples no later frame needs.
        drop = max(0, done * cfg.hop_length - self._buf_start)
        self._buf = self._buf[drop:].copy()
        self._buf_start += drop

    def _emit(self, *, final: bool) -> list[np.ndarray]:
        out = []
        size = self.chunk_frames or self._pending.shape[1]
        while self._pending.shape[1] >= max(size, 1) or (final and self._pending.shape[1]):
            block, self._pending = self._pending[:, :size], self._pending[:, size:]
            self.frames_emitted += block.shape[1]
            out.append(compress(np.ascontiguousarray(block), self.config))
            if not self.chunk_frames:
                break
        return out


def chunked_features(audio: np.ndarray, config: FeatureConfig | str, chunk_frames: int | None) -> list[np.ndarray]:
    """Feature chunks of a whole signal, exactly as :class:`ChunkedFeatures` streams them."""
    stream = ChunkedFeatures(
        config, chunk_frames, dtype=np.float64 if np.asarray(audio).dtype == np.float64 else np.float32
    )
    return stream.accept(audio) + stream.finish()


class OnlineFeatures:
    """Streaming features with kaldi-native-fbank's ``OnlineFbank`` interface.

    ``accept_waveform(samples)`` adds audio (1-D, any block size; float or
    int16 / int32 PCM), ``input_finished()`` ends it, ``num_frames_ready`` counts
    the frames computed so far, and ``get_frames(start, stop)`` returns
    ``(n_mels, stop - start)`` of them (a read-only view).  A frame is ready as
    soon as the audio it covers has arrived.

    Frames equal offline :func:`~amser_dsp.features` up to float rounding (the
    Mel product runs on different batch shapes).  Configs with a per-utterance
    ``dynamic_range`` clamp (the ``whisper`` preset's ``max - 8``) get no clamp
    here, since it needs the whole utterance: apply it afterwards if needed.
    Not thread-safe: one object per stream.

    Parameters
    ----------
    config : FeatureConfig or preset name
        How features are made (default :data:`~amser_dsp.config.DEFAULT_PRESET`).
    """

    def __init__(self, config: FeatureConfig | str = DEFAULT_PRESET) -> None:
        self.config = get_preset(config)
        self._stream = ChunkedFeatures(self.config.replace(dynamic_range=None), None, emit_ready=True)
        self._frames = np.empty((self.config.n_mels, 0), np.float32)  # capacity grows by doubling
        self._ready = 0

    @property
    def num_frames_ready(self) -> int:
        """Frames available to :meth:`get_frames`."""
        return self._ready

    @property
    def finished(self) -> bool:
        """Whether :meth:`input_finished` was called."""
        return self._stream.finished

    def accept_waveform(self, samples: np.ndarray) -> None:
        """Add audio samples at the config's sample rate."""
        self._add(self._stream.accept(samples))

    def input_finished(self) -> None:
        """Declare the end of the audio: the last frames (end padding, trailing silence) become ready."""
        self._add(self._stream.finish())

    def _add(self, chunks: list[np.ndarray]) -> None:
        new = sum(c.shape[1] for c in chunks)
        if self._ready + new > self._frames.shape[1]:
            grown = np.empty((self.config.n_mels, max(2 * self._frames.shape[1], self._ready + new, 64)), np.float32)
            grown[:, : self._ready] = self._frames[:, : self._ready]
            self._frames = grown
        for c in chunks:
            self._frames[:, self._ready : self._ready + c.shape[1]] = c
            self._ready += c.shape[1]

    def get_frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``[start, stop)`` (default: all ready), ``(n_mels, stop - start)`` float32.

        Raises
        ------
        AudioError
            If the range is not within the frames ready.
        """
        stop = self._ready if stop is None else stop
        if not 0 <= start <= stop <= self._ready:
            raise AudioError(f"frames [{start}, {stop}) are not ready; {self._ready} are")
        view = self._frames[:, start:stop]
        view.flags.writeable = False
        return view
