"""Train the tables of the KLT-DCT codec from speech features (build-time code; the runtime never imports it).

The command is ``amser train-codec --manifest ../shared/data/asr/manifest.tsv --out TABLES.npz``
(the server extra: measuring Whisper's sensitivity needs its encoder).

Steps: features of every clip with the preset; mean and KLT basis (eigenvectors
of the 80 x 80 covariance, by decreasing variance, sign fixed so the largest
entry of each is positive); Whisper's sensitivity to noise per coefficient
(noise added to groups of coefficients, error measured at Whisper's encoder
output, per unit of feature-domain noise energy; needs the ``server`` extra),
of one recogniser or the mean of several (:func:`combine_sensitivities`);
Laplace scale of each coefficient (mean absolute value, the maximum-likelihood
estimate), stored as the integer entropy-table index at step 1.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .kltdct import KltDctTables, analyse, synthesise, tables_from_bytes

__all__ = ["clip_folds", "combine_sensitivities", "fit_tables", "join_clips", "measure_sensitivity"]

# Coefficient groups whose sensitivity is measured together: KLT components
# (finer where the variance is) and time-DCT indices.
KLT_GROUPS = ((0, 1), (1, 2), (2, 3), (3, 5), (5, 8), (8, 12), (12, 18), (18, 27), (27, 40), (40, 60), (60, 80))


def _time_groups(block: int) -> list[tuple[int, int]]:
    edges = sorted({0, 1, 2, 3, 4, *range(4, block + 1, 2), block})
    return [(a, b) for a, b in itertools.pairwise(edges) if a < b]


def fit_basis(feature_list: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and KLT basis (columns, decreasing variance, deterministic signs)."""
    x = np.concatenate([f.astype(np.float64) for f in feature_list], axis=1)
    mean = x.mean(axis=1)
    _, vectors = np.linalg.eigh(np.cov(x))
    vectors = vectors[:, ::-1]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])])
    return mean, vectors * signs


def join_clips(feature_list: Sequence[np.ndarray], frames: int) -> list[np.ndarray]:
    """The clips in order, joined along time into pieces of at most ``frames`` frames (a longer clip alone).

    Whisper's encoder costs a whole 30 s window however short its input: measuring the
    sensitivity on clips joined into windows costs a quarter of measuring it clip by clip
    on the shared set (7 s clips), on the same frames.
    """
    pieces: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for f in feature_list:
        if current and sum(c.shape[1] for c in current) + f.shape[1] > frames:
            pieces.append(np.concatenate(current, axis=1))
            current = []
        current.append(f)
    if current:
        pieces.append(np.concatenate(current, axis=1))
    return pieces


def combine_sensitivities(weights: Sequence[np.ndarray]) -> np.ndarray:
    """One weight table for several recognisers: the mean of their weights, each at geometric mean 1, renormalised.

    Each recogniser's encoder error is counted relative to its own (the sum over recognisers
    of each one's error per unit of its mean sensitivity), so a large encoder's larger raw
    error does not drown a small one's.
    """
    if not weights:
        raise ValueError("no sensitivity weights to combine")
    mean = np.mean([w / np.exp(np.log(w).mean()) for w in weights], axis=0)
    return np.asarray(mean / np.exp(np.log(mean).mean()))


def measure_sensitivity(
    feature_list: Sequence[np.ndarray],
    tables: KltDctTables,
    encode: Callable[[list[np.ndarray]], list[np.ndarray]],
    *,
    sigma: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Recogniser error per unit feature noise for each coefficient, ``(n_mels, block)``.

    Gaussian noise of standard deviation ``sigma`` is added to one group of
    coefficients at a time; the squared error of ``encode`` (the recogniser's
    encoder) over the squared feature error is that group's sensitivity.  The
    result is the outer product of the per-component and per-time-index
    sensitivities, normalised to geometric mean 1.
    """
    rng = np.random.default_rng(seed)
    reference = encode(list(feature_list))
    coeffs = [analyse(f, tables) for f in feature_list]

    def group_sensitivity(mask: np.ndarray) -> float:
        noisy, noise_energy = [], 0.0
        for f, c in zip(feature_list, coeffs, strict=True):
            rec = synthesise(c + sigma * rng.standard_normal(c.shape) * mask[:, None, :], tables, f.shape[1])
            noisy.append(rec)
            noise_energy += float(((rec - f) ** 2).sum())
        out = encode(noisy)
        return sum(float(((a - b) ** 2).sum()) for a, b in zip(out, reference, strict=True)) / noise_energy

    n, block = tables.n_mels, tables.block
    comp = np.empty(n)
    for lo, hi in KLT_GROUPS:
        mask = np.zeros((n, block))
        mask[lo:hi] = 1
        comp[lo:hi] = group_sensitivity(mask)
        print(f"  sensitivity of KLT components {lo}-{hi - 1}: {comp[lo]:.2f}", file=sys.stderr)
    time = np.empty(block)
    for lo, hi in _time_groups(block):
        mask = np.zeros((n, block))
        mask[:, lo:hi] = 1
        time[lo:hi] = group_sensitivity(mask)
        print(f"  sensitivity of time-DCT indices {lo}-{hi - 1}: {time[lo]:.2f}", file=sys.stderr)
    weight = np.outer(comp, time)
    return weight / np.exp(np.log(weight).mean())


def fit_tables(
    feature_list: Sequence[np.ndarray],
    *,
    name: str,
    config_digest: str,
    block: int = 16,
    encoders: Sequence[Callable[[list[np.ndarray]], list[np.ndarray]]] = (),
    weight: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
    piece_frames: int | None = None,
) -> KltDctTables:
    """Fit mean, basis, sensitivity weights and Laplace scales on ``feature_list``.

    Give ``encoders`` (recognisers' encoders) to measure the sensitivity weights
    (of each, clip by clip, or with ``piece_frames`` on the clips joined into pieces
    of that many frames, :func:`join_clips`; then :func:`combine_sensitivities`), or
    ``weight`` to reuse measured ones; with neither, all weights are 1 (plain
    mean-squared-error coding).
    """
    mean, basis = fit_basis(feature_list)
    n = mean.shape[0]
    provisional = KltDctTables(
        name=name,
        config_digest=config_digest,
        block=block,
        mean=mean.astype(np.float32),
        basis=basis.astype(np.float32),
        weight=np.ones((n, block), np.float32),
        scale_index=np.zeros((n, block), np.int16),
        sha256="",
        meta={},
    )
    if weight is None and encoders:
        pieces = join_clips(feature_list, piece_frames) if piece_frames else list(feature_list)
        weight = combine_sensitivities([measure_sensitivity(pieces, provisional, e) for e in encoders])
    elif weight is None:
        weight = np.ones((n, block))
    coeffs = np.concatenate([analyse(f, provisional) for f in feature_list], axis=1)
    laplace_scale = np.abs(coeffs).mean(axis=1) + 1e-6
    scale_index = np.rint(8 * np.log2(laplace_scale * np.sqrt(weight))).astype(np.int16)
    fitted = KltDctTables(
        name=name,
        config_digest=config_digest,
        block=block,
        mean=provisional.mean,
        basis=provisional.basis,
        weight=weight.astype(np.float32),
        scale_index=scale_index,
        sha256="",
        meta=meta or {},
    )
    return tables_from_bytes(fitted.to_bytes())


def clip_folds(rows: Sequence[dict[str, str]], n_folds: int = 2) -> dict[str, int]:
    """Clip id -> fold, speaker-disjoint: speakers in sorted order are dealt round-robin.

    Out-of-fold evaluation trains tables on every fold but ``i`` and tests on fold ``i``.
    """
    speakers = sorted({r["speaker"] for r in rows})
    fold_of = {s: i % n_folds for i, s in enumerate(speakers)}
    return {r["id"]: fold_of[r["speaker"]] for r in rows}
