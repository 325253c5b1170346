"""The codec interface and registry (the numcodecs shape: ``get_config`` / ``from_config``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..errors import CodecError, CorruptContainerError, UnsupportedVersionError

__all__ = ["Codec", "RawCodec", "codec_from_config", "matmul", "option", "register", "registered"]

_REGISTRY: dict[str, type[Codec]] = {}


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` without the floating-point warnings that BLAS kernels raise spuriously.

    OpenBLAS on arm64 leaves divide-by-zero, overflow and invalid flags after
    products of ordinary finite matrices (zeros included; numpy/numpy#28687),
    which NumPy turns into warnings (and tests, into errors).  The codecs check
    what they need of their products (finite, in range) themselves.
    """
    with np.errstate(all="ignore"):
        return a @ b


def option(default: Any, help: str, *, type: Callable[[str], Any] | None = None, choices: tuple[Any, ...] = ()) -> Any:
    """A codec parameter users may set (a dataclass field with what the CLI needs to offer it).

    Every field declared with ``option`` becomes a keyword of
    :func:`~amser_dsp.codec.make_codec` (and so of ``encode``, ``encode_audio``,
    ``StreamEncoder``, the client) and a ``--name`` option of the ``amser``
    commands that encode: adding a codec option is this one declaration.
    """
    return dataclasses.field(default=default, metadata={"help": help, "type": type, "choices": choices})


class Codec:
    """A way to turn one chunk of features ``(n_mels, n_frames)`` into bytes and back.

    Subclasses are frozen dataclasses whose fields are their parameters; the
    container header stores :meth:`get_config`, and :func:`codec_from_config`
    rebuilds the codec from it.  ``decode_chunk`` must treat ``payload`` as
    hostile: validate every size and raise :class:`CorruptContainerError`.
    """

    name: ClassVar[str] = ""
    # Declared, not set: every subclass is a dataclass, and this tells the type checker so.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def get_config(self) -> dict[str, Any]:
        """JSON-ready parameters, with the codec name under ``"codec"``."""
        return {"codec": self.name, **dataclasses.asdict(self)}

    @classmethod
    def options(cls) -> dict[str, dataclasses.Field[Any]]:
        """The user-settable parameters (declared with :func:`option`), by name."""
        return {f.name: f for f in dataclasses.fields(cls) if "help" in f.metadata}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Codec:
        """Rebuild from :meth:`get_config` output."""
        params = {k: v for k, v in config.items() if k != "codec"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise CodecError(f"codec {cls.name!r} has no parameter(s) {unknown}; known: {sorted(names)}")
        return cls(**params)

    def check_config(self, config: Any) -> None:
        """Raise :class:`CodecError` if this codec cannot code features made with ``config`` (a FeatureConfig)."""

    def check_container(self, n_bytes: int, n_frames: int, n_chunks: int, payload_bytes: int) -> None:
        """Called with a finished container's sizes and counts; warns if a target of the codec is out of reach."""

    def encode_chunk(self, x: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode_chunk(self, payload: bytes, n_mels: int, n_frames: int, max_decoded_bytes: int) -> np.ndarray:
        raise NotImplementedError


_C = TypeVar("_C", bound=type[Codec])


def register(cls: _C) -> _C:
    """Register a codec class under its ``name`` (usable as a decorator)."""
    if not cls.name or (cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls):
        raise CodecError(f"codec name {cls.name!r} is empty or already taken")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Codec]]:
    """Every registered codec class by name."""
    return dict(_REGISTRY)


def codec_from_config(config: dict[str, Any]) -> Codec:
    """The codec a header's codec field describes.

    Raises
    ------
    UnsupportedVersionError
        If the codec name is unknown to this version of amser_dsp.
    CorruptContainerError
        If its parameters are invalid.
    """
    name = config.get("codec")
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise UnsupportedVersionError(f"codec {name!r} is unknown to this amser_dsp; known codecs: {sorted(_REGISTRY)}")
    try:
        return cls.from_config(config)
    except UnsupportedVersionError:
        raise
    except (CodecError, TypeError) as exc:
        raise CorruptContainerError(f"invalid parameters for codec {name!r}: {exc}") from None


@register
@dataclasses.dataclass(frozen=True)
class RawCodec(Codec):
    """Uncompressed features, float32 (lossless) or float16 (relative error <= 2**-11)."""

    name: ClassVar[str] = "raw"
    dtype: str = option("float16", "raw codec: float32 (lossless) or float16", choices=("float32", "float16"))

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float16"):
            raise CodecError(f"dtype={self.dtype!r} is invalid: expected 'float32' or 'float16'")

    def encode_chunk(self, x: np.ndarray) -> bytes:
        with np.errstate(over="ignore"):  # overflow is reported below, as a CodecError
            out = x.astype(np.dtype(self.dtype).newbyteorder("<"))
        if not np.isfinite(out).all():
            raise CodecError(f"features overflow {self.dtype}: use dtype='float32'")
        return out.tobytes()

    def decode_chunk(self, payload: bytes, n_mels: int, n_frames: int, max_decoded_bytes: int) -> np.ndarray:
        dt = np.dtype(self.dtype).newbyteorder("<")
        if len(payload) != n_mels * n_frames * dt.itemsize:
            raise CorruptContainerError(
                f"raw chunk has {len(payload)} bytes, expected {n_mels * n_frames * dt.itemsize}"
            )
        out = np.frombuffer(payload, dt).reshape(n_mels, n_frames).astype(np.float32)
        if not np.isfinite(out).all():
            raise CorruptContainerError("raw chunk holds non-finite values")
        return out
