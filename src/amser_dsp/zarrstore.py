"""A corpus of features in one Zarr 3 store, coded by the amser codec: the layout, the Zarr codec, the reader.

Layout (``amser-corpus-1``; docs/batch.md)::

    store.zarr/
      zarr.json        group; attributes["amser"]: layout, preset config, codec config,
                       chunk_frames, n_utterances, plan digest
      features/        float32 (n_mels, total_frames), chunks (n_mels, chunk_frames), codec "amser"
      path/            str (N,)      source path of each utterance, relative to the source root
      start/           int64 (N,)    first frame of each utterance in features
      length/          int64 (N,)    its frames
      seconds/         float64 (N,)  its audio duration
      ok/              bool (N,)     written (False: the file failed; its frames are padding)

Utterances lie end to end in ``features``; the utterances of one writing task
start on a chunk boundary and the task's last chunk is padded (the last frame
repeated, which codes to almost nothing), so tasks never share a chunk and
write in parallel without locks.  ``features[:, start[i]:start[i] + length[i]]``
is utterance ``i``; reading it decodes only the chunks it overlaps.  The fill
value is NaN: a chunk never written reads as NaN, which coded features cannot
hold, so a resumed run can tell written regions from missing ones.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import zarr
    from zarr.abc.codec import ArrayBytesCodec
    from zarr.core.common import parse_named_configuration
    from zarr.registry import register_codec
except ImportError:
    raise ImportError("amser_dsp.zarrstore needs zarr 3: pip install 'amser-dsp[zarr]'", name="zarr") from None

from .config import FeatureConfig
from .errors import AmserError, AudioError, CodecError
from .numcodecs import AmserCodec

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

__all__ = ["LAYOUT", "AmserZarrCodec", "Corpus", "create_corpus", "open_corpus"]

LAYOUT = "amser-corpus-1"
INDEX_ARRAYS = ("path", "start", "length", "seconds", "ok")


@functools.lru_cache(maxsize=32)
def _numcodec(codec_json: str, config_json: str, dtype: str) -> AmserCodec:
    return AmserCodec(codec=json.loads(codec_json), config=json.loads(config_json), dtype=dtype)


@dataclass(frozen=True)
class AmserZarrCodec(ArrayBytesCodec):
    """The amser codec as a Zarr 3 array-to-bytes codec (``{"name": "amser", "configuration": {...}}``).

    Each chunk ``(n_mels, frames)`` is stored as one container
    (:class:`~amser_dsp.numcodecs.AmserCodec`); the array's dtype must be a
    float type and its chunks 2-D with ``n_mels`` rows.  Registered with Zarr
    through the ``zarr.codecs`` entry point (and on import of this module).
    """

    is_fixed_size = False

    codec: dict[str, Any]
    config: str | dict[str, Any] | None

    def __init__(self, *, codec: dict[str, Any] | None = None, config: str | dict[str, Any] | None = "whisper") -> None:
        probe = AmserCodec(codec=codec, config=config)  # validates and completes the codec config
        object.__setattr__(self, "codec", probe.codec)
        object.__setattr__(self, "config", probe.config)

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AmserZarrCodec:
        _, configuration = parse_named_configuration(data, "amser")
        unknown = sorted(set(configuration) - {"codec", "config"})
        if unknown:
            raise CodecError(f"the amser Zarr codec has no parameter(s) {unknown}; known: ['codec', 'config']")
        codec, config = configuration.get("codec"), configuration.get("config", "whisper")
        if not (codec is None or isinstance(codec, dict)) or not (config is None or isinstance(config, (str, dict))):
            raise CodecError(
                f"the amser Zarr codec's configuration {configuration!r} is invalid: "
                "expected a codec config dict and a preset name or config dict"
            )
        return cls(codec=codec, config=config)

    def to_dict(self) -> dict[str, Any]:
        return {"name": "amser", "configuration": {"codec": self.codec, "config": self.config}}

    def _numcodec(self, dtype: np.dtype) -> AmserCodec:
        return _numcodec(json.dumps(self.codec, sort_keys=True), json.dumps(self.config), dtype.str)

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        native = dtype.to_native_dtype()
        if native.kind != "f":
            raise CodecError(f"the amser codec stores float arrays, not {native}")
        chunks = getattr(chunk_grid, "chunk_shape", None)
        if len(shape) != 2 or (chunks is not None and len(chunks) != 2):
            raise CodecError(f"the amser codec stores 2-D (bands, frames) arrays, not shape {shape}")
        bands = self._numcodec(native.newbyteorder("<")).bands
        if chunks is not None and bands is not None and chunks[0] != bands:
            raise CodecError(f"amser chunks must hold all {bands} bands of a frame: chunk shape {chunks}")

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        arr = np.ascontiguousarray(chunk_array.as_numpy_array())
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        return chunk_spec.prototype.buffer.from_bytes(self._numcodec(arr.dtype).encode(arr))

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        dtype = chunk_spec.dtype.to_native_dtype().newbyteorder("<")
        out = self._numcodec(dtype).decode(chunk_bytes.to_bytes())
        if out.shape != chunk_spec.shape:
            raise CodecError(f"amser chunk decodes to {out.shape}, expected {chunk_spec.shape}")
        return chunk_spec.prototype.nd_buffer.from_numpy_array(out)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # variable size


register_codec("amser", AmserZarrCodec)


def create_corpus(
    store: Any,
    *,
    lengths: list[int],
    paths: list[str],
    seconds: list[float],
    starts: list[int],
    total_frames: int,
    config: FeatureConfig,
    codec: dict[str, Any] | None,
    chunk_frames: int,
    plan: str,
) -> zarr.Group:
    """Create an empty store of this layout (index written, features all missing)."""
    group = zarr.open_group(store, mode="w", zarr_format=3)
    zc = AmserZarrCodec(codec=codec, config=config.to_dict())
    group.create_array(
        "features",
        shape=(config.n_mels, total_frames),
        chunks=(config.n_mels, chunk_frames),
        dtype="float32",
        serializer=zc,
        compressors=None,
        fill_value=np.nan,
    )
    n = len(paths)
    index = {
        "path": np.array(paths, dtype=object),
        "start": np.asarray(starts, np.int64),
        "length": np.asarray(lengths, np.int64),
        "seconds": np.asarray(seconds, np.float64),
        "ok": np.zeros(n, bool),
    }
    for name, values in index.items():
        dtype = str if name == "path" else values.dtype
        arr = group.create_array(name, shape=(n,), chunks=(max(1, min(n, 65536)),), dtype=dtype)
        if n:
            arr[:] = values
    group.attrs["amser"] = {
        "layout": LAYOUT,
        "config": config.to_dict(),
        "codec": zc.codec,
        "chunk_frames": chunk_frames,
        "n_utterances": n,
        "plan": plan,
    }
    return group


class Corpus:
    """A feature store read lazily: ``corpus[i]`` is utterance ``i``'s ``(n_mels, frames)`` float32.

    Parameters
    ----------
    store : path or Zarr store
        What :func:`amser_dsp.batch.features` wrote.

    Attributes
    ----------
    features : zarr.Array
        All frames, ``(n_mels, total_frames)``; index it yourself or use :meth:`to_dask`.
    paths, start, length, seconds, ok : ndarray
        The index, one entry per utterance.
    config : FeatureConfig
        How the features were made.
    """

    def __init__(self, store: Any) -> None:
        try:
            self.group = zarr.open_group(store, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise AmserError(f"no Zarr group at {store}: {exc}") from None
        meta = self.group.attrs.get("amser")
        if not isinstance(meta, dict) or meta.get("layout") != LAYOUT:
            raise AmserError(f"{store} is not an amser feature store (layout {LAYOUT!r})")
        self.meta = meta
        self.config = FeatureConfig.from_dict(meta["config"])
        self.features = self._array(store, "features")
        self.paths = np.asarray(self._array(store, "path")[:], dtype=object)
        self.start = np.asarray(self._array(store, "start")[:])
        self.length = np.asarray(self._array(store, "length")[:])
        self.seconds = np.asarray(self._array(store, "seconds")[:])
        self.ok = np.asarray(self._array(store, "ok")[:])

    def _array(self, store: Any, name: str) -> zarr.Array:
        node = self.group.get(name)
        if not isinstance(node, zarr.Array):
            raise AmserError(f"{store} is damaged: its {name!r} array is missing (layout {LAYOUT!r})")
        return node

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"utterance {i} of {len(self)}")
        if not self.ok[i]:
            raise AmserError(f"utterance {i} ({self.paths[i]}) failed when the store was written: no features")
        s = int(self.start[i])
        return np.asarray(self.features[:, s : s + int(self.length[i])])

    def to_dask(self) -> Any:
        """The whole feature array as a lazy ``dask.array`` (one Dask chunk per Zarr chunk)."""
        import dask.array as da

        return da.from_zarr(self.features)

    def utterances_dask(self) -> list[Any]:
        """One lazy ``dask.array`` per written utterance (slices of :meth:`to_dask`)."""
        whole = self.to_dask()
        return [whole[:, s : s + n] for s, n, ok in zip(self.start, self.length, self.ok, strict=True) if ok]

    def batches(
        self, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[int]]]:
        """Stream training batches: ``(features (B, n_mels, T_max) padded with 0, lengths (B,), indices)``.

        Only one batch's chunks are in memory at a time; ``seed`` changes the
        order per epoch.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise AmserError(f"batch_size={batch_size!r} is invalid: expected a positive integer")
        order = np.flatnonzero(self.ok)
        if shuffle:
            order = np.random.default_rng(seed).permutation(order)
        for at in range(0, len(order), batch_size):
            idx = [int(i) for i in order[at : at + batch_size]]
            if drop_last and len(idx) < batch_size:
                return
            feats = [self[i] for i in idx]
            lengths = np.array([f.shape[1] for f in feats], np.int64)
            out = np.zeros((len(idx), self.config.n_mels, int(lengths.max())), np.float32)
            for k, f in enumerate(feats):
                out[k, :, : f.shape[1]] = f
            yield out, lengths, idx


def open_corpus(store: Any) -> Corpus:
    """Open a feature store for reading (:class:`Corpus`)."""
    return Corpus(store)


def expected_frames(path: str, config: FeatureConfig) -> tuple[int, float]:
    """Frames :func:`amser_dsp.features` will give for an audio file, and its seconds, from its header alone.

    Raises
    ------
    AudioError
        As :func:`amser_dsp.io.audio_header`: unreadable, or a sample rate out of bounds.
    """
    from .io import audio_header, resampled_length

    info = audio_header(path)
    if info.frames <= 0:
        raise AudioError(f"audio file {path} holds no samples")
    return config.num_frames(resampled_length(info.frames, info.sample_rate, config.sample_rate)), info.seconds
