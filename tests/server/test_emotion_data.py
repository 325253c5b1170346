"""Emotion data: augmentation against known signals, speaker splits, codec settings, encoder states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import amser_dsp
from amser_dsp import AmserError, AudioError, ConfigError
from amser_dsp.server.emotion.augment import Augmenter, add_noise, babble, pitch_shift, time_stretch
from amser_dsp.server.emotion.data import (
    LABELS,
    SETTINGS,
    EmotionClip,
    codec_features,
    make_split,
    read_emotion_manifest,
    read_split,
    speaker_folds,
    training_versions,
    write_split,
)

from ..conftest import SHARED_DATA

SR = 16_000


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * SR / x.size)


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_time_stretch_keeps_pitch_and_changes_length(rate: float) -> None:
    y = time_stretch(tone(440), rate)
    assert y.size == round(SR / rate)
    assert peak_hz(y) == pytest.approx(440, abs=3)
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.15)


@pytest.mark.parametrize("semitones", [-3.0, 2.0, 12.0])
def test_pitch_shift_moves_the_frequency_by_the_interval(semitones: float) -> None:
    y = pitch_shift(tone(440), semitones)
    assert y.size == SR
    assert peak_hz(y) == pytest.approx(440 * 2 ** (semitones / 12), rel=0.01)


def test_noise_is_added_at_the_requested_snr(rng: np.random.Generator) -> None:
    x = tone(300)
    noise = rng.standard_normal(5000).astype(np.float32)
    y = add_noise(x, noise, 10.0)
    snr = 10 * np.log10(np.mean(x.astype(float) ** 2) / np.mean((y - x).astype(float) ** 2))
    assert snr == pytest.approx(10.0, abs=1e-3)
    b = babble([tone(200), tone(500), tone(700)], 8000, rng, talkers=2)
    assert b.shape == (8000,) and np.all(np.isfinite(b))


def test_augmenter_is_seeded(sample_audio: np.ndarray) -> None:
    aug = Augmenter()
    pool = [sample_audio[:20000], sample_audio[20000:40000]]
    a = aug(sample_audio, np.random.default_rng(3), pool)
    b = aug(sample_audio, np.random.default_rng(3), pool)
    c = aug(sample_audio, np.random.default_rng(4), pool)
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert np.max(np.abs(a)) <= 1.0


def test_bad_augmentation_arguments_are_refused() -> None:
    with pytest.raises(AudioError, match=r"rate=0\.1"):
        time_stretch(tone(440), 0.1)
    with pytest.raises(AudioError, match="semitones=24"):
        pitch_shift(tone(440), 24)
    with pytest.raises(AudioError, match="silent"):
        add_noise(tone(440), np.zeros(10, np.float32), 10)
    with pytest.raises(AudioError, match="1-D"):
        time_stretch(np.full((2, 100), np.nan, np.float32), 1.1)


def clips_of(speakers: dict[str, tuple[str, str]], per: int = 4) -> list[EmotionClip]:
    return [
        EmotionClip(f"{s}-{i}", Path(f"{s}-{i}.flac"), corpus, s, gender, LABELS[i % 4], "")
        for s, (corpus, gender) in speakers.items()
        for i in range(per)
    ]


def test_split_is_by_speaker_seeded_and_round_trips(tmp_path: Path) -> None:
    speakers = {f"a{i:02d}": ("a", "male" if i % 2 else "female") for i in range(12)}
    speakers |= {f"b{i}": ("b", "male" if i % 2 else "female") for i in range(6)}
    clips = clips_of(speakers)
    split = make_split(clips, seed=1)
    assert split == make_split(clips, seed=1) and split != make_split(clips, seed=2)
    assert set(split) == set(speakers) and set(split.values()) == {"train", "val", "test"}
    for corpus in ("a", "b"):  # every corpus and gender has test speakers
        for gender in ("male", "female"):
            assert any(split[s] == "test" for s, (c, g) in speakers.items() if (c, g) == (corpus, gender))
    write_split(split, tmp_path / "split.tsv", clips)
    assert read_split(tmp_path / "split.tsv") == split
    (tmp_path / "bad.tsv").write_text("speaker\tcorpus\tpart\nx\ta\tholdout\n")
    with pytest.raises(AmserError, match="not a split file"):
        read_split(tmp_path / "bad.tsv")


def test_split_without_validation_speakers() -> None:
    speakers = {f"a{i:02d}": ("a", "male" if i % 2 else "female") for i in range(12)}
    clips = clips_of(speakers)
    with_val, without = make_split(clips, seed=1), make_split(clips, seed=1, val_fraction=0)
    assert "val" not in without.values()
    # The test speakers do not move; the validation speakers join training.
    assert {s for s, p in without.items() if p == "test"} == {s for s, p in with_val.items() if p == "test"}


def test_speaker_folds_are_seeded_even_and_by_speaker() -> None:
    speakers = {f"a{i:02d}": ("a", "male" if i % 2 else "female") for i in range(11)}
    speakers |= {f"b{i}": ("b", "male" if i % 2 else "female") for i in range(7)}
    clips = clips_of(speakers)
    folds = speaker_folds(clips, 4, seed=0)
    assert folds == speaker_folds(clips, 4, seed=0) and folds != speaker_folds(clips, 4, seed=1)
    assert set(folds) == set(speakers) and set(folds.values()) == {0, 1, 2, 3}
    sizes = np.bincount(list(folds.values()))
    assert sizes.max() - sizes.min() <= 1  # 18 speakers: 5, 5, 4, 4
    for corpus, gender in {v for v in speakers.values()}:  # each group is spread over the folds
        group = [folds[s] for s, cg in speakers.items() if cg == (corpus, gender)]
        assert len(set(group)) == min(len(group), 4)
    for k in (1, 19):
        with pytest.raises(ConfigError, match="folds"):
            speaker_folds(clips, k)


def test_training_versions_are_seeded_per_clip() -> None:
    clips = clips_of({"a1": ("a", "male"), "a2": ("a", "female")})
    v = training_versions(clips, seed=0, augmented=3)
    assert len(v) == len(clips) * 5
    assert [x.setting for x in v] == [x.setting for x in training_versions(clips, seed=0, augmented=3)]
    assert [x.setting for x in v[:2]] == ["kltdct default", "uncompressed"] and not v[0].augmented
    assert all(x.setting in SETTINGS for x in v) and all(x.augmented for x in v[2:5])
    # A clip's versions do not depend on which other clips are in the list.
    assert [x.setting for x in training_versions(clips[1:2], seed=0, augmented=3)] == [x.setting for x in v[5:10]]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_setting_goes_through_a_container(setting: str, sample_audio: np.ndarray) -> None:
    feats = amser_dsp.features(sample_audio, SR, "whisper")
    out = codec_features(sample_audio, setting)
    assert out.shape == feats.shape
    error = float(np.sqrt(np.mean((out - feats) ** 2)))
    assert error < (1e-6 if setting == "uncompressed" else 0.25)


def test_unknown_setting_and_manifest_are_refused(tmp_path: Path, sample_audio: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="unknown codec setting"):
        codec_features(sample_audio, "opus 6 kbps")
    (tmp_path / "m.tsv").write_text("id\tpath\n1\ta.flac\n")
    with pytest.raises(AmserError, match="not an emotion manifest"):
        read_emotion_manifest(tmp_path / "m.tsv")


def test_real_manifest_has_four_classes_and_speaker_prefixes() -> None:
    manifest = SHARED_DATA / "emotion" / "manifest.tsv"
    if not manifest.exists():
        pytest.skip("../shared/data/emotion is absent")
    clips = read_emotion_manifest(manifest)
    assert {c.label for c in clips} == set(LABELS) and {c.corpus for c in clips} == {"ravdess", "emodb"}
    split = make_split(clips, seed=0)
    test_speakers = {s for s, p in split.items() if p == "test"}
    assert not test_speakers & {c.speaker for c in clips if split[c.speaker] != "test"}
    assert 180 <= sum(split[c.speaker] == "test" for c in clips) <= 300
