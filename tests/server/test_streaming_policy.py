"""The live transcription policy with a fake recogniser: no model, no network."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from amser_dsp.errors import LimitExceededError
from amser_dsp.server.recognition.live import (
    WINDOW_FRAMES,
    DecodeRequest,
    Hypothesis,
    LiveTranscript,
    StreamingSettings,
    Update,
    Word,
)

SPEECH, SILENCE = 1.0, -1.5


def stream_features(n_frames: int, start: int = 0, level: float = SPEECH) -> np.ndarray:
    """Row 1 is each frame's loudness; row 0 codes its index in the stream, below any speech level."""
    f = np.full((2, n_frames), level, np.float32)
    f[0] = -2 - np.arange(start, start + n_frames) / 1e4
    return f


def frame_index(value: float) -> int:
    return round((-2 - float(value)) * 1e4)


def script(n_words: int, seconds_per_word: float = 0.4, sentence: int = 8) -> list[Word]:
    words = []
    for i in range(n_words):
        text = f"w{i}" + ("." if (i + 1) % sentence == 0 else "")
        words.append(Word(text, i * seconds_per_word, (i + 1) * seconds_per_word - 0.05))
    return words


class FakeRecogniser:
    """Knows the true words; hears those whose audio is complete in the buffer, guesses a wrong last word."""

    def __init__(self, truth: list[Word], *, wobble: bool = True, no_speech: float = 0.0) -> None:
        self.truth, self.wobble, self.no_speech = truth, wobble, no_speech
        self.requests: list[DecodeRequest] = []
        self.calls = 0

    def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        out = []
        for r in requests:
            self.requests.append(r)
            self.calls += 1
            assert r.features.shape[1] <= WINDOW_FRAMES
            first, last = frame_index(r.features[0, 0]) / 100, (frame_index(r.features[0, -1]) + 1) / 100
            heard = [w for w in self.truth if w.start >= first - 1e-6 and w.end <= last + 1e-6]
            prefix = r.prefix.split()
            assert [w.text for w in heard[: len(prefix)]] == prefix, (prefix, heard[: len(prefix)])
            new = [w.shifted(-first) for w in heard[len(prefix) :]]
            if self.wobble and new and not r.final:
                new[-1] = Word(f"guess{self.calls}", new[-1].start, new[-1].end)
            out.append(Hypothesis(tuple(new), self.no_speech))
        return out


def run(live: LiveTranscript, recogniser, features: np.ndarray, chunk: int) -> list[Update]:  # type: ignore[no-untyped-def]
    updates = []
    for start in range(0, features.shape[1], chunk):
        live.add(features[:, start : start + chunk])
        request = live.request()
        if request is not None:
            updates.append(live.apply(recogniser.hypotheses([request])[0]))
    live.finish()
    while (request := live.request()) is not None:
        updates.append(live.apply(recogniser.hypotheses([request])[0]))
    assert live.done
    return updates


@pytest.mark.parametrize("chunk", [16, 50, 100, 200])
def test_finals_are_the_true_words_in_order_with_stream_times(chunk: int) -> None:
    truth = script(40)  # 16 s: trimmed at least once
    live = LiveTranscript(StreamingSettings(trim_seconds=5))
    updates = run(live, FakeRecogniser(truth), stream_features(1600), chunk)
    finals = [w for u in updates for w in u.final]
    assert [w.text for w in finals] == [w.text for w in truth]
    assert live.text == " ".join(w.text for w in truth)
    np.testing.assert_allclose([w.end for w in finals], [w.end for w in truth], atol=1e-4)
    assert not any(w.text.startswith("guess") for w in finals)  # a guess is never confirmed
    assert any(u.partial for u in updates)  # tentative words were shown


def test_a_word_is_committed_once_two_hypotheses_agree() -> None:
    truth = script(3)
    live = LiveTranscript(StreamingSettings(hold_seconds=0))
    recogniser = FakeRecogniser(truth, wobble=False)
    live.add(stream_features(50))  # w0 (ends 0.35 s) heard
    assert live.apply(recogniser.hypotheses([live.request()])[0]).final == []  # seen once: tentative
    live.add(stream_features(30, 50))
    update = live.apply(recogniser.hypotheses([live.request()])[0])
    assert [w.text for w in update.final] == ["w0"] and [w.text for w in update.partial] == ["w1"]


def test_committed_text_is_forced_as_prefix_then_given_as_prompt_after_trimming() -> None:
    truth = script(60, sentence=5)
    recogniser = FakeRecogniser(truth)
    live = LiveTranscript(StreamingSettings(trim_seconds=4))
    run(live, recogniser, stream_features(2400), 50)
    assert any(r.prefix for r in recogniser.requests)
    late = [r for r in recogniser.requests if r.previous]
    assert late, "trimmed words never became the prompt"
    for r in late:  # the prompt is the text just before the buffer (its tail)
        committed_text = " ".join(w.text for w in truth)
        assert r.previous in committed_text and len(r.previous) <= live.settings.prompt_chars
    assert max(r.features.shape[1] for r in recogniser.requests) <= (4 + 8 + 1) * 100


def test_trimming_cuts_after_a_sentence() -> None:
    truth = script(30, sentence=4)
    live = LiveTranscript(StreamingSettings(trim_seconds=3))
    run(live, FakeRecogniser(truth), stream_features(1200), 50)
    assert live.buffer_start > 0
    cut = live.buffer_start / 100
    ends = [w.end for w in truth if w.text.endswith(".")]
    starts = [w.start for w in truth]
    # The last cut lies between a sentence's last word and the next word.
    assert any(e <= cut + 1e-6 and any(abs(s - cut) < 0.06 for s in starts if s >= e) for e in ends)


def test_digital_silence_is_never_decoded_and_gives_no_text() -> None:
    recogniser = FakeRecogniser(script(10))
    live = LiveTranscript()
    updates = run(live, recogniser, stream_features(1000, level=SILENCE), 50)
    assert recogniser.calls == 0 and live.text == "" and not any(u.final or u.partial for u in updates)
    assert live.buffer_frames <= 100  # silence does not pile up in the buffer


def test_no_speech_probability_suppresses_hallucinations() -> None:
    class Hallucinating:
        def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
            return [Hypothesis((Word("Thanks", 0, 0.3), Word("for", 0.3, 0.4), Word("watching!", 0.4, 0.9)), 0.9)]

    live = LiveTranscript()
    updates = run(live, Hallucinating(), stream_features(1000), 50)
    assert live.text == "" and not any(u.final or u.partial for u in updates)


def test_speech_after_long_silence_keeps_its_times() -> None:
    silence = stream_features(1000, level=SILENCE)
    speech = stream_features(400, start=1000)
    truth = [w.shifted(10.0) for w in script(10)]
    live = LiveTranscript()
    updates = run(live, FakeRecogniser(truth), np.concatenate([silence, speech], axis=1), 50)
    finals = [w for u in updates for w in u.final]
    assert [w.text for w in finals] == [w.text for w in truth]
    np.testing.assert_allclose([w.start for w in finals], [w.start for w in truth], atol=1e-4)


def test_a_server_far_behind_decodes_a_window_at_a_time_and_drops_no_speech() -> None:
    truth = script(100, seconds_per_word=0.4)  # 40 s of words
    recogniser = FakeRecogniser(truth)  # its last word is always a new guess: a lone decode commits nothing
    live = LiveTranscript()
    live.add(stream_features(4000))  # 40 s arrive before any decode
    update = live.apply(recogniser.hypotheses([live.request()])[0])
    assert recogniser.requests[0].features.shape[1] == WINDOW_FRAMES
    # The window's words are kept as they stand (but not those in its last second: maybe cut).
    assert [w.text for w in update.final] == [w.text for w in truth if w.end <= 29.0]
    updates = run(live, recogniser, stream_features(1000, 4000), 100)
    assert all(r.features.shape[1] <= WINDOW_FRAMES for r in recogniser.requests)
    finals = [w.text for u in [update, *updates] for w in u.final]
    assert finals == [w.text for w in truth] and live.text == " ".join(finals)


def test_stream_past_its_limit_is_refused() -> None:
    live = LiveTranscript(StreamingSettings(max_stream_seconds=5))
    live.add(stream_features(400))
    with pytest.raises(LimitExceededError, match="limit of 5 s"):
        live.add(stream_features(200, 400))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trim_seconds": 0}, "trim_seconds"),
        ({"trim_seconds": 40}, "trim_seconds"),
        ({"no_speech_threshold": 0}, "no_speech"),
        ({"utterance_end_seconds": -1}, "utterance_end_seconds"),
        ({"gap_seconds": -0.5}, "gap_seconds"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StreamingSettings(**kwargs)


def test_misuse_is_refused() -> None:
    live = LiveTranscript()
    with pytest.raises(ValueError, match="without a pending"):
        live.apply(Hypothesis(()))
    live.add(stream_features(10))
    with pytest.raises(ValueError, match="bands"):
        live.add(np.zeros((3, 10), np.float32))
    live.finish()
    with pytest.raises(ValueError, match="after finish"):
        live.add(stream_features(10))


def test_a_repeated_committed_sentence_is_dropped() -> None:
    class Repeating:
        def __init__(self) -> None:
            self.calls = 0

        def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
            self.calls += 1
            r = requests[0]
            first = frame_index(r.features[0, 0])
            if not r.prefix and first > 0:  # decoded on its own, after the committed words: "so" (1.0 to 1.2 s)
                return [Hypothesis((Word("so", 1.0 - first / 100, 1.2 - first / 100),) if first <= 100 else ())]
            if not r.prefix:
                words = (Word("wait", 0.0, 0.3), Word("no", 0.3, 0.5), Word("longer.", 0.5, 0.9), Word("so", 1.0, 1.2))
                return [Hypothesis(words)]
            # After the prefix, Whisper says the committed sentence again, squeezed or over the old words.
            if self.calls % 2:
                return [Hypothesis((Word("Wait", 1.4, 1.4), Word("no", 1.4, 1.4), Word("longer.", 1.4, 1.4)))]
            return [Hypothesis((Word("Wait", 0.1, 0.3), Word("no", 0.3, 0.5), Word("longer.", 0.5, 0.9)))]

    live = LiveTranscript(StreamingSettings(hold_seconds=0))
    updates = run(live, Repeating(), stream_features(150), 50)
    # The last decode says nothing new after its prefix: "so" is then decoded on its own, not lost.
    assert live.text == "wait no longer. so"
    assert not any(w.text == "Wait" for u in updates for w in u.partial + u.final)


def test_a_spoken_repetition_is_kept() -> None:
    truth = [Word(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate(["wait", "no", "longer.", "wait", "no", "longer."])]
    live = LiveTranscript()
    run(live, FakeRecogniser(truth), stream_features(200), 20)
    assert live.text == "wait no longer. wait no longer."


def test_silence_after_a_word_never_cuts_into_it() -> None:
    class OneWord:
        def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
            r = requests[0]
            first = frame_index(r.features[0, 0]) / 100
            word = Word("hello", 0.0, 0.95)
            if r.prefix or first > word.start + 1e-6:
                assert r.prefix == "hello" or first >= word.end - 1e-6, (r.prefix, first)
                return [Hypothesis(())]
            return [Hypothesis((word.shifted(-first),))]

    speech = stream_features(100)
    silence = stream_features(300, start=100, level=SILENCE)
    live = LiveTranscript()
    run(live, OneWord(), np.concatenate([speech, silence], axis=1), 20)
    assert live.text == "hello"


def test_an_utterance_start_is_held_back_then_words_flow() -> None:
    truth = script(20)
    plain, held = LiveTranscript(StreamingSettings(hold_seconds=0)), LiveTranscript(StreamingSettings(hold_seconds=1.0))
    recogniser = FakeRecogniser(truth, wobble=False)
    first_commit = {}
    for start in range(0, 800, 50):
        for name, live in (("plain", plain), ("held", held)):
            live.add(stream_features(50, start))
            update = live.apply(recogniser.hypotheses([live.request()])[0])
            if update.final and name not in first_commit:
                first_commit[name] = (start + 50) / 100, update.final
    at, words = first_commit["held"]
    assert all(w.end <= at - 1.0 for w in words)  # the first words had a second of audio after them
    assert first_commit["plain"][0] < at
    # Once words are committed the hold is over: the held stream catches up with the plain one.
    assert [w.text for w in held.committed] == [w.text for w in plain.committed]


def test_a_word_with_no_audio_under_it_is_not_heard() -> None:
    class Tail:
        def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
            end = requests[0].features.shape[1] / 100
            # A real word, a word over silence, and one squeezed into nothing at the very end.
            return [Hypothesis((Word("real", 0.0, 0.5), Word("ghost", 1.5, 1.8), Word("you", end, end)))]

    features = np.concatenate([stream_features(100), stream_features(100, 100, level=SILENCE)], axis=1)
    live = LiveTranscript()
    live.add(features)
    update = live.apply(Tail().hypotheses([live.request()])[0])
    assert [w.text for w in update.final + update.partial] == ["real"]


def test_agreement_needs_the_same_punctuation_and_a_word_heard_after() -> None:
    class Scripted:
        def __init__(self, answers: list[tuple[str, ...]]) -> None:
            self.answers = answers

        def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
            texts = self.answers.pop(0)[len(requests[0].prefix.split()) :]
            return [Hypothesis(tuple(Word(t, 0.3 * i, 0.3 * i + 0.25) for i, t in enumerate(texts)))]

    live = LiveTranscript(StreamingSettings(hold_seconds=0))
    recogniser = Scripted(
        [("Who", "went?"), ("Who", "went?"), ("Who", "went,", "however"), ("Who", "went,", "however")]
    )
    finals = []
    for i in range(4):
        live.add(stream_features(50, 50 * i))
        finals.append([w.text for w in live.apply(recogniser.hypotheses([live.request()])[0]).final])
    # "went?" agreed twice but was the last word heard; "went," then differs in punctuation; then agrees.
    assert finals == [[], ["Who"], [], ["went,"]]


class StopsAtPauses(FakeRecogniser):
    """Says nothing past a pause: the words after the prefix up to the first break of 0.3 s (Whisper's end-of-text)."""

    def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        out = []
        for hyp, r in zip(super().hypotheses(requests), requests, strict=True):
            words, before = [], self.heard_before(r)
            for w in hyp.words:
                if before is not None and w.start - before >= 0.3:
                    break
                words.append(w)
                before = w.end
            out.append(Hypothesis(tuple(words)))
        return out

    def heard_before(self, r: DecodeRequest) -> float | None:
        """Where the prefix ends (buffer seconds); ``None`` without a prefix (silence before the first word is fine)."""
        first = frame_index(r.features[0, 0]) / 100
        n = len(r.prefix.split())
        heard = [w for w in self.truth if w.start >= first - 1e-6]
        return heard[n - 1].end - first if n else None


@pytest.mark.parametrize("utterance_end", [0.0, 0.5])
def test_speech_after_a_pause_where_whisper_stops_is_not_lost(utterance_end: float) -> None:
    first = script(8)  # 0 to 3.2 s
    second = [Word(f"v{i}", w.start + 4.5, w.end + 4.5) for i, w in enumerate(script(8))]
    speech = stream_features(320)
    pause = stream_features(130, 320, level=SILENCE)
    more = stream_features(340, 450)
    live = LiveTranscript(StreamingSettings(utterance_end_seconds=utterance_end))
    run(live, StopsAtPauses(first + second, wobble=False), np.concatenate([speech, pause, more], axis=1), 50)
    assert live.text == " ".join(w.text for w in first + second) and not live.gaps
