"""Whole-container encode/decode/inspect over the codec registry and the container format."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import container as _ct
from ..config import FeatureConfig, get_preset
from ..errors import AmserError, CodecError, ContainerError, CorruptContainerError
from . import get_codec
from .svd import SVDCodec

__all__ = ["ContainerInfo", "Encoded", "decode", "decode_container", "encode", "inspect", "make_codec"]

#: 16-bit mono PCM at 16 kHz, the paper's reference for "% of the audio".
PCM_KBPS = 256.0


def make_codec(
    *,
    rank: int | None = None,
    ratio: float | None = None,
    energy: float | None = None,
    factor_dtype: str = "float16",
    entropy: str | None = "zlib",
) -> SVDCodec:
    """The SVD codec for these parameters (raises :class:`CodecError` on bad ones)."""
    return SVDCodec(rank=rank, ratio=ratio, energy=energy, factor_dtype=factor_dtype, entropy=entropy)


def _resolve_config(config: FeatureConfig | str | None) -> FeatureConfig | None:
    return None if config is None else get_preset(config)


def check_features(features: Any, config: FeatureConfig | None = None) -> np.ndarray:
    """Validate a feature matrix for encoding; returns it as C-contiguous float32."""
    try:
        x = np.asarray(features)
    except Exception as exc:
        raise CodecError(f"features could not be converted to an array: {exc}") from None
    if x.ndim != 2:
        raise CodecError(f"features have shape {x.shape}; expected a 2-D (n_mels, n_frames) matrix")
    if x.dtype.kind not in "fiu" or x.dtype.kind == "b":
        raise CodecError(f"features have dtype {x.dtype}; expected a real floating-point matrix")
    if not 1 <= x.shape[0] <= _ct.DEFAULT_LIMITS.max_n_mels:
        raise CodecError(
            f"features have {x.shape[0]} rows (Mel bands); expected 1..{_ct.DEFAULT_LIMITS.max_n_mels} "
            "in the (n_mels, n_frames) layout"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise CodecError("features contain NaN or infinite values; expected finite log-Mel values")
    if config is not None and config.n_mels != x.shape[0]:
        raise CodecError(
            f"features have {x.shape[0]} Mel bands but the config has n_mels={config.n_mels}; "
            "pass the config that made them (layout is (n_mels, n_frames))"
        )
    return x


def make_header(codec: Any, n_mels: int, config: FeatureConfig | None, chunk_frames: int | None) -> dict[str, Any]:
    """The container header dict (see docs/format.md)."""
    return {
        "codec": codec.get_config(),
        "n_mels": int(n_mels),
        "sample_rate": None if config is None else config.sample_rate,
        "hop_length": None if config is None else config.hop_length,
        "chunk_frames": chunk_frames,
        "feature_config": None if config is None else config.to_dict(),
    }


def _check_chunk_frames(chunk_frames: Any) -> int | None:
    if chunk_frames is None:
        return None
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, (int, np.integer)) or chunk_frames < 1:
        raise CodecError(f"chunk_frames={chunk_frames!r} is invalid: expected a positive integer or None")
    return int(chunk_frames)


def encode(
    features: Any,
    *,
    rank: int | None = None,
    ratio: float | None = None,
    energy: float | None = None,
    factor_dtype: str = "float16",
    entropy: str | None = "zlib",
    config: FeatureConfig | str | None = None,
    chunk_frames: int | None = None,
) -> bytes:
    """Encode a log-Mel matrix into ``.amser`` container bytes.

    Parameters
    ----------
    features : array_like
        ``(n_mels, n_frames)`` finite real values.
    rank, ratio, energy : optional, at most one
        Components kept per chunk: a count; the ratio r/k with k = min(n_mels,
        n_frames) (``ceil(ratio * k)``); or the retained energy fraction.
        Default: ``ratio=0.125`` (the paper's 10 of 80).
    factor_dtype : {"float32", "float16", "int8"}
        Factor storage; error bounds in :mod:`amser_dsp.codec.svd`.
    entropy : {"zlib", "zstd", None}
        Lossless stage (``zstd`` needs the ``zstandard`` package).
    config : FeatureConfig or str, optional
        The config (or preset name) that made the features; stored in the header.
    chunk_frames : int, optional
        Split into chunks of this many frames (each its own factorisation),
        as :class:`~amser_dsp.StreamEncoder` does; ``None`` makes one chunk.

    Returns
    -------
    bytes
        Deterministic: equal input and parameters give equal bytes.

    Raises
    ------
    CodecError
        On invalid parameters or features.
    """
    codec = make_codec(rank=rank, ratio=ratio, energy=energy, factor_dtype=factor_dtype, entropy=entropy)
    cfg = _resolve_config(config)
    x = check_features(features, cfg)
    step = _check_chunk_frames(chunk_frames)
    return b"".join(encode_iter(x, codec, cfg, step))


def encode_iter(x: np.ndarray, codec: Any, cfg: FeatureConfig | None, chunk_frames: int | None) -> Iterator[bytes]:
    """Container pieces (header, chunk records, end record) of checked features."""
    yield _ct.preamble_and_header(make_header(codec, x.shape[0], cfg, chunk_frames))
    n = x.shape[1]
    step = chunk_frames or max(n, 1)
    count = 0
    for start in range(0, n, step):
        block = x[:, start : start + step]
        yield _ct.chunk_record(block.shape[1], codec.encode_chunk(block))
        count += 1
    yield _ct.end_record(count, n)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What a container's header and record framing say, without decoding any payload.

    ``kbps`` and ``pcm_percent`` need a sample rate and hop length in the header.
    """

    header: dict[str, Any]
    config: FeatureConfig | None
    codec: dict[str, Any]
    n_mels: int
    sample_rate: int | None
    n_frames: int
    n_chunks: int
    chunk_frames: list[int]
    ranks: list[int]
    total_bytes: int
    header_bytes: int
    payload_bytes: int
    duration_seconds: float | None
    kbps: float | None
    pcm_percent: float | None
    format_version: str = f"{_ct.FORMAT_MAJOR}.{_ct.FORMAT_MINOR}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (config as its ``to_dict``)."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["config"] = None if self.config is None else self.config.to_dict()
        del out["header"]
        return out


@dataclass(frozen=True, slots=True)
class Encoded:
    """A decoded container: features plus everything the header said.

    Attributes
    ----------
    features : ndarray
        ``(n_mels, n_frames)`` float32.
    config : FeatureConfig or None
        The config that made the features, if the header has one.
    header : dict
        The raw header.
    codec : object
        The codec rebuilt from the header.
    info : ContainerInfo
        Sizes and rates.
    """

    features: np.ndarray
    config: FeatureConfig | None
    header: dict[str, Any]
    codec: Any
    info: ContainerInfo = field(repr=False)


def header_config(header: dict[str, Any]) -> FeatureConfig | None:
    """The FeatureConfig of a checked header (errors become :class:`CorruptContainerError`)."""
    raw = header.get("feature_config")
    if raw is None:
        return None
    try:
        cfg = FeatureConfig.from_dict(raw)
    except AmserError as exc:
        raise CorruptContainerError(f"header feature_config is invalid: {exc}") from None
    except (TypeError, ValueError, RecursionError) as exc:  # wrong types inside the dict
        raise CorruptContainerError(f"header feature_config is invalid: {exc}") from None
    if cfg.n_mels != header["n_mels"]:
        raise CorruptContainerError(f"header n_mels={header['n_mels']} differs from feature_config n_mels={cfg.n_mels}")
    return cfg


def header_codec(header: dict[str, Any]) -> Any:
    """The codec named in a checked header (errors become :class:`ContainerError`)."""
    try:
        return get_codec(header["codec"])
    except AmserError as exc:
        raise ContainerError(f"header codec is unusable: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CorruptContainerError(f"header codec is invalid: {exc}") from None


def _as_bytes(blob: Any) -> bytes:
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return bytes(blob)
    raise ContainerError(f"expected container bytes, got {type(blob).__name__}")


def _chunk_rank(codec: Any, payload: bytes) -> int:
    """Rank of an svd chunk from its first bytes (-1 if it cannot be read cheaply)."""
    if not isinstance(codec, SVDCodec):
        return -1
    try:
        if codec.entropy is None:
            head = payload[:2]
        elif codec.entropy == "zlib":
            head = zlib.decompressobj().decompress(payload, 2)
        else:
            import zstandard

            head = zstandard.ZstdDecompressor().stream_reader(payload).read(2)
    except Exception:  # a damaged payload shows as -1 here; decoding reports it
        return -1
    return int.from_bytes(head, "little") if len(head) == 2 else -1


def _info(reader: _ct.ContainerReader, header: dict[str, Any], cfg, codec, frames: list[int], ranks: list[int], total: int) -> ContainerInfo:
    sr = header.get("sample_rate")
    hop = header.get("hop_length")
    n = sum(frames)
    duration = n * hop / sr if sr and hop else None
    kbps = total * 8 / duration / 1000 if duration else None
    return ContainerInfo(
        header=header,
        config=cfg,
        codec=header["codec"],
        n_mels=header["n_mels"],
        sample_rate=sr,
        n_frames=n,
        n_chunks=len(frames),
        chunk_frames=frames,
        ranks=ranks,
        total_bytes=total,
        header_bytes=reader.header_bytes,
        payload_bytes=reader.payload_bytes,
        duration_seconds=duration,
        kbps=kbps,
        pcm_percent=None if kbps is None else 100.0 * kbps / (sr * 16 / 1000),
    )


def _records(blob: bytes, limits: _ct.Limits | None) -> tuple[_ct.ContainerReader, list[_ct.ChunkRecord]]:
    reader = _ct.ContainerReader(limits)
    records = reader.feed(blob)
    reader.close()
    return reader, records


def inspect(blob: Any, *, limits: _ct.Limits | None = None) -> ContainerInfo:
    """Header, codec parameters and sizes of a container, without decoding features.

    Checksums and framing are verified.

    Raises
    ------
    ContainerError
    """
    data = _as_bytes(blob)
    reader, records = _records(data, limits)
    header = reader.header
    assert header is not None
    cfg = header_config(header)
    codec = header_codec(header)
    return _info(reader, header, cfg, codec, [r.n_frames for r in records], [_chunk_rank(codec, r.payload) for r in records], len(data))


def decode_records(records: Iterable[_ct.ChunkRecord], codec: Any, n_mels: int) -> Iterator[np.ndarray]:
    """Decode chunk records one by one."""
    for rec in records:
        yield codec.decode_chunk(rec.payload, n_mels, rec.n_frames)


def decode_container(blob: Any, *, limits: _ct.Limits | None = None) -> Encoded:
    """Decode container bytes into an :class:`Encoded` (features, config, header, codec, info).

    Raises
    ------
    ContainerError
        ``CorruptContainerError`` for damage or truncation, ``UnsupportedVersionError``
        for an unknown major version, ``LimitExceededError`` beyond ``limits``.
    """
    data = _as_bytes(blob)
    reader, records = _records(data, limits)
    header = reader.header
    assert header is not None
    cfg = header_config(header)
    codec = header_codec(header)
    m = header["n_mels"]
    out = np.empty((m, reader.total_frames), np.float32)
    pos = 0
    for block in decode_records(records, codec, m):
        out[:, pos : pos + block.shape[1]] = block
        pos += block.shape[1]
    info = _info(reader, header, cfg, codec, [r.n_frames for r in records], [_chunk_rank(codec, r.payload) for r in records], len(data))
    return Encoded(features=out, config=cfg, header=header, codec=codec, info=info)


def decode(blob: Any, *, limits: _ct.Limits | None = None) -> np.ndarray:
    """Features ``(n_mels, n_frames)`` float32 of container bytes (see :func:`decode_container`)."""
    return decode_container(blob, limits=limits).features
