"""Feature codecs: truncated SVD with quantised factors, a codec registry, encode/decode.

Codecs follow numcodecs' interface: ``get_config()`` returns a JSON-ready dict
whose ``"id"`` names the codec, and :func:`get_codec` rebuilds one from such a
dict through the registry.  The id is stored in every container header, so new
codecs (issue 7) add ids without changing the container format.
"""

from __future__ import annotations

from typing import Any

from ..errors import CodecError
from .svd import FACTOR_DTYPES, SVDCodec, error_bound, select_rank, truncated_svd

__all__ = [
    "FACTOR_DTYPES",
    "SVDCodec",
    "codec_ids",
    "error_bound",
    "get_codec",
    "register_codec",
    "registry",
    "select_rank",
    "truncated_svd",
]

#: Codec id -> codec class (a class with ``codec_id``, ``get_config``, ``from_config``,
#: ``encode_chunk(x) -> bytes`` and ``decode_chunk(payload, n_mels, n_frames)``).
registry: dict[str, type] = {}


def register_codec(cls: type, codec_id: str | None = None) -> type:
    """Register a codec class under ``codec_id`` (default ``cls.codec_id``); returns the class."""
    cid = codec_id or cls.codec_id
    if not isinstance(cid, str) or not cid:
        raise CodecError(f"codec id {cid!r} is invalid: expected a non-empty string")
    registry[cid] = cls
    return cls


def codec_ids() -> list[str]:
    """Registered codec ids, sorted."""
    return sorted(registry)


def get_codec(config: dict[str, Any]) -> Any:
    """Build a codec from a config dict with an ``"id"`` key.

    Raises
    ------
    CodecError
        If the id is missing or not registered, or the parameters are invalid.
    """
    if not isinstance(config, dict) or "id" not in config:
        raise CodecError(f"codec config {config!r} is invalid: expected a mapping with an 'id' key")
    cid = config["id"]
    cls = registry.get(cid) if isinstance(cid, str) else None
    if cls is None:
        raise CodecError(f"unknown codec id {cid!r}; registered codecs: {codec_ids()}")
    return cls.from_config(dict(config))


register_codec(SVDCodec)
