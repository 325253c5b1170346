"""The live policy as a state machine (Hypothesis stateful testing): random speech, chunks, timings, hypotheses.

A stream is utterances of words (loud frames) between pauses (quiet frames).  A fake recogniser hears
the words that lie wholly inside a request's audio and answers like Whisper at its worst: it stops
early (end-of-text in the middle of speech, none at all included), misrecognises words (a guess over
the same audio), adds a word of its own after the last one, and says "no speech" when it hears nothing.
It never skips speech in the middle of what it says.  Chunks of random sizes arrive between a request
and its answer (a decode under way), decodes come at random moments (a server behind or idle), the
stream ends at a random moment.

Whatever happens: committed text is never dropped, duplicated or reordered; each update's finals are
exactly what was appended; the stream ends; every word spoken lies under a committed word or inside a
reported gap (no speech is lost without a word).
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from amser_dsp.server.recognition.live import (
    TAIL_MARGIN,
    WINDOW_FRAMES,
    DecodeRequest,
    Hypothesis,
    LiveTranscript,
    StreamingSettings,
    Word,
)

SPEECH, QUIET = 1.0, -1.5
#: Shortest word (frames): the policy reads a word's last TAIL_MARGIN as that word's sound, and a stretch
#: of speech needs min_speech_frames loud frames beyond it; a shorter word after a committed one may pass.
MIN_WORD = round(TAIL_MARGIN * 100) + StreamingSettings().min_speech_frames


def frame_index(value: float) -> int:
    return round((-2 - float(value)) * 1e4)


@st.composite
def streams(draw: st.DrawFn) -> tuple[int, list[Word]]:
    """A stream's length in frames and its true words (times in seconds)."""
    words: list[Word] = []
    t = draw(st.integers(0, 150))
    for _ in range(draw(st.integers(1, 5))):  # utterances
        for k in range(draw(st.integers(1, 12))):
            if k:
                t += draw(st.integers(0, 30))  # short breaks between words (a few as long as a pause)
            n = draw(st.integers(MIN_WORD, 70))
            end = "." if draw(st.integers(0, 5)) == 0 else ""
            words.append(Word(f"w{len(words)}{end}", t / 100, (t + n) / 100))
            t += n
        t += draw(st.integers(0, 300))  # a pause
    return t, words


def features_of(n_frames: int, words: list[Word]) -> np.ndarray:
    """Features ``(2, T)``: row 0 codes each frame's index, row 1 its loudness (loud under words)."""
    features = np.full((2, n_frames), QUIET, np.float32)
    features[0] = -2 - np.arange(n_frames) / 1e4
    for w in words:
        features[1, round(w.start * 100) : round(w.end * 100)] = SPEECH
    return features


class FakeWhisper:
    """Hears the true words inside a request's audio; stops early, guesses, adds words, as drawn."""

    def __init__(self, truth: list[Word], live: LiveTranscript, rng: random.Random) -> None:
        self.truth, self.live, self.rng = truth, live, rng

    def answer(self, request: DecodeRequest, stop: int | None, guesses: int, extra: bool) -> Hypothesis:
        assert request.features.shape[1] <= WINDOW_FRAMES
        first = frame_index(request.features[0, 0])
        last = frame_index(request.features[0, -1]) + 1
        heard = [w for w in self.truth if w.start >= first / 100 - 1e-6 and w.end <= last / 100 + 1e-6]
        if request.prefix:  # it goes on after the prefix (the committed words at the end of the transcript)
            prefix_end = self.live.committed[-1].end
            heard = [w for w in heard if w.start >= prefix_end - 1e-6]
        new = [w.shifted(-first / 100) for w in heard]
        if stop is not None:
            new = new[:stop]  # end-of-text in the middle of speech
        for i in range(max(0, len(new) - guesses), len(new)):
            new[i] = Word(f"g{self.rng.randrange(3)}", new[i].start, new[i].end)  # a word misheard
        if extra and new:
            end = (last - first) / 100
            start = min(new[-1].end, end)
            new.append(Word(f"x{self.rng.randrange(3)}", start, min(end, start + 0.3)))  # a word of its own
        return Hypothesis(tuple(new), 0.9 if not heard else 0.0)

    def random_answer(self, request: DecodeRequest) -> Hypothesis:
        roll = self.rng.random()
        stop = None if roll < 0.5 else self.rng.randrange(4)
        return self.answer(request, stop, self.rng.randrange(3), self.rng.random() < 0.2)


class LivePolicy(RuleBasedStateMachine):
    @initialize(stream=streams(), eou=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 2**32 - 1))
    def start(self, stream: tuple[int, list[Word]], eou: float, seed: int) -> None:
        n_frames, self.truth = stream
        self.features = features_of(n_frames, self.truth)
        settings = StreamingSettings(trim_seconds=4, hold_seconds=0.5, utterance_end_seconds=eou, gap_seconds=0.1)
        self.live = LiveTranscript(settings)
        self.whisper = FakeWhisper(self.truth, self.live, random.Random(seed))
        self.sent = 0
        self.pending: DecodeRequest | None = None
        self.finals: list[Word] = []
        self.gaps: list[tuple[float, float]] = []

    # ------------------------------------------------------------ what happens
    @precondition(lambda self: self.sent < self.features.shape[1])
    @rule(frames=st.integers(1, 400))
    def audio_arrives(self, frames: int) -> None:
        self.live.add(self.features[:, self.sent : self.sent + frames])
        self.sent = min(self.sent + frames, self.features.shape[1])

    @precondition(lambda self: self.sent == self.features.shape[1] and not self.live.finished)
    @rule()
    def stream_ends(self) -> None:
        self.live.finish()

    @precondition(lambda self: self.pending is None)
    @rule()
    def decode_starts(self) -> None:
        self.pending = self.live.request()

    @precondition(lambda self: self.pending is not None)
    @rule(stop=st.none() | st.integers(0, 5), guesses=st.integers(0, 2), extra=st.booleans())
    def decode_ends(self, stop: int | None, guesses: int, extra: bool) -> None:
        assert self.pending is not None
        self.apply(self.whisper.answer(self.pending, stop, guesses, extra))

    def apply(self, hypothesis: Hypothesis) -> None:
        before = list(self.live.committed)
        update = self.live.apply(hypothesis)
        self.pending = None
        # Committed words are only ever appended, and the update names exactly those appended.
        assert self.live.committed[: len(before)] == before
        assert self.live.committed[len(before) :] == update.final
        self.finals += update.final
        self.gaps += update.gaps

    # ------------------------------------------------------------ always
    @invariant()
    def committed_in_order(self) -> None:
        if hasattr(self, "live"):
            starts = [w.start for w in self.live.committed]
            assert starts == sorted(starts)
            assert self.live.text == " ".join(w.text for w in self.finals)

    def teardown(self) -> None:
        if not hasattr(self, "live"):
            return
        # The rest of the stream arrives, ends, and is decoded to its end (answers drawn at random).
        if self.sent < self.features.shape[1]:
            self.live.add(self.features[:, self.sent :])
        if not self.live.finished:
            self.live.finish()
        for _ in range(10_000):
            if self.pending is None:
                self.pending = self.live.request()
                if self.pending is None:
                    break
            self.apply(self.whisper.random_answer(self.pending))
        assert self.live.done, "the stream never ended"
        assert self.live.gaps == self.gaps
        for word in self.truth:  # every word spoken is committed (maybe misheard) or reported
            under = any(c.start < word.end and c.end > word.start for c in self.live.committed)
            reported = any(a < word.end and b > word.start for a, b in self.gaps)
            assert under or reported, (word, self.live.text, self.gaps)


LivePolicy.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLivePolicy = LivePolicy.TestCase
