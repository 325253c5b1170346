"""Building the rANS coder's Laplace tables (build-time code; the runtime only loads the shipped file).

``python -m amser_dsp.codec.rans_tables --build-tables [--out PATH]`` writes
``data/laplace_tables_v1.npz``; ``--check-tables`` rebuilds it in memory and
compares.  :func:`scale_to_index` is the trainer's map from a fitted Laplace
scale to a table index.  See :mod:`amser_dsp.codec.rans` for the format.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from collections.abc import Sequence
from importlib.resources import files

import numpy as np

from ..errors import CodecError
from .rans import (
    _TABLE_FILE,
    ALPHABET,
    ESCAPE,
    N_SYMBOLS,
    PRECISION,
    SCALE_INDEX_MAX,
    SCALE_INDEX_MIN,
    SCALE_STEPS_PER_OCTAVE,
    TABLE_VERSION,
    TABLES_SHA256,
    _exp_golomb_bits,
)

__all__ = ["build_tables", "main", "scale_to_index", "tables_to_bytes"]


def scale_to_index(scale: float | np.ndarray) -> int | np.ndarray:
    """Nearest table index ``round(8 * log2(scale))``, clipped to the grid.

    For the encoder-side trainer only (choosing a coefficient's table from a
    fitted Laplace scale, in quantiser steps).  The result is stored as an
    integer, which is what encoder and decoder share; never call this on the
    decoding side, where float rounding could differ between machines.

    Parameters
    ----------
    scale : float or ndarray
        Laplace scale(s) ``b`` (mean absolute value), > 0; 0 maps to the smallest table.

    Returns
    -------
    int or ndarray of int32
        Index in ``SCALE_INDEX_MIN .. SCALE_INDEX_MAX``.
    """
    s = np.asarray(scale, dtype=np.float64)
    if not np.all(s >= 0):  # also catches NaN
        raise CodecError("Laplace scales must be >= 0")
    with np.errstate(divide="ignore"):
        i = np.rint(SCALE_STEPS_PER_OCTAVE * np.log2(s))
    out = np.clip(i, SCALE_INDEX_MIN, SCALE_INDEX_MAX).astype(np.int32)
    return int(out) if out.ndim == 0 else out


def _laplace_probabilities(scale: float) -> np.ndarray:
    """P(rank) of ``round(x)``, ``x ~ Laplace(0, scale)``; float64 (table build only)."""
    mags = np.arange(ALPHABET + 1, dtype=np.float64)
    upper = np.exp(-(mags + 0.5) / scale)  # P(|x| > m + 1/2)
    p_mag = np.empty(ALPHABET + 1)
    p_mag[0] = -np.expm1(-0.5 / scale)
    p_mag[1:] = 0.5 * (upper[:-1] - upper[1:])  # each sign
    p = np.empty(N_SYMBOLS)
    p[0] = p_mag[0]
    p[1:ESCAPE:2] = p_mag[1:]
    p[2:ESCAPE:2] = p_mag[1:]
    p[ESCAPE] = upper[-1]
    return p


def _quantise_probabilities(p: np.ndarray) -> np.ndarray:
    """Integer frequencies >= 1 summing to ``2 ** PRECISION``, symmetric and monotone in ``|q|``.

    Each symbol gets 1 plus its share of the remaining mass, floored; the few
    leftover units go to the largest remainders, to ``+k`` and ``-k`` together
    (ties to the smaller magnitude, so a likelier value never gets a smaller
    frequency); a last odd unit goes to zero, the likeliest value.
    """
    total = 1 << PRECISION
    share = p / p.sum() * (total - p.size)
    f = 1 + np.floor(share).astype(np.int64)
    left = total - int(f.sum())
    rem = share - np.floor(share)
    # Candidates: rank 0, each pair (+k, -k) by its first rank, ESCAPE.
    firsts = np.array([0, *range(1, ESCAPE, 2), ESCAPE])
    for r in firsts[np.lexsort((firsts, -rem[firsts]))]:
        width = 2 if 0 < r < ESCAPE else 1
        if left < width:
            continue
        f[r : r + width] += 1
        left -= width
    f[0] += left
    return f


def _best_escape_order(scale: float) -> int:
    """Exp-Golomb order minimising the expected length of the geometric escape tail."""
    theta = np.exp(-1.0 / scale)
    m = np.arange(int(60 * scale) + 64, dtype=np.int64)
    w = theta ** m.astype(np.float64)
    w /= w.sum()
    costs = [float(w @ _exp_golomb_bits(m, np.full_like(m, k))) for k in range(24)]
    return int(np.argmin(costs))


def build_tables() -> dict[str, np.ndarray]:
    """Compute the table arrays from the Laplace model (run once, results shipped).

    Returns
    -------
    dict
        ``scale_index`` (int32, N_TABLES), ``freq`` (uint16, N_TABLES x N_SYMBOLS, by rank),
        ``escape_k`` (int32, N_TABLES) and ``params`` (int32: version, precision,
        alphabet, steps per octave).
    """
    index = np.arange(SCALE_INDEX_MIN, SCALE_INDEX_MAX + 1, dtype=np.int32)
    scales = 2.0 ** (index / SCALE_STEPS_PER_OCTAVE)
    # uint16 suffices: a frequency is at most 2**16 - (N_SYMBOLS - 1).
    freq = np.stack([_quantise_probabilities(_laplace_probabilities(s)) for s in scales]).astype(np.uint16)
    escape_k = np.array([_best_escape_order(s) for s in scales], dtype=np.int32)
    params = np.array([TABLE_VERSION, PRECISION, ALPHABET, SCALE_STEPS_PER_OCTAVE], dtype=np.int32)
    return {"params": params, "scale_index": index, "freq": freq, "escape_k": escape_k}


def tables_to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A byte-reproducible ``.npz`` (fixed member order and zip timestamps, no compression)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m amser_dsp.codec.rans_tables --build-tables [--out PATH]`` / ``--check-tables``."""
    parser = argparse.ArgumentParser(prog="python -m amser_dsp.codec.rans_tables", description=main.__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--build-tables", action="store_true", help="write the table file and print its SHA-256")
    group.add_argument(
        "--check-tables", action="store_true", help="rebuild in memory and compare with the shipped file"
    )
    parser.add_argument("--out", help="output path (default: the package's data directory)")
    args = parser.parse_args(argv)
    data = tables_to_bytes(build_tables())
    sha = hashlib.sha256(data).hexdigest()
    if args.build_tables:
        path = args.out or str(files("amser_dsp.codec") / "data" / _TABLE_FILE)
        with open(path, "wb") as fh:
            fh.write(data)
        print(f"{path}: {len(data)} bytes, SHA-256 {sha}")
        if sha != TABLES_SHA256:
            print(f"set TABLES_SHA256 = {sha!r} in amser_dsp/codec/rans.py", file=sys.stderr)
        return 0
    shipped = (files("amser_dsp.codec") / "data" / _TABLE_FILE).read_bytes()
    same = shipped == data
    print(
        f"rebuilt SHA-256 {sha}; shipped {hashlib.sha256(shipped).hexdigest()}: {'identical' if same else 'DIFFERENT'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
