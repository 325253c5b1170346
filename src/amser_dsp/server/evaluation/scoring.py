"""Scoring transcripts and comparing systems: Whisper's text normaliser, word errors, paired bootstrap."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

__all__ = ["edit_counts", "normaliser", "paired_bootstrap", "word_errors"]


def normaliser() -> tuple[Callable[[str], str], str]:
    """Whisper's English normaliser if openai-whisper is installed, else a minimal equivalent."""
    try:
        from whisper.normalizers import EnglishTextNormalizer

        return EnglishTextNormalizer(), "openai-whisper EnglishTextNormalizer"
    except ImportError:

        def basic(text: str) -> str:
            text = re.sub(r"[^\w\s']", " ", text.lower())
            return re.sub(r"\s+", " ", text.replace("'", "")).strip()

        return basic, "fallback normaliser (lower case, punctuation and apostrophes removed)"


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words): Levenshtein over words."""
    substitutions, deletions, insertions = edit_counts(reference, hypothesis)
    return substitutions + deletions + insertions, len(reference.split())


def edit_counts(reference: str, hypothesis: str) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of the best word alignment; of equally good ones, the fewest deletions.

    Deletions are the reference's words the hypothesis has nothing for (a streamed transcript's lost words).
    """
    ref, hyp = reference.split(), hypothesis.split()
    # Each cell: (errors, deletions, substitutions) of the best alignment of the prefixes.
    previous = [(j, 0, 0) for j in range(len(hyp) + 1)]
    for i, r in enumerate(ref, 1):
        current = [(i, i, 0)] + [(0, 0, 0)] * len(hyp)
        for j, h in enumerate(hyp, 1):
            e, d, s = previous[j - 1]
            diagonal = (e + (r != h), d, s + (r != h))
            e, d, s = previous[j]
            deletion = (e + 1, d + 1, s)
            e, d, s = current[j - 1]
            insertion = (e + 1, d, s)
            current[j] = min(diagonal, deletion, insertion)
        previous = current
    errors, deletions, substitutions = previous[-1]
    return substitutions, deletions, errors - substitutions - deletions


def paired_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray], n_items: int, *, seed: int = 0, resamples: int = 2000
) -> tuple[float, float]:
    """95% percentile interval of ``statistic(indices)`` over items resampled with replacement.

    ``statistic`` takes a ``(resamples, n_items)`` array of item indices and
    returns one value per row (e.g. the WER difference of two systems on the
    same resampled clips: paired, so clip difficulty cancels).
    """
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, n_items, size=(resamples, n_items))
    lo, hi = np.percentile(statistic(samples), [2.5, 97.5])
    return float(lo), float(hi)
