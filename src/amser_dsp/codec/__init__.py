"""Feature codecs and the public encode / decode / inspect API.

``encode`` factorises (or otherwise compresses) a feature matrix chunk by chunk
and wraps it in a container (docs/format.md); ``decode`` checks and inverts it.
The codec is chosen in one place (:func:`make_codec`); the modules:
:mod:`.base` (interface, registry, raw), :mod:`.svd`, :mod:`.kltdct` (+ :mod:`.rans`),
:mod:`.settings`, :mod:`.api` (whole containers), :mod:`.stream` (streaming).
"""

from __future__ import annotations

from .base import Codec, RawCodec, codec_from_config, register, registered
from .containers import Decoded, Info, decode, decode_container, encode, inspect
from .kltdct import KltDctCodec, register_tables
from .settings import DEFAULT_CODEC, codec_options, make_codec
from .stream import StreamDecoder, StreamEncoder, encode_audio
from .svd import SvdCodec

__all__ = [
    "DEFAULT_CODEC",
    "Codec",
    "Decoded",
    "Info",
    "KltDctCodec",
    "RawCodec",
    "StreamDecoder",
    "StreamEncoder",
    "SvdCodec",
    "codec_from_config",
    "codec_options",
    "decode",
    "decode_container",
    "encode",
    "encode_audio",
    "inspect",
    "make_codec",
    "register",
    "register_tables",
    "registered",
]
