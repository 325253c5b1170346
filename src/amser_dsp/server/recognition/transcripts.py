"""A disk cache of recogniser outputs keyed by exactly what the recogniser saw.

Keyed by the model and the bytes of the input windows: any change to a codec,
a table or the front end that changes what Whisper sees misses the cache, so a
stale entry can never be reused.  Sizes and timings are never cached.
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
    """Transcripts of window lists, computed with a :class:`~amser_dsp.server.recognition.whisper.Transcriber` once and kept on disk.

    Parameters
    ----------
    folder : path
        Cache folder (created on first write).
    transcriber : Transcriber
        The recogniser; its model id, compute type and beam size are part of the key.
    """

    def __init__(self, folder: str | Path, transcriber: Transcriber) -> None:
        self.folder = Path(folder)
        self.transcriber = transcriber
        self.model = f"{transcriber.model_id}|{transcriber.compute_type}|beam{transcriber.beam_size}"

    def path(self, windows: Sequence[np.ndarray]) -> Path:
        """Where the transcript of exactly these windows is (or would be) cached."""
        text = input_digest(self.model, windows)
        return self.folder / text[:2] / f"{text[2:40]}.json"

    def get(self, windows: Sequence[np.ndarray]) -> str | None:
        path = self.path(windows)
        return json.loads(path.read_text())["text"] if path.exists() else None

    def transcribe(self, items: Sequence[Sequence[np.ndarray]], labels: Sequence[dict] | None = None) -> list[str]:
        """One transcript per item (a list of windows), cached ones read, the rest decoded in one batch.

        ``labels`` (one dict per item) are stored beside each new transcript for people reading the cache.
        """
        texts: list[str | None] = [self.get(w) for w in items]
        todo = [i for i, t in enumerate(texts) if t is None]
        windows = [w for i in todo for w in items[i]]
        owners = [i for i in todo for _ in items[i]]
        if todo:
            decoded = self.transcriber.transcribe_windows(windows)
            for i in todo:
                texts[i] = " ".join(t for t, o in zip(decoded, owners, strict=True) if o == i and t)
                path = self.path(items[i])
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"text": texts[i], **(labels[i] if labels else {})}))
        return [t or "" for t in texts]
