"""Transcript and emotion of decoded features: the server-side pipeline, one object for every caller.

The service (``/v1/transcribe``, ``/v1/analyze``, the page), ``amser analyze`` and ``amser batch analyze`` all
go through an :class:`Analyzer`: Whisper's long-form decoding, once per 30 s window (its encoder output feeds
both the decoder and the emotion network), then the transcript's embedding and the emotion, of the whole
recording and of each of its segments.  An emotion model reads the encoder states of the recogniser it was
trained on (the packaged one: tiny.en's, 384-d); when another model makes the transcript (``--model base``),
that recogniser's encoder runs beside it for the emotion branch alone (:attr:`Analyzer.states_from`; its cost
in docs/models.md).  A model that mixes every encoder layer (the packaged one) runs its own recogniser's encoder
in torch on each recording's own frames instead (:meth:`~.emotion.network.EmotionRecogniser.layer_states`), whichever
model makes the transcript; its cost is in docs/emotion.md.  The service batches the recognition
step across requests (:class:`~.recognition.batcher.RecogniserBatcher`) and hands each result to
:meth:`Analyzer.classify`; a command calls :meth:`Analyzer.analyze` on its own batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CheckpointError
from .recognition.live import FRAMES_PER_SECOND
from .recognition.longform import Decoding
from .recognition.models import named_model
from .recognition.whisper import Transcriber, encoder_states

if TYPE_CHECKING:
    from .emotion.network import EmotionRecogniser

__all__ = ["Analyzer"]


class Analyzer:
    """Whisper plus, when it has one, the emotion model; each loaded once.

    Parameters
    ----------
    transcriber : Transcriber, optional
        Default: the packaged Whisper tiny.en.
    emotion : EmotionRecogniser, optional
        The emotion model; ``None``: transcripts only (:meth:`classify` answers ``None``).
        :meth:`load` loads one from a checkpoint.
    """

    def __init__(self, transcriber: Transcriber | None = None, emotion: EmotionRecogniser | None = None) -> None:
        self.transcriber = transcriber or Transcriber()
        self.emotion = emotion
        #: The recogniser whose encoder states the emotion model reads, when it is not the transcriber
        #: (loaded here, its encoder alone runs); None when the transcript's own states serve.
        self.states_from: Transcriber | None = None
        wanted = (
            emotion.meta.get("recogniser") if emotion is not None and emotion.cfg.audio_input == "encoder" else None
        )
        if emotion is not None and wanted is not None and wanted != self.transcriber.model_id:
            name = named_model(wanted)
            if name is None:
                raise CheckpointError(
                    f"{emotion.path} reads encoder states of Whisper {wanted!r}, which no --model name loads; "
                    f"the recogniser here is {self.transcriber.model_id!r}"
                )
            self.states_from = Transcriber(
                model=name, compute_type=self.transcriber.compute_type, threads=self.transcriber.threads
            )

    @classmethod
    def load(cls, transcriber: Transcriber | None = None, checkpoint: str | os.PathLike[str] | None = None) -> Analyzer:
        """Whisper plus the emotion model of ``checkpoint`` (default: the packaged one; needs the emotion extra)."""
        from .emotion.network import EmotionRecogniser

        return cls(transcriber or Transcriber(), EmotionRecogniser(checkpoint))

    @property
    def needs_states(self) -> bool:
        """Whether :meth:`classify` reads the transcriber's own encoder states (else it makes its own, or none)."""
        return self.emotion is not None and self.emotion.cfg.audio_input == "encoder" and self.states_from is None

    def emotion_encoder(self) -> str | None:
        """Whose encoder states the emotion model reads (``/v1/info``): the transcriber's, or a model run beside it."""
        if self.emotion is None:
            return None
        if self.emotion.cfg.audio_input == "mel":
            return "none (decoded log-Mel)"
        if self.emotion.cfg.audio_input == "layers":  # its own encoder, whichever model makes the transcript
            name = named_model(str(self.emotion.meta.get("recogniser")))
            return f"{name} (every layer, run in torch on the recording's own frames)"
        if self.states_from is None:
            return f"{self.transcriber.name} (the transcript's own)"
        return f"{self.states_from.name} (run beside {self.transcriber.name} for the emotion branch)"

    @property
    def labels(self) -> tuple[str, ...]:
        """The emotion classes (empty without an emotion model)."""
        return self.emotion.labels if self.emotion is not None else ()

    def classify(
        self, states: Sequence[np.ndarray], features: Sequence[np.ndarray], texts: Sequence[str]
    ) -> list[dict[str, Any] | None]:
        """Per item, ``{"label", "probabilities"}`` from its encoder states, features and transcript (``None``
        for every item without an emotion model, or for an item of no frames)."""
        if self.emotion is None:
            return [None] * len(texts)
        keep = [i for i, f in enumerate(features) if f.shape[1] > 0]
        out: list[dict[str, Any] | None] = [None] * len(texts)
        if keep:
            probs = self.emotion.predict(
                [states[i] for i in keep], [features[i] for i in keep], [texts[i] for i in keep]
            )
            for i, p in zip(keep, probs, strict=True):
                out[i] = self.emotion.describe(p)
        return out

    def emotions(
        self, decodings: Sequence[Decoding], features: Sequence[np.ndarray]
    ) -> list[tuple[dict[str, Any] | None, list[dict[str, Any] | None]]]:
        """Per item: the emotion of the whole recording and of each of its segments (``None`` without a model).

        The whole is classified from every frame's encoder states, all the features and the
        whole transcript (one pass of the network over the recording, as for a short clip),
        not averaged from its segments; each segment from its own frames and text.  The states are the
        transcript's own, or those of :attr:`states_from` (its encoder run here on every window).
        """
        if self.emotion is None:
            return [(None, [None] * len(d.segments)) for d in decodings]
        if self.emotion.cfg.audio_input == "layers":
            whole = self.emotion.layer_states(features)
        elif self.states_from is None:
            whole = [d.states for d in decodings]
        else:
            whole = encoder_states(self.states_from, list(features))
        states: list[np.ndarray] = []
        feats: list[np.ndarray] = []
        texts: list[str] = []
        for d, f, own in zip(decodings, features, whole, strict=True):
            states.append(own)
            feats.append(f)
            texts.append(d.text)
            for s in d.segments:
                a, b = round(s.start * FRAMES_PER_SECOND), round(s.end * FRAMES_PER_SECOND)
                states.append(own[a // 2 : (b + 1) // 2])
                feats.append(f[:, a:b])
                texts.append(s.text)
        found = iter(self.classify(states, feats, texts))
        return [(next(found), [next(found) for _ in d.segments]) for d in decodings]

    def analyze(self, features: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Per ``(80, T)`` whisper-preset feature matrix: ``text``, ``label``, ``probabilities``, ``segments``
        (``start``, ``end`` in seconds, ``text``, and each segment's ``label`` and ``probabilities``),
        ``timings`` (ms)."""
        items = [np.asarray(f, np.float32) for f in features]
        t0 = time.perf_counter()
        decodings = self.transcriber.decode(items, states=self.needs_states)
        t1 = time.perf_counter()
        emotions = self.emotions(decodings, items)
        t2 = time.perf_counter()
        share = 1000 / max(len(items), 1)  # a batch's time, split evenly over its items
        none = {"label": None, "probabilities": None}
        return [
            {
                "text": d.text,
                **(whole or none),
                "segments": [{**s.to_dict(), **(e or none)} for s, e in zip(d.segments, parts, strict=True)],
                "timings": {"asr_ms": (t1 - t0) * share, "emotion_ms": (t2 - t1) * share},
            }
            for d, (whole, parts) in zip(decodings, emotions, strict=True)
        ]
