"""Transcript and emotion of decoded features: the whole server-side pipeline in one object.

``Analyzer.analyze(features)`` runs Whisper once per 30 s window (its encoder
output feeds both the decoder and the emotion network), embeds the transcript,
and classifies.  The service, ``amser analyze`` and the demo all use it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .asr import Transcriber
from .emotion import EmotionRecogniser

__all__ = ["Analyzer"]


class Analyzer:
    """Whisper plus the emotion model, each loaded once.

    Parameters
    ----------
    transcriber : Transcriber, optional
        Default: the packaged Whisper tiny.en.
    checkpoint : path, optional
        Emotion checkpoint; default: the packaged one.
    """

    def __init__(
        self, transcriber: Transcriber | None = None, checkpoint: str | os.PathLike[str] | None = None
    ) -> None:
        self.transcriber = transcriber or Transcriber()
        self.recogniser = EmotionRecogniser(checkpoint, recogniser=self.transcriber.model_id)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.recogniser.labels

    def analyze(self, features: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Per ``(80, T)`` whisper-preset feature matrix: ``text``, ``label``, ``probabilities``, ``timings`` (ms)."""
        items = [np.asarray(f, np.float32) for f in features]
        t0 = time.perf_counter()
        recognised = self.transcriber.transcribe_with_states(items)
        t1 = time.perf_counter()
        probs = self.recogniser.predict([s for _, s in recognised], items, [t for t, _ in recognised])
        t2 = time.perf_counter()
        share = 1000 / max(len(items), 1)  # a batch's time, split evenly over its items
        return [
            {
                "text": text,
                **self.recogniser.describe(p),
                "timings": {"asr_ms": (t1 - t0) * share, "emotion_ms": (t2 - t1) * share},
            }
            for (text, _), p in zip(recognised, probs, strict=True)
        ]
