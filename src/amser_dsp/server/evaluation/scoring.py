"""Scoring transcripts and comparing systems: Whisper's text normaliser, word errors, paired bootstrap."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

__all__ = ["normaliser", "paired_bootstrap", "word_errors"]


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
    ref, hyp = reference.split(), hypothesis.split()
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1], len(ref)


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
