"""Long-form decoding on features: Whisper's sliding window with timestamps, as openai-whisper runs it on audio.

A recording of any length is decoded one 30 s window at a time.  Each window
starts where the last complete segment of the one before ended (Whisper's
timestamp tokens say where that is), so a word is never cut in two by a
window's edge and Whisper is never asked to fill a window it would stop short
of.  A window whose decode loops (its text compresses too well) or that Whisper
is unsure of (a low average log-probability) is decoded again by sampling at
rising temperatures; a window Whisper judges silent (its no-speech probability)
and is unsure of gives no text.  Before any of that, features with no frame
loud enough to be speech, or shorter than ``min_seconds``, are not decoded at
all: silence and clicks give an empty transcript, never Whisper's "you".

The decoding of each recording is a :class:`Decoding` that advances one window
per :meth:`LongFormDecoder.step`; a step takes the next window of many
recordings, each at its own position, and decodes them together (one encoder
batch, one ``generate`` call), so the service batches the windows of many
requests at once and a short request is never held behind a long one.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...config import FeatureConfig, get_preset
from ...errors import ConfigError
from .. import require_extra
from .live import FRAMES_PER_SECOND, active_frames

require_extra("ctranslate2")

import ctranslate2  # noqa: E402

__all__ = [
    "WINDOW_FRAMES",
    "DecodeOptions",
    "Decoding",
    "LongFormDecoder",
    "Segment",
    "compression_ratio",
    "encoded_rows",
    "silence_value",
]

#: Frames in one Whisper input window (30 s at 100 frames per second).
WINDOW_FRAMES = 3000
#: Feature frames per timestamp step (Whisper's timestamps are 20 ms apart; the encoder halves the frame rate).
INPUT_STRIDE = 2
#: Seconds between two timestamp tokens.
TIME_PRECISION = INPUT_STRIDE / FRAMES_PER_SECOND
#: Decoder positions of the model (prompt and output together).
TEXT_CONTEXT = 448


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


def compression_ratio(text: str) -> float:
    """Bytes of ``text`` over bytes of its zlib compression: above 2.4 Whisper calls a decode a loop."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class DecodeOptions:
    """How a recording is decoded (openai-whisper's and faster-whisper's defaults unless said otherwise).

    Attributes
    ----------
    temperatures : tuple of float
        The first (0: beam search) is tried first; each next one (sampling, ``best_of``
        candidates) only when the last decode failed the two tests below.
    compression_ratio_threshold : float or None
        A decode whose text compresses better than this is a loop: try the next temperature.
    log_prob_threshold : float or None
        A decode whose average token log-probability is below this is unsure: try the next one.
    no_speech_threshold : float or None
        A window whose no-speech probability is above this and whose decode is unsure
        (``log_prob_threshold``) is silent: no text, on to the next window.
    condition_on_previous_text : bool
        Prompt each window with the text of the windows before it (``<|startofprev|>``),
        as openai-whisper and faster-whisper do by default.  On the long recordings of
        docs/fidelity.md it took 1.1 points off the default codec's WER (13.12 to 12.04)
        and cost 0.25 on uncompressed features (11.40 to 11.65).
    prompt_reset_on_temperature : float
        After a window decoded at a temperature above this, the prompt starts afresh.
    best_of : int
        Candidates sampled at each temperature above 0.
    max_initial_timestamp : float
        The first timestamp of a window is at most this many seconds in.
    min_seconds : float
        Features shorter than this give no text (Whisper guesses a word on any sound).
    speech_level : float
        Whisper-scaled log-Mel level a frame's loudest band must exceed to count as
        possible speech (the live transcript's test, :func:`.live.active_frames`).
    min_speech_frames : int
        Windows with fewer frames above ``speech_level`` are silence: not decoded.
    finish_last_window : bool
        In the window that reaches the end of the recording, keep an unfinished last
        segment (it ends with the audio) instead of decoding its audio again in a
        window of its own: a clip under 30 s stays one window.
    short_timestamps : bool
        Decode a recording that fits one window with timestamps too (segments inside it).
        Off: such a recording is decoded without them, as one segment from its start to its
        end, as fast as before long-form decoding (timestamp tokens cost about 4% more
        CPU on the shared clips, with the same WER).
    """

    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    prompt_reset_on_temperature: float = 0.5
    best_of: int = 5
    max_initial_timestamp: float = 1.0
    min_seconds: float = 0.5
    speech_level: float = 0.2
    min_speech_frames: int = 10
    finish_last_window: bool = True
    short_timestamps: bool = False

    def __post_init__(self) -> None:
        if not self.temperatures or any(not 0 <= t <= 2 for t in self.temperatures):
            raise ConfigError(f"temperatures={self.temperatures!r} are invalid: expected values from 0 to 2")
        if self.best_of < 1:
            raise ConfigError(f"best_of={self.best_of!r} is invalid: expected at least 1")
        if self.min_seconds < 0 or self.max_initial_timestamp < 0:
            raise ConfigError("min_seconds and max_initial_timestamp must not be negative")

    def key(self) -> str:
        """A stable text of every option (part of a transcript cache's key)."""
        return repr(sorted(self.__dict__.items()))


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording and its text; ``start`` and ``end`` in seconds from the recording's start."""

    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0
    compression_ratio: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """``{"start", "end", "text"}``, times rounded to the millisecond."""
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


@dataclass
class Decoding:
    """One recording's decoding in progress: where its next window starts, what it has said so far.

    Attributes
    ----------
    features : ndarray
        ``(n_mels, T)`` whisper-preset features.
    keep_states : bool
        Keep the encoder states of every frame (``(ceil(T / 2), d)``, :attr:`states`) for the emotion model.
    """

    features: np.ndarray
    pad: float
    keep_states: bool = False
    seek: int = 0
    segments: list[Segment] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # text before the recording, then every segment's tokens
    prompt_from: int = 0  # the next prompt starts at this token
    prefix: tuple[int, ...] = ()  # text forced at the start of the first window
    state_parts: list[np.ndarray] = field(default_factory=list)
    mute: bool = False  # nothing to decode: too short or no possible speech
    windows: int = 0  # windows decoded (silent windows skipped without decoding do not count)
    _width: int = 0  # encoder state width, once a window has been encoded

    @property
    def frames(self) -> int:
        return int(self.features.shape[1])

    @property
    def done(self) -> bool:
        return self.seek >= self.frames

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)

    @property
    def states(self) -> np.ndarray:
        """Encoder states of the frames decoded so far (empty ``(0, 0)`` without ``keep_states``)."""
        if not self.state_parts:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(self.state_parts)

    def window(self) -> np.ndarray:
        """The next 30 s window: the features from :attr:`seek`, padded with digital silence."""
        out = np.full((self.features.shape[0], WINDOW_FRAMES), np.float32(self.pad), np.float32)
        part = self.features[:, self.seek : self.seek + WINDOW_FRAMES]
        out[:, : part.shape[1]] = part
        return out

    def advance(self, to: int, encoded: np.ndarray | None) -> None:
        """Move to frame ``to``; keep the states of the frames passed (zeros for a window never encoded)."""
        to = min(max(to, self.seek + 1), self.frames)
        if self.keep_states:
            rows = (to + 1) // 2 - (self.seek + 1) // 2
            if encoded is None:
                self.state_parts.append(np.zeros((rows, self._width), np.float32))
            else:
                self._width = encoded.shape[1]
                self.state_parts.append(np.array(encoded[:rows], np.float32))
        self.seek = to


@dataclass
class _Decoded:
    """One window's decode: tokens (timestamps included) and the numbers the fallback and silence tests read."""

    tokens: list[int]
    text: str
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float


class LongFormDecoder:
    """Whisper's long-form decoding on features, many recordings at once.

    Parameters
    ----------
    model : ctranslate2.models.Whisper
        The loaded model.
    tokenizer : tokenizers.Tokenizer
        Its tokenizer (``tokenizer.json``).
    beam_size : int
        Beam of the temperature-0 decode.
    batch_size : int
        Windows encoded and decoded together.
    options : DecodeOptions, optional
        Thresholds and temperatures.
    start : sequence of int, optional
        The tokens each window's text follows: ``<|startoftranscript|>`` (the default), and for a
        multilingual model its language and task (:func:`~.models.start_tokens`).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        beam_size: int,
        batch_size: int,
        options: DecodeOptions | None = None,
        start: Sequence[int] = (),
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.beam_size, self.batch_size = beam_size, batch_size
        self.options = options or DecodeOptions()
        tok = tokenizer.token_to_id
        self.eot = tok("<|endoftext|>")
        self.sot = tok("<|startoftranscript|>")
        self.sot_prev = tok("<|startofprev|>")
        self.no_timestamps = tok("<|notimestamps|>")
        self.start_tokens = list(start) or [self.sot]
        self.timestamp_begin = self.no_timestamps + 1
        self.config = get_preset("whisper")

    # ------------------------------------------------------------ recordings
    def start(
        self,
        features: np.ndarray,
        *,
        keep_states: bool = False,
        previous: Sequence[int] = (),
        prefix: Sequence[int] = (),
    ) -> Decoding:
        """A :class:`Decoding` of ``(n_mels, T)`` features.

        Features shorter than ``min_seconds``, or without a single stretch of
        possible speech, are never given to the decoder: they have no text
        (with ``keep_states`` their windows are still encoded for the emotion model).
        ``previous``: token ids of text said before the features (the first window's
        prompt); ``prefix``: token ids the first window's text must start with.
        """
        features = np.asarray(features, np.float32)
        bands = self.config.n_mels
        if features.ndim != 2 or features.shape[0] != bands or not np.isfinite(features).all():
            raise ConfigError(
                f"features of shape {features.shape} cannot be decoded: expected finite ({bands}, frames) "
                "whisper-preset features"
            )
        o = self.options
        loud = int(active_frames(features, o.speech_level).sum()) if features.shape[1] else 0
        mute = features.shape[1] < o.min_seconds * FRAMES_PER_SECOND or loud < o.min_speech_frames
        previous = list(previous)[-(TEXT_CONTEXT // 2 - 1) :]
        return Decoding(
            features,
            silence_value(features, self.config),
            keep_states,
            mute=mute,
            tokens=previous,
            prefix=tuple(prefix),
        )

    def run(self, items: Sequence[np.ndarray], *, keep_states: bool = False) -> list[Decoding]:
        """Decode every item to the end, the next windows of all unfinished items batched together."""
        decodings = [self.start(f, keep_states=keep_states) for f in items]
        while True:
            todo = [d for d in decodings if not d.done]
            if not todo:
                return decodings
            for lo in range(0, len(todo), self.batch_size):
                self.step(todo[lo : lo + self.batch_size])

    # ------------------------------------------------------------ one window each
    def step(self, decodings: Sequence[Decoding]) -> None:
        """Decode the next window of each unfinished decoding (one batch) and move each past it.

        A window with no possible speech is passed over without the decoder (and without the
        encoder, unless its states are kept).
        """
        encode = []
        for d in decodings:
            if d.done:
                continue
            if (d.mute or not self._speech_in(d)) and not d.keep_states:
                d.advance(d.seek + WINDOW_FRAMES, None)
            else:
                encode.append(d)
        if encode:
            batch = np.ascontiguousarray(np.stack([d.window() for d in encode]))
            self.decode_encoded(encode, self.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=True))

    def decode_encoded(self, decodings: Sequence[Decoding], encoded: Any) -> None:
        """Decode each decoding's next window from its encoder output (row ``i`` for ``decodings[i]``), and move on.

        For a caller that encodes the windows itself (:meth:`Decoding.window`) and uses the
        encoder output again, as the live recogniser does to time the words.
        """
        speak = [i for i, d in enumerate(decodings) if not d.mute and self._speech_in(d)]
        states = np.asarray(encoded) if any(d.keep_states for d in decodings) else None
        decoded: dict[int, _Decoded] = {}
        if speak:
            rows = encoded_rows(encoded, speak)
            decoded = dict(zip(speak, self._decode(rows, [self._prompt(decodings[i]) for i in speak]), strict=True))
        for i, d in enumerate(decodings):
            own = None if states is None else states[i]
            if i in decoded:
                d.windows += 1
                self._apply(d, decoded[i], own)
            else:
                d.advance(d.seek + WINDOW_FRAMES, own)

    def _speech_in(self, d: Decoding) -> bool:
        return self._speech(d.features[:, d.seek : d.seek + WINDOW_FRAMES])

    def _speech(self, part: np.ndarray) -> bool:
        """Whether features hold possible speech (enough frames above the speech level)."""
        return int(active_frames(part, self.options.speech_level).sum()) >= self.options.min_speech_frames

    def _prompt(self, d: Decoding) -> list[int]:
        previous = d.tokens[d.prompt_from :][-(TEXT_CONTEXT // 2 - 1) :]
        prompt = ([self.sot_prev, *previous] if previous else []) + self.start_tokens
        if d.frames <= WINDOW_FRAMES and not self.options.short_timestamps:
            prompt.append(self.no_timestamps)  # one window: nothing to seek, one segment
        elif d.prefix and not d.windows:
            prompt.append(self.timestamp_begin)
        return [*prompt, *d.prefix] if not d.windows else prompt

    def _decode(self, encoded: Any, prompts: list[list[int]]) -> list[_Decoded]:
        """Temperature 0 for all, then each higher temperature for the decodes that still fail (Whisper's fallback)."""
        o = self.options
        out: list[_Decoded | None] = [None] * len(prompts)
        tried: list[list[_Decoded]] = [[] for _ in prompts]
        todo = list(range(len(prompts)))
        for temperature in o.temperatures:
            if not todo:
                break
            rows = encoded_rows(encoded, todo)
            found = self._generate(rows, [prompts[i] for i in todo], temperature)
            still = []
            for i, dec in zip(todo, found, strict=True):
                tried[i].append(dec)
                if self._failed(dec):
                    still.append(i)
                else:
                    out[i] = dec
            todo = still
        for i in todo:  # every temperature failed: the surest decode that does not loop, as Whisper does
            ok = [d for d in tried[i] if not self._loops(d)] or tried[i]
            best = max(ok, key=lambda d: d.avg_logprob)
            best.temperature = tried[i][-1].temperature
            out[i] = best
        return [d for d in out if d is not None]

    def _loops(self, d: _Decoded) -> bool:
        limit = self.options.compression_ratio_threshold
        return limit is not None and d.compression_ratio > limit

    def _failed(self, d: _Decoded) -> bool:
        o = self.options
        unsure = o.log_prob_threshold is not None and d.avg_logprob < o.log_prob_threshold
        silent = o.no_speech_threshold is not None and d.no_speech_prob > o.no_speech_threshold
        return self._loops(d) or (unsure and not silent)

    def _generate(self, encoded: Any, prompts: list[list[int]], temperature: float) -> list[_Decoded]:
        o = self.options
        if temperature > 0:
            ctranslate2.set_random_seed(0)  # the same windows sample the same candidates: repeatable transcripts
            search: dict[str, Any] = {
                "beam_size": 1,
                "num_hypotheses": o.best_of,
                "sampling_topk": 0,
                "sampling_temperature": temperature,
            }
        else:
            search = {"beam_size": self.beam_size}
        # CTranslate2 wants <|startoftranscript|> at one position in a batch: prompts of one length go together.
        results: list[Any] = [None] * len(prompts)
        for length in sorted({len(p) for p in prompts}):
            rows = [i for i, p in enumerate(prompts) if len(p) == length]
            found = self.model.generate(
                encoded_rows(encoded, rows),
                [prompts[i] for i in rows],
                max_length=min(TEXT_CONTEXT, length + TEXT_CONTEXT // 2),
                return_scores=True,
                return_no_speech_prob=True,
                max_initial_timestamp_index=round(o.max_initial_timestamp / TIME_PRECISION),
                **search,
            )
            for i, r in zip(rows, found, strict=True):
                results[i] = r
        out = []
        for r in results:
            tokens = list(r.sequences_ids[0])
            # CTranslate2 scores a hypothesis by its summed log-probability over its length (length penalty 1);
            # Whisper averages over the tokens and the end of text.
            avg = float(r.scores[0]) * len(tokens) / (len(tokens) + 1)
            text = self._text(tokens)
            out.append(_Decoded(tokens, text, avg, float(r.no_speech_prob), temperature, compression_ratio(text)))
        return out

    def _text(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode([t for t in tokens if t < self.eot])).strip()

    # ------------------------------------------------------------ segments and the next window
    def _audio_seconds(self, frames: int) -> float:
        """The shortest audio that makes ``frames`` frames: segment times never pass it (the frames reach a
        little past the audio, into the preset's trailing silence and the last frame's overhang)."""
        c = self.config
        if frames <= 0:
            return 0.0
        samples = (frames - 1 + int(c.drop_last_frame)) * c.hop_length + c.frame_length
        return max(0, samples - c.trailing_silence - 2 * c.center_pad) / c.sample_rate

    def _apply(self, d: Decoding, r: _Decoded, encoded: np.ndarray | None) -> None:
        o = self.options
        size = min(WINDOW_FRAMES, d.frames - d.seek)
        offset = d.seek / FRAMES_PER_SECOND
        silent = (
            o.no_speech_threshold is not None
            and r.no_speech_prob > o.no_speech_threshold
            and not (o.log_prob_threshold is not None and r.avg_logprob > o.log_prob_threshold)
        )
        if silent:
            d.advance(d.seek + size, encoded)
            return
        ts = self.timestamp_begin
        tokens = r.tokens
        pairs = [i for i in range(1, len(tokens)) if tokens[i] >= ts and tokens[i - 1] >= ts]
        closed = len(tokens) >= 2 and tokens[-2] < ts <= tokens[-1]  # ends on one timestamp: nothing unfinished
        found: list[tuple[float, float, list[int]]] = []
        if pairs:
            cuts = [*pairs, len(tokens)] if closed else pairs
            last = 0
            for cut in cuts:
                part = tokens[last:cut]
                found.append(((part[0] - ts) * TIME_PRECISION, (part[-1] - ts) * TIME_PRECISION, part))
                last = cut
            tail = tokens[last:]
            if not closed and d.seek + size >= d.frames and o.finish_last_window and self._text(tail):
                found.append(((tail[0] - ts) * TIME_PRECISION, size / FRAMES_PER_SECOND, tail))
                to = d.seek + size
            elif closed or (d.seek + size >= d.frames and not self._text(tail)):
                to = d.seek + size
            else:
                # The last segment is unfinished: the next window starts where the last complete one ended.
                to = d.seek + (tokens[last - 1] - ts) * INPUT_STRIDE
        else:
            stamps = [t for t in tokens if t >= ts]
            end = (stamps[-1] - ts) * TIME_PRECISION if stamps and stamps[-1] != ts else size / FRAMES_PER_SECOND
            found.append((0.0, end, tokens))
            to = d.seek + size
        if found and to == d.seek + size:
            # Whisper may end a window (end-of-text) before the speech in it ends, most often the last window of
            # a recording: a second or more of possible speech after the last segment is decoded again on its own
            # rather than skipped (a silent rest costs nothing: the next window's speech test skips it).
            resume = d.seek + round(max(end for _, end, _ in found) * FRAMES_PER_SECOND)
            rest = d.features[:, resume : d.seek + size]
            # Each window moves on by a second at least: a recording costs at most one decode per second.
            if resume - d.seek >= FRAMES_PER_SECOND <= rest.shape[1] and self._speech(rest):
                to = resume
        duration = self._audio_seconds(d.frames)
        reset = r.temperature > o.prompt_reset_on_temperature
        for start, end, part in found:
            text = self._text(part)
            if not text or end <= start:
                continue
            a, b = min(offset + start, duration), min(offset + end, duration)
            d.segments.append(
                Segment(
                    a, max(a, b), text, tuple(part), r.avg_logprob, r.no_speech_prob, r.temperature, r.compression_ratio
                )
            )
            d.tokens += part
        if reset or not o.condition_on_previous_text:
            d.prompt_from = len(d.tokens)
        d.advance(to, encoded)


def encoded_rows(encoded: Any, rows: Sequence[int]) -> Any:
    """The encoder states of some batch rows (all of them without a copy)."""
    array = np.asarray(encoded)
    if list(rows) == list(range(array.shape[0])):
        return encoded
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[list(rows)]))
