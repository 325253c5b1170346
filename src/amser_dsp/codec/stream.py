"""Streaming encode (audio blocks in, container bytes out) and decode (bytes in, feature chunks out)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .. import container as _ct
from ..config import FeatureConfig, get_preset
from ..errors import CodecError, ContainerError
from ..frontend.streaming import OnlineFeatures
from .api import header_codec, header_config, make_codec, make_header

__all__ = ["StreamDecoder", "StreamEncoder"]

_READ_SIZE = 1 << 16


class StreamEncoder:
    """Encode audio as it arrives; emit container bytes as soon as they are final.

    Each chunk of ``chunk_seconds`` of audio is factorised on its own, so the
    output equals ``encode(chunked_features(audio, sr, config, chunk_frames=N),
    config=config, chunk_frames=N, ...)`` byte for byte, where ``N`` is
    :attr:`chunk_frames`.

    Parameters
    ----------
    config : FeatureConfig or str
        Feature config or preset name.
    chunk_seconds : float
        Audio per chunk; rounded to whole frames (at least one).
    rank, ratio, energy, factor_dtype, entropy
        Codec parameters, as for :func:`amser_dsp.encode`.
    exact : bool
        Passed to :class:`~amser_dsp.frontend.streaming.OnlineFeatures`.

    Examples
    --------
    >>> enc = StreamEncoder("amser", chunk_seconds=1.0)          # doctest: +SKIP
    >>> sock.send(enc.write(block))  # for every microphone block  # doctest: +SKIP
    >>> sock.send(enc.close())                                  # doctest: +SKIP
    """

    def __init__(
        self,
        config: FeatureConfig | str = "amser",
        *,
        chunk_seconds: float = 5.12,
        rank: int | None = None,
        ratio: float | None = None,
        energy: float | None = None,
        factor_dtype: str = "float16",
        entropy: str | None = "zlib",
        exact: bool = True,
    ) -> None:
        self.config = get_preset(config)
        self.codec = make_codec(rank=rank, ratio=ratio, energy=energy, factor_dtype=factor_dtype, entropy=entropy)
        if isinstance(chunk_seconds, bool) or not isinstance(chunk_seconds, (int, float)) or not chunk_seconds > 0:
            raise CodecError(f"chunk_seconds={chunk_seconds!r} is invalid: expected a positive number of seconds")
        self.chunk_frames = max(1, round(chunk_seconds * self.config.sample_rate / self.config.hop_length))
        self._online = OnlineFeatures(self.config, exact=exact)
        self._header_sent = False
        self._n_chunks = 0
        self._n_frames = 0
        self._closed = False

    def _pending_header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return _ct.preamble_and_header(make_header(self.codec, self.config.n_mels, self.config, self.chunk_frames))

    def _chunk(self, n: int | None) -> bytes:
        x = self._online.pop(n).astype(np.float32, copy=False)
        self._n_chunks += 1
        self._n_frames += x.shape[1]
        return _ct.chunk_record(x.shape[1], self.codec.encode_chunk(x))

    def write(self, samples: ArrayLike) -> bytes:
        """Accept a block of samples; return the container bytes that are ready (maybe empty)."""
        if self._closed:
            raise CodecError("write after close; make a new StreamEncoder")
        self._online.accept_waveform(samples)
        out = [self._pending_header()]
        while self._online.num_frames_ready >= self.chunk_frames:
            out.append(self._chunk(self.chunk_frames))
        return b"".join(out)

    def close(self) -> bytes:
        """Finish: the remaining chunks and the end record."""
        if self._closed:
            return b""
        self._closed = True
        self._online.input_finished()
        out = [self._pending_header()]
        while self._online.num_frames_ready:
            out.append(self._chunk(self.chunk_frames))
        out.append(_ct.end_record(self._n_chunks, self._n_frames))
        return b"".join(out)


class StreamDecoder:
    """Decode a container chunk by chunk, from a file object, a socket, or fed bytes.

    Parameters
    ----------
    source : file object or socket, optional
        Something with ``read(n)`` or ``recv(n)``; iterate over the decoder to
        get each chunk's features.  Without a source, use :meth:`feed`.
    limits : Limits, optional
        Safety limits for the reader.

    Attributes
    ----------
    config : FeatureConfig or None
        Available once the header has been read.
    header : dict or None
        The raw header, once read.
    """

    def __init__(self, source: Any = None, *, limits: _ct.Limits | None = None) -> None:
        self._source = source
        self._reader = _ct.ContainerReader(limits)
        self.header: dict[str, Any] | None = None
        self.config: FeatureConfig | None = None
        self.codec: Any = None

    @property
    def finished(self) -> bool:
        """True once the end record was read."""
        return self._reader.finished

    def feed(self, data: bytes) -> list[np.ndarray]:
        """Add bytes (e.g. one WebSocket message); return the feature chunks they complete.

        Raises
        ------
        ContainerError
        """
        records = self._reader.feed(bytes(data))
        if self.header is None and self._reader.header is not None:
            self.header = self._reader.header
            self.config = header_config(self.header)
            self.codec = header_codec(self.header)
        m = self.header["n_mels"] if self.header else 0
        return [self.codec.decode_chunk(r.payload, m, r.n_frames) for r in records]

    def close(self) -> None:
        """Raise :class:`CorruptContainerError` if the container ended early."""
        self._reader.close()

    def _read(self) -> bytes:
        src = self._source
        if hasattr(src, "recv"):
            return src.recv(_READ_SIZE)
        if hasattr(src, "read"):
            return src.read(_READ_SIZE)
        raise ContainerError(f"StreamDecoder source {type(src).__name__} has neither read() nor recv()")

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._source is None:
            raise ContainerError("StreamDecoder has no source to iterate; pass a file object or use feed()")
        while not self._reader.finished:
            data = self._read()
            if not data:
                self.close()
                return
            yield from self.feed(data)
