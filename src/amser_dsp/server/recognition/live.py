"""Live transcription of a feature stream: the policy, apart from any model or network.

A stream's decoded features go into a rolling buffer (at most one 30 s Whisper
window).  Whenever new audio has arrived the buffer is decoded again and the
words two consecutive hypotheses agree on are committed (LocalAgreement-2 of
Whisper-Streaming, Machacek et al. 2023).  Committed words inside the buffer
are forced as the decoder's prefix, so later hypotheses continue them instead
of rewriting them; committed words that have left the buffer are the decoder's
prompt (previous text).  The buffer is cut after a committed sentence once it
is longer than ``trim_seconds`` (or after any committed word near the window's
end), and audio that holds no speech is dropped without being decoded.

Nothing here knows Whisper: :class:`LiveTranscript` asks a
:class:`Recogniser` for :class:`Hypothesis` objects through
:class:`DecodeRequest` objects, so a server can gather the requests of many
streams into one batch, and tests can drive the policy with a fake recogniser.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ...config import get_preset
from ...errors import TooLongError

__all__ = [
    "FRAMES_PER_SECOND",
    "DecodeRequest",
    "Hypothesis",
    "LiveTranscript",
    "Recogniser",
    "StreamingSettings",
    "Update",
    "Word",
    "active_frames",
]

#: Frames per second of the ``whisper`` preset (hop of 160 samples at 16 kHz).
FRAMES_PER_SECOND = int(get_preset("whisper").frame_rate)
#: Frames in one Whisper window (30 s).
WINDOW_FRAMES = 3000

#: Seconds after a committed word's aligned end that may still be that word's sound (not speech left out).
TAIL_MARGIN = 0.2
#: Speech (seconds of loud frames) that a stretch decoded alone with no words must hold to be split and
#: its halves decoded alone (Whisper stops at a pause: it may say nothing of two utterances together).
TAIL_SPLIT_SECONDS = 2.0

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_NORMALISE = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class Word:
    """One word and where it lies in the stream (seconds from the stream's start, or from the buffer's)."""

    text: str
    start: float
    end: float

    def shifted(self, seconds: float) -> Word:
        return Word(self.text, self.start + seconds, self.end + seconds)

    def to_dict(self) -> dict[str, object]:
        return {"word": self.text, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(frozen=True)
class DecodeRequest:
    """What the recogniser is asked: decode ``features`` continuing ``prefix`` after ``previous``.

    Attributes
    ----------
    features : ndarray
        ``(n_mels, T)`` decoded features, ``T <= 3000``.
    previous : str
        Committed text before the buffer (the decoder's prompt).
    prefix : str
        Committed text inside the buffer (forced as the start of the transcript).
    final : bool
        The stream's last decode: nothing after it can confirm a word, and the recogniser decodes
        it as offline does (a full window).
    """

    features: np.ndarray
    previous: str = ""
    prefix: str = ""
    final: bool = False


@dataclass(frozen=True)
class Hypothesis:
    """The recogniser's answer: the words after the prefix, times from the buffer's start.

    ``no_speech_prob`` is Whisper's probability of no speech; ``avg_logprob`` the decoded text's mean
    log-probability per token (``None``: not known).
    """

    words: tuple[Word, ...]
    no_speech_prob: float = 0.0
    avg_logprob: float | None = None


class Recogniser(Protocol):
    """Anything that turns a batch of :class:`DecodeRequest` into one :class:`Hypothesis` each."""

    def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]: ...


@dataclass(frozen=True)
class StreamingSettings:
    """How a live transcript is made (the service's ``--stream-*`` options).

    Attributes
    ----------
    trim_seconds : float
        Past this buffer length, the buffer is cut after the last committed sentence.
    max_stream_seconds : float
        Longest stream; more audio is refused with :class:`~amser_dsp.errors.TooLongError`.
    no_speech_threshold : float
        A hypothesis whose no-speech probability is above this, and whose mean log-probability is
        below ``logprob_threshold``, has no words (Whisper's rule: its no-speech probability alone
        passed 0.6 on 2 of the 87 shared clips decoded from the middle of their speech).
    logprob_threshold : float
        See ``no_speech_threshold``.
    speech_level : float
        Whisper-scaled log-Mel value (``(log10(power) + 4) / 4``) a frame's loudest band
        must exceed to count as possible speech; digital silence is -1.5, white noise
        at -60 dBFS about -0.1.
    min_speech_frames : int
        Frames above ``speech_level`` the undecided audio needs before it is decoded at all.
    prompt_chars : int
        Committed text given to the decoder as previous text (its tail).
    hold_seconds : float
        While the buffer holds no committed word (a stream's or an utterance's start), words
        ending less than this before the end of the decoded audio stay tentative even when two
        hypotheses agree: with no audio before them, Whisper's first words are guesses (on the
        shared clips' hardest starts, 2 s of hold took 31 extra word errors over offline to 9).
    exact_agreement : bool
        Two hypotheses agree on a word only if they spell it the same, case and punctuation
        included (``False``: only the letters count).
    utterance_end_seconds : float
        A pause of this long (no frame above ``speech_level``) ends an utterance: the next decode
        commits every word it hears, without waiting for a second hypothesis (0: never).
    gap_seconds : float
        Possible speech that no decode gives words for is reported as a gap when it holds at least
        this many seconds of frames above ``speech_level`` (less: a breath, a noise, a word's end).
    """

    trim_seconds: float = 12.0
    max_stream_seconds: float = 3600.0
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    speech_level: float = 0.2
    min_speech_frames: int = 10
    prompt_chars: int = 200
    hold_seconds: float = 2.0
    exact_agreement: bool = True
    utterance_end_seconds: float = 0.5
    gap_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.trim_seconds <= 25:
            raise ValueError(f"trim_seconds={self.trim_seconds!r} is invalid: expected 0 < trim_seconds <= 25")
        if not self.max_stream_seconds > 0:
            raise ValueError(f"max_stream_seconds={self.max_stream_seconds!r} is invalid: expected > 0")
        if not 0 <= self.utterance_end_seconds <= 10:
            raise ValueError(
                f"utterance_end_seconds={self.utterance_end_seconds!r} is invalid: expected 0 (never) to 10 s"
            )
        if not 0 <= self.gap_seconds <= 30:
            raise ValueError(f"gap_seconds={self.gap_seconds!r} is invalid: expected 0 to 30 s")
        if not 0 < self.no_speech_threshold <= 1:
            raise ValueError(f"no_speech_threshold={self.no_speech_threshold!r} is invalid: expected 0 < p <= 1")


@dataclass
class Update:
    """What one decode changed: newly committed words, the tentative rest, stretches of speech left without words."""

    final: list[Word] = field(default_factory=list)
    partial: list[Word] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)


def normalised(text: str) -> str:
    """A word as LocalAgreement compares it: case and punctuation do not count."""
    return _NORMALISE.sub("", text.casefold())


def active_frames(features: np.ndarray, level: float) -> np.ndarray:
    """Boolean mask of the frames whose loudest band exceeds ``level`` (possible speech)."""
    if not features.shape[1]:
        return np.zeros(0, bool)
    return features.max(axis=0) > level


class LiveTranscript:
    """The transcript of one stream, built from decodes of a rolling buffer.

    Use: ``add(features)`` as chunks arrive; ``request()`` gives the next
    :class:`DecodeRequest` (or ``None`` when nothing new needs decoding);
    ``apply(hypothesis)`` with the recogniser's answer returns the
    :class:`Update`.  After the last chunk, ``finish()`` marks the stream
    ended: the next request is final and its words are all committed; the
    stream is ``done`` once the audio after the last committed word holds
    no speech, or that speech has been decoded on its own and committed or
    reported as a gap.
    """

    def __init__(self, settings: StreamingSettings | None = None) -> None:
        self.settings = settings or StreamingSettings()
        self.n_mels: int | None = None
        self._buffer = np.empty((0, 0), np.float32)  # (n_mels, frames) since buffer_start
        self.buffer_start = 0  # stream frame of the buffer's first column
        self.total_frames = 0  # frames received
        self.committed: list[Word] = []  # stream times
        self._in_buffer = 0  # committed words that lie inside the buffer (the forced prefix)
        self._previous: list[Word] = []  # last hypothesis's uncommitted words (stream times)
        self._decoded_to = 0  # stream frame the last decode covered
        self._asked: DecodeRequest | None = None
        self._asked_start = 0  # stream frames the pending request covers
        self._asked_end = 0
        self._asked_kind = ""  # "interim", "final" (commit every word), "window" (the buffer's first 30 s), "tail"
        self._asked_prefix = False
        # Stretches of speech left out (stream frames), to decode alone; True for the pieces of a split one.
        self._tails: list[tuple[int, int, bool]] = []
        self._closed = False  # finished, and the audio's end decoded by a decode that commits every word
        self._complete = False  # closed, and every stretch of speech committed or reported
        #: Stretches of speech (stream seconds) the recogniser gave no words for, however decoded.
        self.gaps: list[tuple[float, float]] = []
        self.finished = False
        self.decodes = 0
        self.skipped = 0  # decodes avoided because the new audio held no speech
        self.utterance_ends = 0  # decodes made final by a pause (end of utterance)
        self.tail_decodes = 0  # stretches of left-out speech decoded on their own

    # ------------------------------------------------------------ input
    def add(self, features: np.ndarray) -> None:
        """Append a chunk of decoded features ``(n_mels, frames)``."""
        if self.finished:
            raise ValueError("add() after finish()")
        if self.n_mels is None:
            self.n_mels = features.shape[0]
            self._buffer = np.empty((self.n_mels, 0), np.float32)
        elif features.shape[0] != self.n_mels:
            raise ValueError(f"chunk has {features.shape[0]} bands, the stream has {self.n_mels}")
        limit = round(self.settings.max_stream_seconds * FRAMES_PER_SECOND)
        if self.total_frames + features.shape[1] > limit:
            raise TooLongError(f"the stream is longer than its limit of {self.settings.max_stream_seconds:g} s")
        self._buffer = np.concatenate([self._buffer, np.asarray(features, np.float32)], axis=1)
        self.total_frames += features.shape[1]

    def finish(self) -> None:
        """No more audio: the next request decodes what is left and commits all of it."""
        self.finished = True

    @property
    def buffer_frames(self) -> int:
        return self._buffer.shape[1]

    @property
    def lag_seconds(self) -> float:
        """Audio received but not yet covered by a decode."""
        return (self.total_frames - self._decoded_to) / FRAMES_PER_SECOND

    @property
    def done(self) -> bool:
        """Finished, every frame decoded and every stretch of speech committed or reported."""
        return self._complete and self._asked is None

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.committed)

    # ------------------------------------------------------------ decoding
    def request(self) -> DecodeRequest | None:
        """The next decode to run, or ``None`` if nothing new has arrived (or one is under way)."""
        if self._asked is not None or self._complete:
            return None
        if self._tails:
            return self._ask_tail()
        if self._decoded_to >= self.total_frames and (self._closed or not self.finished):
            self._complete = self._closed
            return None
        self._make_room()
        if not self._speech_ahead():
            # Nothing but silence since the committed words: decide without the recogniser.
            self.skipped += 1
            self._decoded_to = self.total_frames
            self._drop_silence()
            self._complete = self._closed = self.finished
            return None
        end = min(self.total_frames, self.buffer_start + WINDOW_FRAMES)
        if end < self.total_frames:
            kind = "window"  # far behind: the buffer's first window is decoded and all its words kept
        elif self.finished:
            kind = "final"
        elif self._utterance_ended():
            kind, self.utterance_ends = "final", self.utterance_ends + 1
        else:
            kind = "interim"
        return self._ask(self.buffer_start, end, kind, prefix=True)

    def _ask(self, start: int, end: int, kind: str, *, prefix: bool) -> DecodeRequest:
        """A request for stream frames ``[start, end)`` of the buffer (with the committed words in it as prefix)."""
        n_prefix = self._in_buffer if prefix else 0
        inside = self.committed[len(self.committed) - n_prefix :] if n_prefix else []
        previous = " ".join(w.text for w in self.committed[: len(self.committed) - n_prefix])
        self._asked = DecodeRequest(
            features=self._buffer[:, start - self.buffer_start : end - self.buffer_start],
            previous=previous[-self.settings.prompt_chars :].lstrip(),
            prefix=" ".join(w.text for w in inside),
            final=self.finished and kind == "final",
        )
        self._asked_start, self._asked_end, self._asked_kind = start, end, kind
        self._asked_prefix = bool(n_prefix)
        return self._asked

    def _ask_tail(self) -> DecodeRequest:
        """Speech after the last committed word that the last decode left out, decoded on its own."""
        start, end, _ = self._tails[0]
        self.tail_decodes += 1
        self._cut(start, drop_committed=True)  # the committed words become the prompt, not the prefix
        return self._ask(self.buffer_start, end, "tail", prefix=False)

    def _utterance_ended(self) -> bool:
        """A pause ends the buffer: its last ``utterance_end_seconds`` hold no speech."""
        n = round(self.settings.utterance_end_seconds * FRAMES_PER_SECOND)
        if n <= 0 or self.buffer_frames < n:
            return False
        return not active_frames(self._buffer[:, -n:], self.settings.speech_level).any()

    def apply(self, hypothesis: Hypothesis) -> Update:
        """Take the recogniser's answer to the last request; return what was committed and what is tentative."""
        if self._asked is None:
            raise ValueError("apply() without a pending request()")
        kind, audio = self._asked_kind, self._asked.features
        self._asked = None
        self.decodes += 1
        self._decoded_to = max(self._decoded_to, self._asked_end)
        offset = self._asked_start / FRAMES_PER_SECOND
        no_speech = hypothesis.no_speech_prob > self.settings.no_speech_threshold
        unsure = hypothesis.avg_logprob is not None and hypothesis.avg_logprob < self.settings.logprob_threshold
        words = [] if no_speech and (unsure or hypothesis.avg_logprob is None) else list(hypothesis.words)
        if kind == "tail" and unsure:
            # Alone, a few tenths of a second after the last word (a breath, a word's end) make Whisper
            # guess ("and then", mean log-probability -2.9): what it is not sure of is reported, not said.
            words, no_speech = [], False
        words = [w for w in words if w.text.strip() and self._heard(w, audio)]
        words = self._without_repeat([w.shifted(offset) for w in words])
        update = Update()
        if kind == "interim":
            # A word is committed when both hypotheses say it the same way (its punctuation too) and
            # the newer one has heard a word after it: the last word of a decode is where Whisper
            # guesses, and its "." or "?" is often only the end of the buffer.
            n = 0
            # At the start of an utterance (no committed word in the buffer) Whisper has heard
            # nothing before the words it guesses: they wait for hold_seconds of audio after them.
            hold = 0.0 if self._in_buffer else self.settings.hold_seconds
            horizon = self._asked_end / FRAMES_PER_SECOND - hold
            while (
                n < min(len(words) - 1, len(self._previous))
                and self._same(words[n].text, self._previous[n].text)
                and words[n].end <= horizon
            ):
                n += 1
            commit, self._previous = words[:n], words[n:]
        else:
            if kind == "window":
                # The window's last second may end inside a word: those words wait for the next decode.
                edge = self._asked_end / FRAMES_PER_SECOND - 1.0
                kept = [w for w in words if w.end <= edge]
                words = kept or words
            commit, self._previous = words, []
        self.committed += commit
        self._in_buffer += len(commit)
        update.final = commit
        if kind != "interim":
            self._cover(kind, no_speech, update)
        self._trim()
        update.partial = list(self._previous)
        return update

    def _cover(self, kind: str, no_speech: bool, update: Update) -> None:
        """After a decode whose words are all committed: is there speech after them it left out?

        Whisper may stop (end-of-text) in the middle of speech, say after a forced prefix that ends
        a sentence, or at a pause; such a decode is not the end of the speech.  The audio after the last
        committed word is decoded again on its own (the committed words as prompt, not prefix), until its
        speech is committed.  A stretch decoded alone that gives no words is split at its quietest point
        and each half decoded alone, down to pieces of ``TAIL_SPLIT_SECONDS`` of speech; a piece that still
        gives none is a gap, reported (unless Whisper judged it no speech at all).
        """
        start, end, margin = self._asked_start, self._asked_end, 0
        if self._in_buffer:
            start = max(start, math.ceil(self.committed[-1].end * FRAMES_PER_SECOND - 1e-6))
            margin = round(TAIL_MARGIN * FRAMES_PER_SECOND)
        if kind == "window":
            if start == self._asked_start:  # no word in a whole window: it leaves, reported if Whisper heard speech
                self._report_gap(start, end, no_speech, update)
            return  # otherwise the next request cuts after the committed words and decodes on from there
        piece = self._tails.pop(0)[2] if kind == "tail" else False
        if self._speech_frames(start + margin, end) >= self.settings.min_speech_frames:
            if start > self._asked_start or self._asked_prefix:
                self._tails.insert(0, (start, end, piece))  # words came, or a prefix: what follows is decoded alone
            elif not no_speech and self._speech_frames(start, end) >= TAIL_SPLIT_SECONDS * FRAMES_PER_SECOND:
                middle = self._quietest(start, end)
                self._tails[:0] = [(start, middle, True), (middle, end, True)]
            else:  # a piece of a longer stretch is reported however short
                self._report_gap(start, end, no_speech, update, always=piece)
        if not self._tails and self.finished and end >= self.total_frames:
            self._closed = True

    def _quietest(self, start: int, end: int) -> int:
        """The stream frame of least energy in the middle half of ``[start, end)`` (a pause, if there is one)."""
        a, b = start + (end - start) // 4, end - (end - start) // 4
        loudness = self._buffer[:, a - self.buffer_start : b - self.buffer_start].max(axis=0)
        smooth = np.convolve(loudness, np.ones(9) / 9, mode="same")
        return a + int(np.argmin(smooth))

    def _report_gap(self, start: int, end: int, no_speech: bool, update: Update, *, always: bool = False) -> None:
        """Speech in stream frames ``[start, end)`` got no words: report it (unless Whisper heard none) and drop it."""
        long = self._speech_frames(start, end) >= self.settings.gap_seconds * FRAMES_PER_SECOND
        if not no_speech and (long or always):
            gap = (start / FRAMES_PER_SECOND, end / FRAMES_PER_SECOND)
            self.gaps.append(gap)
            update.gaps.append(gap)
        self._cut(end, drop_committed=True)

    def _speech_frames(self, start: int, end: int) -> int:
        """Frames of possible speech among stream frames ``[start, end)`` of the buffer."""
        a, b = max(0, start - self.buffer_start), max(0, end - self.buffer_start)
        return int(active_frames(self._buffer[:, a:b], self.settings.speech_level).sum()) if b > a else 0

    def _same(self, a: str, b: str) -> bool:
        return a.strip() == b.strip() if self.settings.exact_agreement else normalised(a) == normalised(b)

    def _heard(self, word: Word, audio: np.ndarray) -> bool:
        """Is there any possible speech where the aligner put ``word`` (buffer times, 0.1 s either side)?

        Whisper ends a transcript with a word of nothing ("you") on a quiet tail; such a word
        lies over frames with no speech energy at all, or the aligner squeezes it into no time
        at the very end of the audio.
        """
        end_of_audio = audio.shape[1] / FRAMES_PER_SECOND
        if word.end - word.start < 0.02 and word.start >= end_of_audio - 0.06:
            return False
        a = max(0, round((word.start - 0.1) * FRAMES_PER_SECOND))
        b = round((word.end + 0.1) * FRAMES_PER_SECOND)
        return int(active_frames(audio[:, a:b], self.settings.speech_level).sum()) >= 3

    def _without_repeat(self, words: list[Word]) -> list[Word]:
        """Drop a run of two or more words that repeats the committed words before it and has no audio of its own.

        Decoding on after a prefix that already covers the audio, Whisper tends to say the last
        sentence again; the aligner then puts those words over the committed ones or squeezes them
        into nothing at the end of the buffer.  A real repetition is spoken after the committed words.
        """
        new = [normalised(w.text) for w in words]
        old = [normalised(w.text) for w in self.committed[-len(words) :]] if words else []
        for k in range(min(len(new), len(old)), 1, -1):
            if new[:k] == old[-k:]:
                run = words[:k]
                overlaps = run[0].start < self.committed[-1].end - 0.1
                squeezed = float(np.median([w.end - w.start for w in run])) < 0.05
                return words[k:] if overlaps or squeezed else words
        return words

    # ------------------------------------------------------------ buffer upkeep
    def _speech_ahead(self) -> bool:
        """Does the audio after the last committed word hold enough loud frames to be worth decoding?"""
        start = self.buffer_start
        if self._in_buffer:
            start = max(start, round(self.committed[-1].end * FRAMES_PER_SECOND))
        return self._speech_frames(start, self.total_frames) >= self.settings.min_speech_frames or bool(self._previous)

    def _drop_silence(self) -> None:
        """Silence after the committed words leaves the buffer (keeping the last half second for context).

        The cut never falls inside a committed word: words whose audio stays in the buffer
        must stay the decoder's prefix.
        """
        keep_from = max(self.buffer_start, self.total_frames - FRAMES_PER_SECOND // 2)
        if self._in_buffer:
            keep_from = max(keep_from, math.ceil(self.committed[-1].end * FRAMES_PER_SECOND - 1e-6))
            if keep_from >= self.total_frames:
                return  # the committed words reach the end of the audio: nothing to drop
        self._cut(keep_from, drop_committed=True)

    def _trim(self) -> None:
        """Cut the buffer after a committed sentence once it is longer than ``trim_seconds``."""
        if self.buffer_frames <= self.settings.trim_seconds * FRAMES_PER_SECOND or not self._in_buffer:
            return
        inside = self.committed[len(self.committed) - self._in_buffer :]
        ends = [i for i, w in enumerate(inside) if _SENTENCE_END.search(w.text)]
        if not ends and self.buffer_frames > (self.settings.trim_seconds + 8) * FRAMES_PER_SECOND:
            ends = [len(inside) - 1]  # no sentence in sight: any committed word will do
        if ends:
            self._cut_after(inside, ends[-1])

    def _cut_after(self, inside: list[Word], i: int) -> None:
        nxt = inside[i + 1].start if i + 1 < len(inside) else (self._previous[0].start if self._previous else None)
        cut_time = inside[i].end if nxt is None else (inside[i].end + max(inside[i].end, nxt)) / 2
        self._cut(round(cut_time * FRAMES_PER_SECOND), drop_committed=True, n_words=i + 1)

    def _cut(self, frame: int, *, drop_committed: bool, n_words: int | None = None) -> None:
        frame = min(max(frame, self.buffer_start), self.total_frames)
        self._buffer = self._buffer[:, frame - self.buffer_start :]
        self.buffer_start = frame
        if drop_committed:
            self._in_buffer = 0 if n_words is None else self._in_buffer - n_words

    def _make_room(self) -> None:
        """Keep decodes within one window: cut after the committed words when the buffer is longer.

        Audio is never dropped here: what is still longer than a window is decoded a window at a
        time (a ``window`` request), its words committed as they stand.
        """
        if self.buffer_frames > WINDOW_FRAMES and self._in_buffer:
            inside = self.committed[len(self.committed) - self._in_buffer :]
            self._cut_after(inside, len(inside) - 1)
