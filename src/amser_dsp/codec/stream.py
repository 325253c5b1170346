"""Streaming encode (audio blocks in, container bytes out) and decode (bytes in, feature chunks out)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from .. import container as fmt
from ..config import DEFAULT_PRESET, FeatureConfig, get_preset
from ..errors import CodecError, CorruptContainerError
from ..frontend.streaming import ChunkedFeatures, chunked_features
from .base import Codec
from .containers import decode_chunk, guarded, header_codec, header_config, write_container
from .settings import make_codec

__all__ = ["StreamDecoder", "StreamEncoder", "chunk_frames", "encode_audio"]


def chunk_frames(config: FeatureConfig, chunk_seconds: float | None) -> int:
    """Frames per chunk for ``chunk_seconds`` of audio; ``None``: one chunk, up to the default reader limit.

    Raises
    ------
    CodecError
        If ``chunk_seconds`` is not a positive number, or makes chunks longer
        than a reader accepts (:attr:`~amser_dsp.Limits.max_chunk_frames` of the
        default limits: 300 s at 100 frames per second).
    """
    limit = fmt.DEFAULT_LIMITS.max_chunk_frames
    if chunk_seconds is None:
        return limit
    if isinstance(chunk_seconds, bool) or not isinstance(chunk_seconds, (int, float)) or not chunk_seconds > 0:
        raise CodecError(f"chunk_seconds={chunk_seconds!r} is invalid: expected a positive number of seconds")
    frames_per_second = config.sample_rate / config.hop_length
    frames = chunk_seconds * frames_per_second
    if frames >= limit + 0.5:
        raise CodecError(
            f"chunk_seconds={chunk_seconds:g} makes chunks of {frames:.0f} frames; readers accept at most {limit} "
            f"({limit / frames_per_second:g} s of this preset's audio): give at most that, or none for one chunk "
            "split there"
        )
    return max(1, round(frames))


class StreamEncoder:
    """Encode audio as it is recorded: blocks of any size in, container bytes out.

    Parameters
    ----------
    config : FeatureConfig or preset name
        How features are made (stored in the header); default ``"whisper"``.
    chunk_seconds : float
        Audio per container chunk; each chunk is coded on its own.  The added
        latency is at most one chunk plus one frame.
    codec : Codec, dict or str, optional
        The codec (see :func:`~amser_dsp.codec.make_codec`); default
        :data:`~amser_dsp.codec.DEFAULT_CODEC`.
    **options
        Codec options, as for :func:`~amser_dsp.encode` (``kbps=4``, ``rank=20``, ...).

    Notes
    -----
    ``write(samples)`` takes 1-D float samples (or int16 / int32 PCM, scaled as
    :func:`~amser_dsp.features` scales it) and returns the bytes ready now: the
    header on the first call, then every completed chunk; ``close()`` returns the rest and the end record.  The output equals
    ``encode_audio(whole_audio, ...)`` byte for byte, whatever the block sizes.
    """

    def __init__(
        self,
        config: FeatureConfig | str = DEFAULT_PRESET,
        *,
        chunk_seconds: float = 5.0,
        codec: Codec | dict[str, Any] | str | None = None,
        **options: Any,
    ) -> None:
        self.config = get_preset(config)
        self.codec = make_codec(codec, config=self.config, **options)
        self.chunk_frames = chunk_frames(self.config, chunk_seconds)
        self._features = ChunkedFeatures(self.config, self.chunk_frames)
        self._writer = fmt.Writer(self.config.to_dict(), self.codec.get_config(), self.config.n_mels)

    @property
    def closed(self) -> bool:
        return self._writer.closed

    def _records(self, chunks: list[np.ndarray]) -> bytes:
        return b"".join(self._writer.write(c.shape[1], self.codec.encode_chunk(c)) for c in chunks)

    def write(self, samples: np.ndarray) -> bytes:
        """Add audio (1-D samples at the config's rate); return the bytes ready."""
        if self.closed:
            raise CodecError("write() after close()")
        return self._writer.start() + self._records(self._features.accept(samples))

    def close(self) -> bytes:
        """End the recording; return the remaining bytes (last chunk and end record)."""
        if self.closed:
            return b""
        tail = self._records(self._features.finish()) + self._writer.close()
        w = self._writer
        self.codec.check_container(w.n_bytes, w.n_frames, w.n_chunks, w.payload_bytes)
        return tail


def encode_audio(
    audio: np.ndarray,
    config: FeatureConfig | str = DEFAULT_PRESET,
    *,
    chunk_seconds: float | None = None,
    codec: Codec | dict[str, Any] | str | None = None,
    **options: Any,
) -> bytes:
    """Features of a whole signal, chunked as a :class:`StreamEncoder` would, in one container.

    With ``chunk_seconds=None`` the whole signal is one chunk (up to 5 minutes,
    :attr:`~amser_dsp.Limits.max_chunk_frames` of the default limits: longer audio
    is split there, so the container decodes under the default limits) and its
    features equal :func:`amser_dsp.features` (up to the back end's rounding).  Codec
    choice as for :func:`~amser_dsp.encode`.
    """
    cfg = get_preset(config)
    chosen = make_codec(codec, config=cfg, **options)
    chunks = chunked_features(audio, cfg, chunk_frames(cfg, chunk_seconds))
    return write_container(cfg, chosen, cfg.n_mels, chunks)


class StreamDecoder:
    """Decode a container chunk by chunk, from a file object, a socket, or bytes fed in.

    ``for feats in StreamDecoder(fileobj)`` yields each chunk's features
    ``(n_mels, n_frames)``; or call ``feed(data)`` with bytes as they arrive
    (a WebSocket) and get the chunks they complete.  ``config`` and ``header``
    are set once the header has been read; ``finished`` after the end record.
    """

    def __init__(self, source: BinaryIO | Any | None = None, *, limits: fmt.Limits | None = None) -> None:
        self.limits = limits or fmt.DEFAULT_LIMITS
        self._reader = fmt.Reader(self.limits)
        self._source = source
        self.header: fmt.Header | None = None
        self.config: FeatureConfig | None = None
        self.codec: Codec | None = None
        self.n_frames = 0
        self.n_chunks = 0

    @property
    def finished(self) -> bool:
        return self._reader.ended

    def feed(self, data: bytes) -> list[np.ndarray]:
        """Parse more bytes; return the features of the chunks they complete."""
        out = []
        with guarded("the stream"):
            for record in self._reader.feed(data):
                if isinstance(record, fmt.Header):
                    self.header = record
                    self.config = header_config(record)
                    self.codec = header_codec(record)
                elif isinstance(record, fmt.Chunk):
                    assert self.header is not None and self.codec is not None  # the reader yields the header first
                    out.append(decode_chunk(self.header, self.codec, record, self.limits, self.n_chunks))
                    self.n_chunks += 1
                    self.n_frames += record.n_frames
        return out

    def close(self) -> None:
        """Declare the input finished; raises if the container was incomplete."""
        self._reader.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._source is None:
            raise CodecError("StreamDecoder was created without a source; use feed()")
        read = getattr(self._source, "read", None) or getattr(self._source, "recv", None)
        if read is None:
            raise CodecError("source must have read() or recv()")
        while not self.finished:
            data = read(1 << 16)
            if not data:
                self.close()
                raise CorruptContainerError("stream ended before the end record")  # close() raised already
            yield from self.feed(data)
