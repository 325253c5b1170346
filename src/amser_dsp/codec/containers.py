"""Whole containers: ``encode`` features into one, ``inspect`` and ``decode`` one.

Containers are read as bytes, a path or a binary file object; the byte format
is :mod:`amser_dsp.container` (docs/format.md).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .. import container as fmt
from ..config import FeatureConfig, get_preset
from ..errors import AmserError, CodecError, ConfigError, ContainerError, CorruptContainerError, LimitExceededError
from .base import Codec, codec_from_config
from .settings import make_codec

__all__ = [
    "Decoded",
    "Info",
    "decode",
    "decode_chunk",
    "decode_container",
    "encode",
    "guarded",
    "header_codec",
    "header_config",
    "inspect",
    "read_container",
    "write_container",
]

#: What ``decode`` and ``inspect`` read: bytes, a path, or a binary file object.
Source = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO


def read_container(source: Source, limits: fmt.Limits | None = None) -> bytes:
    """The bytes of a container given as bytes, a path or a binary file object.

    Raises
    ------
    ContainerError
        If the file is missing or unreadable, or larger than ``limits`` allow.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    lim = limits or fmt.DEFAULT_LIMITS
    # No codec's payload is larger than the float32 features it decodes to (raw float32 is equal):
    # so a container that fits the limits is at most its header, that, and the framing of every chunk.
    cap = lim.max_header_bytes + lim.max_decoded_bytes + 21 * lim.max_chunks + 64
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as fh:
                return _read_capped(fh, cap, os.fspath(source))
        except OSError as exc:
            raise ContainerError(f"cannot read container {os.fspath(source)}: {exc.strerror or exc}") from None
    read = getattr(source, "read", None)
    if read is None:
        raise ContainerError(f"container must be bytes, a path or a binary file object, got {type(source).__name__}")
    return _read_capped(source, cap, getattr(source, "name", "<file object>"))


def _read_capped(fh: Any, cap: int, name: object) -> bytes:
    data = bytearray()
    while True:
        try:
            part = fh.read(1 << 20)  # in pieces: read(cap) could allocate the whole cap at once
        except UnicodeDecodeError:
            part = ""
        if not isinstance(part, (bytes, bytearray)):
            raise ContainerError(f"{name} is not opened in binary mode")
        if not part:
            break
        data += part
        if len(data) > cap:
            raise LimitExceededError(f"{name} is larger than any container the limits allow ({cap} bytes)")
    return bytes(data)


def _check_features(features: np.ndarray, config: FeatureConfig | None) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2 or x.dtype.kind != "f":
        raise CodecError(f"features must be a 2-D float array (n_mels, n_frames), got {x.dtype} {x.shape}")
    if config is not None and x.shape[0] != config.n_mels:
        raise CodecError(f"features have {x.shape[0]} rows but the config has n_mels={config.n_mels}")
    if not 1 <= x.shape[0] <= 65535:
        raise CodecError(f"features have {x.shape[0]} rows; expected 1 to 65535")
    if not np.isfinite(x).all():
        raise CodecError("features contain NaN or infinite values")
    return np.ascontiguousarray(x, dtype=np.float32)


def encode(
    features: np.ndarray,
    *,
    config: FeatureConfig | str | None = None,
    chunk_frames: int | None = None,
    codec: Codec | dict[str, Any] | str | None = None,
    **options: Any,
) -> bytes:
    """Compress features into a container.

    Parameters
    ----------
    features : ndarray
        ``(n_mels, n_frames)`` float features.
    config : FeatureConfig or preset name, optional
        The config that made the features; stored in the header (and checked
        against the codec: kltdct tables belong to one preset).
    chunk_frames : int, optional
        Frames per self-contained chunk (default: one chunk, split every
        :attr:`~amser_dsp.Limits.max_chunk_frames` frames of the default limits, 5 minutes).
    codec : Codec, dict or str, optional
        The codec (see :func:`make_codec`); default :data:`DEFAULT_CODEC`.
    **options
        Codec options, e.g. ``kbps=2.5``, ``quality=0.08`` or ``step=0`` (kltdct);
        ``rank=20``, ``ratio=0.125``, ``energy=0.9``, ``factor_dtype="int8"``,
        ``entropy="zstd"`` (svd); ``dtype="float32"`` (raw).  The options choose
        their codec; mixing codecs is an error.

    Returns
    -------
    bytes
        The container.
    """
    cfg = get_preset(config) if config is not None else None
    x = _check_features(features, cfg)
    chosen = make_codec(codec, config=cfg, **options)
    n_frames = x.shape[1]
    limit = fmt.DEFAULT_LIMITS.max_chunk_frames
    step = min(max(n_frames, 1), limit) if chunk_frames is None else chunk_frames
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= limit:
        raise CodecError(
            f"chunk_frames={chunk_frames!r} is invalid: expected a positive integer up to {limit} "
            "(the most frames per chunk a reader accepts)"
        )
    return write_container(cfg, chosen, x.shape[0], (x[:, t : t + step] for t in range(0, n_frames, step)))


def write_container(config: FeatureConfig | None, codec: Codec, n_mels: int, chunks: Iterable[np.ndarray]) -> bytes:
    """A whole container of feature chunks, each coded with ``codec``."""
    writer = fmt.Writer(config.to_dict() if config else None, codec.get_config(), n_mels)
    blob = b"".join(writer.write(c.shape[1], codec.encode_chunk(c)) for c in chunks) + writer.close()
    codec.check_container(len(blob), writer.n_frames, writer.n_chunks, writer.payload_bytes)
    return blob


@dataclass(frozen=True)
class Info:
    """What a container's framing says, without decoding the features."""

    config: FeatureConfig | None
    codec: dict[str, Any]
    n_mels: int
    n_frames: int
    n_chunks: int
    n_bytes: int
    header_bytes: int
    format_version: str

    @property
    def seconds(self) -> float | None:
        """Audio duration the frames cover (``n_frames * hop / rate``), if the config is known."""
        if self.config is None:
            return None
        return self.n_frames * self.config.hop_length / self.config.sample_rate

    @property
    def kbps(self) -> float | None:
        """Container bits per second of audio / 1000."""
        s = self.seconds
        return self.n_bytes * 8 / s / 1000 if s else None

    @property
    def percent_of_pcm(self) -> float | None:
        """Size as a percentage of 16-bit mono PCM at the config's sample rate."""
        s = self.seconds
        return 100 * self.n_bytes / (2 * s * self.config.sample_rate) if s and self.config else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "config": self.config.to_dict() if self.config else None,
            "codec": self.codec,
            "n_mels": self.n_mels,
            "n_frames": self.n_frames,
            "n_chunks": self.n_chunks,
            "bytes": self.n_bytes,
            "header_bytes": self.header_bytes,
            "seconds": self.seconds,
            "kbps": self.kbps,
            "percent_of_pcm": self.percent_of_pcm,
        }


@dataclass(frozen=True)
class Decoded:
    """A decoded container: the features and what the header said."""

    features: np.ndarray
    info: Info

    @property
    def config(self) -> FeatureConfig | None:
        return self.info.config


@functools.lru_cache(maxsize=64)
def _config_from_json(text: str) -> FeatureConfig:
    # Containers from one service's devices repeat a few configs: validate each once.
    return FeatureConfig.from_dict(json.loads(text))


@contextlib.contextmanager
def guarded(what: str) -> Iterator[None]:
    """Turn any exception but an :class:`AmserError` into a :class:`CorruptContainerError` naming ``what``.

    The last line of defence of every decoding entry point: a bug, or an input no check foresaw, must
    never leak a builtin exception to a service that parses containers from the network.
    """
    try:
        yield
    except AmserError:
        raise
    except Exception as exc:
        raise CorruptContainerError(f"{what} could not be read ({type(exc).__name__}: {str(exc)[:200]})") from exc


def header_config(header: fmt.Header) -> FeatureConfig | None:
    """The header's FeatureConfig (None if it carries none)."""
    if header.config is None:
        return None
    try:
        with guarded("the header's feature config"):
            cfg = _config_from_json(json.dumps(header.config, sort_keys=True))
    except ConfigError as exc:
        raise CorruptContainerError(f"container header holds an invalid feature config: {exc}") from None
    if cfg.n_mels != header.n_mels:
        raise CorruptContainerError(f"header n_mels={header.n_mels} disagrees with its config's {cfg.n_mels}")
    return cfg


def _info(header: fmt.Header, chunks: list[fmt.Chunk], end: fmt.End, n_bytes: int) -> Info:
    return Info(
        config=header_config(header),
        codec=header.codec,
        n_mels=header.n_mels,
        n_frames=end.n_frames,
        n_chunks=end.n_chunks,
        n_bytes=n_bytes,
        header_bytes=header.size,
        format_version=f"{fmt.MAJOR}.{header.minor}",
    )


def header_codec(header: fmt.Header) -> Codec:
    """The codec the header names, with its parameters (:func:`codec_from_config`, guarded)."""
    with guarded("the header's codec"):
        return codec_from_config(header.codec)


def inspect(source: Source, *, limits: fmt.Limits | None = None) -> Info:
    """Check a container's framing and checksums and return its :class:`Info` (no numerics).

    ``source`` is the container's bytes, a path, or a binary file object.
    """
    blob = read_container(source, limits)
    with guarded("the container"):
        header, chunks, end = fmt.read_all(blob, limits)
        header_codec(header)
        return _info(header, chunks, end, len(blob))


def decode_chunk(header: fmt.Header, codec: Codec, chunk: fmt.Chunk, limits: fmt.Limits, index: int = 0) -> np.ndarray:
    """Features ``(n_mels, n_frames)`` of chunk record number ``index``."""
    with guarded(f"chunk {index} ({codec.name})"):
        out = codec.decode_chunk(chunk.payload, header.n_mels, chunk.n_frames, limits.max_decoded_bytes)
        if out.shape != (header.n_mels, chunk.n_frames):
            raise CorruptContainerError(
                f"chunk {index} decoded to shape {out.shape}, expected {(header.n_mels, chunk.n_frames)}"
            )
        return out


def decode_container(source: Source, *, limits: fmt.Limits | None = None) -> Decoded:
    """Decode a container (bytes, a path, or a binary file object) into features plus its :class:`Info`.

    The chunks are decoded one by one into one preallocated array, so the working memory is the output
    and one chunk's buffers, whatever the number of chunks.
    """
    lim = limits or fmt.DEFAULT_LIMITS
    blob = read_container(source, lim)
    with guarded("the container"):
        header, chunks, end = fmt.read_all(blob, lim)
        info = _info(header, chunks, end, len(blob))
        codec = header_codec(header)
        out = np.empty((header.n_mels, end.n_frames), np.float32)
        start = 0
        for index, chunk in enumerate(chunks):
            out[:, start : start + chunk.n_frames] = decode_chunk(header, codec, chunk, lim, index)
            start += chunk.n_frames
    return Decoded(features=out, info=info)


def decode(source: Source, *, limits: fmt.Limits | None = None) -> np.ndarray:
    """Features ``(n_mels, n_frames)`` float32 of a container (bytes, a path, or a binary file object)."""
    return decode_container(source, limits=limits).features
