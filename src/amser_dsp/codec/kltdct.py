"""Transform coding of log-Mel features with shipped, trained tables (issue 7).

The feature matrix ``X`` (``n_mels x T``) is coded as::

    C = DCT_time(K.T @ (X - mean))          # per block of ``block`` frames
    q = round(C / S),  S[k, j] = step / sqrt(W[k, j])

``K`` is a fixed Karhunen-Loeve basis over the Mel bands learned from training
speech, so no per-utterance basis is sent; the DCT along time compacts the
slowly varying trajectories; ``W`` is Whisper's measured sensitivity to noise in
each (component, time-frequency) coefficient, so quantisation noise goes where
the recogniser does not look.  ``step = 2 ** (step_index / 8)``: the step grid
and the entropy coder's Laplace-table grid share the ratio ``2 ** (1/8)``, so
the table chosen for each coefficient is the integer ``scale_index - step_index``
and encoder and decoder agree bit for bit on every platform.

This module holds only the numerics: tables, analysis, synthesis, quantisation.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from ..errors import CodecError

__all__ = [
    "STEP_RATIO_LOG2",
    "KltDctTables",
    "analyse",
    "load_tables",
    "quantise",
    "step_size",
    "steps",
    "synthesise",
    "table_contexts",
]

#: log2 of the ratio between neighbouring quantiser steps (and Laplace tables).
STEP_RATIO_LOG2 = 1 / 8


@dataclass(frozen=True, eq=False)
class KltDctTables:
    """Trained tables of one KLT-DCT codec version.

    Attributes
    ----------
    name : str
        Identifier written in container headers (e.g. ``"whisper-kltdct16-v1"``).
    config_digest : str
        :meth:`FeatureConfig.digest` of the features the tables were trained on.
    block : int
        Frames per time block.
    mean : ndarray, (n_mels,)
        Mean feature vector subtracted before the transform.
    basis : ndarray, (n_mels, n_mels)
        Orthonormal KLT basis, one component per column, by decreasing variance.
    weight : ndarray, (n_mels, block)
        Relative sensitivity of the recogniser to noise in each coefficient
        (geometric mean 1).
    scale_index : ndarray of int16, (n_mels, block)
        ``round(8 * log2(b * sqrt(weight)))`` where ``b`` is the coefficient's
        trained Laplace scale: the entropy table at step index 0.
    sha256 : str
        Digest of the table file, checked on load and written in headers.
    meta : dict
        Training provenance (data, clips, folds, script version).
    """

    name: str
    config_digest: str
    block: int
    mean: np.ndarray
    basis: np.ndarray
    weight: np.ndarray
    scale_index: np.ndarray
    sha256: str
    meta: dict

    @property
    def n_mels(self) -> int:
        return int(self.mean.shape[0])

    def to_bytes(self) -> bytes:
        """Serialise to the ``.npz`` layout :func:`tables_from_bytes` reads."""
        buf = io.BytesIO()
        header = dict(name=self.name, config_digest=self.config_digest, block=self.block, meta=self.meta)
        np.savez(
            buf,
            header=np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8),
            mean=self.mean.astype(np.float32),
            basis=self.basis.astype(np.float32),
            weight=self.weight.astype(np.float32),
            scale_index=self.scale_index.astype(np.int16),
        )
        return buf.getvalue()


def tables_from_bytes(data: bytes) -> KltDctTables:
    """Parse a table file (see :meth:`KltDctTables.to_bytes`)."""
    sha = hashlib.sha256(data).hexdigest()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        header = json.loads(bytes(z["header"]).decode())
        arrays = {k: z[k] for k in ("mean", "basis", "weight", "scale_index")}
    n, block = arrays["mean"].shape[0], int(header["block"])
    shapes = {"mean": (n,), "basis": (n, n), "weight": (n, block), "scale_index": (n, block)}
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            raise CodecError(f"codec table {key!r} has shape {arrays[key].shape}, expected {shape}")
    for arr in arrays.values():
        arr.flags.writeable = False
    return KltDctTables(
        name=header["name"],
        config_digest=header["config_digest"],
        block=block,
        sha256=sha,
        meta=header.get("meta", {}),
        **arrays,
    )


@functools.lru_cache(maxsize=8)
def load_tables(name: str) -> KltDctTables:
    """Load shipped tables by name from ``amser_dsp/codec/data/kltdct/<name>.npz``.

    Raises
    ------
    CodecError
        If no such tables ship with this version of the package.
    """
    folder = files(__package__).joinpath("data", "kltdct")
    resource = folder.joinpath(f"{name}.npz")
    if not resource.is_file():
        shipped = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".npz")) if folder.is_dir() else []
        raise CodecError(f"no codec tables named {name!r} ship with amser_dsp; available: {shipped}")
    tables = tables_from_bytes(resource.read_bytes())
    if tables.name != name:
        raise CodecError(f"codec table file {name}.npz declares the name {tables.name!r}")
    return tables


# ------------------------------------------------------------------ numerics
def step_size(step_index: int) -> float:
    """The base quantiser step ``2 ** (step_index / 8)``."""
    return float(2.0 ** (step_index * STEP_RATIO_LOG2))


def steps(tables: KltDctTables, step_index: int) -> np.ndarray:
    """Per-coefficient steps ``S = step / sqrt(weight)``, shape ``(n_mels, block)``."""
    return (step_size(step_index) / np.sqrt(tables.weight.astype(np.float64))).astype(np.float32)


def table_contexts(tables: KltDctTables, step_index: int) -> np.ndarray:
    """Entropy-table index of each coefficient at this step: ``scale_index - step_index`` (int32)."""
    return tables.scale_index.astype(np.int32) - np.int32(step_index)


@functools.lru_cache(maxsize=8)
def _dct(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (rows are basis functions; its transpose is the inverse), cached read-only."""
    k = np.arange(n)[:, None]
    m = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * m + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    d = d.astype(np.float32)
    d.flags.writeable = False
    return d


def analyse(features: np.ndarray, tables: KltDctTables) -> np.ndarray:
    """Transform coefficients ``(n_mels, n_blocks, block)`` of ``(n_mels, T)`` features.

    The last block is completed by repeating the last frame (no energy at the
    edge, so no ringing to code).
    """
    if features.ndim != 2 or features.shape[0] != tables.n_mels:
        raise CodecError(f"features of shape {features.shape} do not fit tables for {tables.n_mels} Mel bands")
    b = tables.block
    n_frames = features.shape[1]
    n_blocks = -(-n_frames // b)
    z = tables.basis.T @ (features.astype(np.float32) - tables.mean[:, None])
    z = np.pad(z, ((0, 0), (0, n_blocks * b - n_frames)), mode="edge") if n_frames else z
    return np.ascontiguousarray(z.reshape(tables.n_mels, n_blocks, b) @ _dct(b).T)


def synthesise(coeffs: np.ndarray, tables: KltDctTables, n_frames: int) -> np.ndarray:
    """Inverse of :func:`analyse`: features ``(n_mels, n_frames)`` float32."""
    z = (coeffs.astype(np.float32) @ _dct(tables.block)).reshape(tables.n_mels, -1)[:, :n_frames]
    return np.ascontiguousarray(tables.basis @ z + tables.mean[:, None], dtype=np.float32)


def quantise(coeffs: np.ndarray, step_per_coeff: np.ndarray) -> np.ndarray:
    """``round(C / S)`` with ``S`` broadcast over blocks; int32."""
    return np.rint(coeffs / step_per_coeff[:, None, :]).astype(np.int32)


def dequantise(q: np.ndarray, step_per_coeff: np.ndarray) -> np.ndarray:
    """``q * S``: the reconstruction point of each quantiser cell."""
    return q.astype(np.float32) * step_per_coeff[:, None, :]
