"""Lossless entropy stage: zlib (standard library), zstd (``zstandard``), or none.

Decompression is always bounded by the exact output size the caller expects,
so a hostile payload cannot inflate beyond it (a "zip bomb" stops at the bound).
"""

from __future__ import annotations

import zlib

from ..errors import BackendUnavailableError, CodecError, CorruptContainerError

__all__ = ["ENTROPY_STAGES", "compress", "decompress"]

ENTROPY_STAGES = ("zlib", "zstd", None)
_ZLIB_LEVEL = 9
_ZSTD_LEVEL = 19


def _zstd():
    try:
        import zstandard
    except ImportError:
        raise BackendUnavailableError(
            "entropy='zstd' needs the 'zstandard' package (pip install zstandard); use entropy='zlib' instead"
        ) from None
    return zstandard


def check_entropy(entropy: object) -> str | None:
    """Validate an entropy-stage name."""
    if entropy not in ENTROPY_STAGES:
        raise CodecError(f"entropy={entropy!r} is invalid: expected one of {list(ENTROPY_STAGES)}")
    if entropy == "zstd":
        _zstd()
    return entropy  # type: ignore[return-value]


def compress(data: bytes, entropy: str | None) -> bytes:
    """Compress ``data`` with the named stage (deterministic for equal input)."""
    if entropy is None:
        return bytes(data)
    if entropy == "zlib":
        return zlib.compress(data, _ZLIB_LEVEL)
    if entropy == "zstd":
        # No frame checksum (the container has one) and no content size flag variance.
        cctx = _zstd().ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=False, write_content_size=True)
        return cctx.compress(data)
    raise CodecError(f"entropy={entropy!r} is invalid: expected one of {list(ENTROPY_STAGES)}")


def decompress(data: bytes, entropy: str | None, max_size: int) -> bytes:
    """Decompress at most ``max_size`` bytes; more, or malformed data, is corruption.

    Raises
    ------
    CorruptContainerError
        If the data is malformed or would inflate beyond ``max_size``.
    """
    if entropy is None:
        if len(data) > max_size:
            raise CorruptContainerError(f"raw payload of {len(data)} bytes exceeds its bound of {max_size}")
        return bytes(data)
    if entropy == "zlib":
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, max_size)
        except zlib.error as exc:
            raise CorruptContainerError(f"zlib payload is damaged: {exc}") from None
        if d.unconsumed_tail or not d.eof or d.unused_data:
            raise CorruptContainerError(f"zlib payload does not end cleanly within its bound of {max_size} bytes")
        return out
    if entropy == "zstd":
        zstandard = _zstd()
        try:
            params = zstandard.get_frame_parameters(data)
            if params.content_size > max_size:
                raise CorruptContainerError(
                    f"zstd payload declares {params.content_size} bytes; its bound is {max_size}"
                )
            return zstandard.ZstdDecompressor().decompress(data, max_output_size=max_size)
        except zstandard.ZstdError as exc:
            raise CorruptContainerError(f"zstd payload is damaged: {exc}") from None
    raise CorruptContainerError(f"unknown entropy stage {entropy!r}")
