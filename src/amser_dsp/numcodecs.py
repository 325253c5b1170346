"""The feature codecs as a numcodecs codec, for Zarr stores and anything else that speaks numcodecs.

``AmserCodec`` (codec id ``"amser"``) compresses 2-D float chunks ``(bands, frames)``
with any codec setting of the library (``kltdct`` by default, ``svd``, ``raw``).
Each encoded chunk is a complete container (docs/format.md): checksummed,
versioned, and self-describing, so decoding needs neither the chunk's shape nor
the codec's parameters.  Installing amser-dsp registers it through the
``numcodecs.codecs`` entry point::

    import numcodecs
    codec = numcodecs.get_codec({"id": "amser"})                  # kltdct, whisper preset, float32
    codec = numcodecs.get_codec({"id": "amser", "codec": {"codec": "svd", "rank": 20, "factor_dtype": "int8"}})

Needs the ``zarr`` extra (``pip install 'amser-dsp[zarr]'``) for ``numcodecs``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Absolute imports throughout: this module's own name must never shadow the real package.
try:
    from numcodecs.abc import Codec as _NumcodecsCodec
    from numcodecs.compat import ensure_contiguous_ndarray, ensure_ndarray, ndarray_copy
except ImportError:
    raise ImportError("amser_dsp.numcodecs needs numcodecs: pip install 'amser-dsp[zarr]'", name="numcodecs") from None

from .codec import decode, encode, make_codec
from .config import FeatureConfig, get_preset
from .errors import CodecError

__all__ = ["AmserCodec"]

_FLOAT_DTYPES = ("<f2", "<f4", "<f8")


class AmserCodec(_NumcodecsCodec):
    """Lossy (or, with ``raw`` float32, lossless) compression of feature chunks ``(bands, frames)``.

    Parameters
    ----------
    codec : dict, optional
        A library codec setting as a config dict (``{"codec": "kltdct", "step": -4}``,
        ``{"codec": "svd", "rank": 20, "factor_dtype": "int8"}``, ``{"codec": "raw",
        "dtype": "float32"}``); default :data:`amser_dsp.codec.DEFAULT_CODEC`.  Stored
        completed (every parameter, the kltdct tables' digest), so a later change of
        the library's defaults cannot change what an existing array means.
    config : str or dict or None
        The preset name (or ``FeatureConfig.to_dict()``) the features were made
        with, written into every chunk's header; it fixes the band count.  ``None``
        for features of no known config (then the kltdct codec cannot be used:
        its tables belong to the whisper preset).
    dtype : {"<f4", "<f2", "<f8"}
        The arrays' dtype; decoding returns it.  Raw byte buffers given to
        :meth:`encode` are read as C-ordered ``(bands, frames)`` of this dtype.

    Notes
    -----
    Error bounds are the library codec's (docs/codec.md): ``raw`` float32 is
    exact, ``raw`` float16 within ``2**-11`` relative, ``svd`` and ``kltdct``
    within their stated bounds (kltdct step -4: RMS error about 0.08 feature
    units on speech, every value within the chunk's own range).
    """

    codec_id = "amser"

    def __init__(
        self,
        codec: dict[str, Any] | None = None,
        config: str | dict[str, Any] | None = "whisper",
        dtype: str = "<f4",
    ) -> None:
        cfg = _feature_config(config)
        if not isinstance(dtype, str) or np.dtype(dtype).str not in _FLOAT_DTYPES:
            raise CodecError(f"dtype={dtype!r} is invalid: expected one of {list(_FLOAT_DTYPES)}")
        if codec is not None and not isinstance(codec, dict):
            raise CodecError(f"codec must be a config dict such as {{'codec': 'kltdct'}}, got {type(codec).__name__}")
        self._codec = make_codec(None if codec is None else dict(codec), config=cfg)
        self._config = cfg
        self.codec = self._codec.get_config()
        self.config = config if isinstance(config, str) or cfg is None else cfg.to_dict()
        self.dtype = np.dtype(dtype).str

    @property
    def bands(self) -> int | None:
        """Rows every chunk must have (``n_mels`` of the config), or None if any count is taken."""
        return None if self._config is None else self._config.n_mels

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "codec": dict(self.codec), "config": self.config, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AmserCodec:
        params = {k: v for k, v in config.items() if k != "id"}
        unknown = sorted(set(params) - {"codec", "config", "dtype"})
        if unknown:
            raise CodecError(f"codec 'amser' has no parameter(s) {unknown}; known: ['codec', 'config', 'dtype']")
        return cls(**params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(codec={self.codec!r}, config={self.config!r}, dtype={self.dtype!r})"

    # ------------------------------------------------------------------ coding
    def _as_features(self, buf: Any) -> np.ndarray:
        arr = ensure_ndarray(buf)
        if arr.dtype.itemsize == 1 and arr.dtype.kind in "uiV" and arr.ndim == 1:
            # Untyped bytes (numcodecs passes bytes, bytearray, array.array): the codec's dtype, C order.
            raw = ensure_contiguous_ndarray(buf).view(self.dtype)
            if self.bands is None:
                raise CodecError("raw byte buffers need a config with a band count (config=None takes only arrays)")
            if raw.size % self.bands:
                raise CodecError(
                    f"a buffer of {raw.size} {self.dtype} values is not (bands={self.bands}, frames): "
                    f"{raw.size} is not a multiple of {self.bands}"
                )
            return raw.reshape(self.bands, -1)
        if arr.dtype.str != self.dtype:
            raise CodecError(f"the amser codec takes {self.dtype} arrays (its dtype), got {arr.dtype.str} {arr.shape}")
        if arr.ndim != 2:
            raise CodecError(f"the amser codec takes 2-D (bands, frames) arrays, got {arr.ndim}-D {arr.shape}")
        if self.bands is not None and arr.shape[0] != self.bands:
            raise CodecError(
                f"chunk has {arr.shape[0]} bands but the codec's config has {self.bands} (shape {arr.shape})"
            )
        return arr

    def encode(self, buf: Any) -> bytes:
        """One container for the chunk ``(bands, frames)``."""
        x = self._as_features(buf)
        if x.shape[1] == 0:
            raise CodecError(f"the amser codec takes at least one frame, got shape {x.shape}")
        return encode(x, codec=self._codec, config=self._config)

    def decode(self, buf: Any, out: Any = None) -> Any:
        """Features of one container, as the codec's dtype (into ``out`` when given)."""
        blob = ensure_contiguous_ndarray(buf).view("u1").tobytes()
        feats = decode(blob)
        if self.bands is not None and feats.shape[0] != self.bands:
            raise CodecError(f"container holds {feats.shape[0]} bands, the codec's config {self.bands}")
        return ndarray_copy(feats.astype(self.dtype, copy=False), out)


def _feature_config(config: str | dict[str, Any] | FeatureConfig | None) -> FeatureConfig | None:
    if config is None or isinstance(config, FeatureConfig):
        return config
    if isinstance(config, dict):
        return FeatureConfig.from_dict(config)
    return get_preset(config)
