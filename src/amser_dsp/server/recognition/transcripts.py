"""A disk cache of recogniser outputs keyed by exactly what the recogniser saw and how it decoded.

Keyed by the model, the decoding options and the bytes of the input features:
any change to a codec, a table, the front end or the decoding that changes
what Whisper sees or does misses the cache, so a stale entry can never be
reused.  Sizes and timings are never cached.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .whisper import Transcriber

__all__ = ["TranscriptCache", "input_digest"]


def input_digest(model: str, windows: Sequence[np.ndarray]) -> str:
    """SHA-256 hex digest of a model identifier and the shapes and float32 bytes of its input windows."""
    digest = hashlib.sha256(model.encode())
    for w in windows:
        digest.update(repr(w.shape).encode())
        digest.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return digest.hexdigest()


class TranscriptCache:
    """Transcripts of feature matrices, computed with a :class:`~amser_dsp.server.recognition.whisper.Transcriber` once and kept on disk.

    Parameters
    ----------
    folder : path
        Cache folder (created on first write).
    transcriber : Transcriber
        The recogniser; its model id, compute type, beam size and decoding options are part of the key.
    """

    def __init__(self, folder: str | Path, transcriber: Transcriber) -> None:
        self.folder = Path(folder)
        self.transcriber = transcriber
        self.model = transcriber.key

    def path(self, features: np.ndarray) -> Path:
        """Where the transcript of exactly these ``(80, T)`` features is (or would be) cached."""
        text = input_digest(self.model, [features])
        return self.folder / text[:2] / f"{text[2:40]}.json"

    def get(self, features: np.ndarray) -> str | None:
        path = self.path(features)
        return json.loads(path.read_text())["text"] if path.exists() else None

    def transcribe(self, items: Sequence[np.ndarray], labels: Sequence[dict] | None = None) -> list[str]:
        """One transcript per ``(80, T)`` item, cached ones read, the rest decoded together.

        ``labels`` (one dict per item) are stored beside each new transcript for people reading the cache.
        """
        texts: list[str | None] = [self.get(f) for f in items]
        todo = [i for i, t in enumerate(texts) if t is None]
        if todo:
            decoded = self.transcriber.transcribe([items[i] for i in todo])
            for i, text in zip(todo, decoded, strict=True):
                texts[i] = text
                path = self.path(items[i])
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"text": text, **(labels[i] if labels else {})}))
        return [t or "" for t in texts]
