"""FeatureConfig: validation, presets, exact round trips."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given

import amser_dsp
from amser_dsp import PRESETS, ConfigError, FeatureConfig, get_preset
from amser_dsp.config import CONFIG_VERSION

from .strategies import configs


def test_presets_are_registered_and_named() -> None:
    assert set(PRESETS) == {"amser", "whisper", "kaldi"}
    for name, cfg in PRESETS.items():
        assert get_preset(name) is cfg
    assert get_preset(PRESETS["kaldi"]) is PRESETS["kaldi"]
    with pytest.raises(TypeError):
        PRESETS["mine"] = FeatureConfig()  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("amser", dict(n_fft=512, frame_length=400, hop_length=160, window="hamming", preemphasis=0.97, log="ln")),
        (
            "whisper",
            dict(
                n_fft=400,
                window="hann",
                periodic_window=True,
                padding="center",
                pad_mode="reflect",
                drop_last_frame=True,
                mel_scale="slaney",
                mel_norm="slaney",
                log="log10",
                dynamic_range=8.0,
                log_offset=4.0,
                log_scale=0.25,
            ),
        ),
        (
            "kaldi",
            dict(
                n_fft=512,
                window="povey",
                remove_dc=True,
                preemphasis=0.97,
                preemphasis_scope="frame",
                padding="snip",
                f_min=20.0,
                mel_triangles="mel",
                input_scale=32768.0,
            ),
        ),
    ],
)
def test_preset_values(name: str, expected: dict) -> None:
    cfg = get_preset(name)
    assert cfg.sample_rate == 16000 and cfg.n_mels == 80
    for field, value in expected.items():
        assert getattr(cfg, field) == value, field


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'.*amser"):
        get_preset("nope")


def test_config_is_frozen_slotted_keyword_only() -> None:
    cfg = FeatureConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_mels = 40  # type: ignore[misc]
    assert not hasattr(cfg, "__dict__")
    with pytest.raises(TypeError):
        FeatureConfig(16000)  # type: ignore[misc]
    assert hash(cfg) == hash(FeatureConfig())


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        (dict(hop_length=0), "hop_length", r"integer in \[1"),
        (dict(n_fft=256), "n_fft", "at least frame_length=400"),
        (dict(f_max=9000.0), "f_max", r"\(0.0, 8000.0\]"),
        (dict(f_min=5000.0, f_max=4000.0), "f_max", "greater than f_min"),
        (dict(window="blackman"), "window", "one of"),
        (dict(n_mels=200), "n_mels", "bands .* are empty"),
        (dict(preemphasis=1.5), "preemphasis", r"\[0.0, 1.0\]"),
        (dict(power=3.0), "power", "magnitude"),
        (dict(log="log2"), "log", "ln"),
        (dict(log_floor=0.0), "log_floor", "finite number"),
        (dict(sample_rate=16000.0), "sample_rate", "integer"),
        (dict(remove_dc=1), "remove_dc", "True or False"),
        (dict(padding="same"), "padding", "snip"),
        (dict(log_scale=0.0), "log_scale", "non-zero"),
        (dict(dynamic_range=float("nan")), "dynamic_range", "finite"),
    ],
)
def test_invalid_config_names_field_value_and_rule(changes: dict, field: str, allowed: str) -> None:
    with pytest.raises(ConfigError, match=rf"FeatureConfig\.{field}=.*{allowed}"):
        FeatureConfig(**changes)


def test_config_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        FeatureConfig(hop_length=0)
    assert issubclass(ConfigError, amser_dsp.AmserError)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trip_through_json(name: str) -> None:
    cfg = PRESETS[name]
    data = json.loads(cfg.to_json())
    assert data["version"] == CONFIG_VERSION
    assert FeatureConfig.from_dict(data) == cfg
    assert FeatureConfig.from_dict(data).digest() == cfg.digest()


@given(configs())
def test_generated_config_round_trips_exactly(cfg: FeatureConfig) -> None:
    again = FeatureConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert FeatureConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_digests_differ_between_presets() -> None:
    assert len({cfg.digest() for cfg in PRESETS.values()}) == len(PRESETS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"n_mels": 80}, "version None is not supported"),
        ({"version": 99}, "version 99"),
        ({"version": 1, "n_mel": 80}, r"unknown config field\(s\) \['n_mel'\]"),
        ({"version": 1, "n_mels": "80"}, "n_mels='80'"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_from_dict_rejects_bad_data(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FeatureConfig.from_dict(data)  # type: ignore[arg-type]


def test_replace_validates() -> None:
    assert PRESETS["amser"].replace(n_mels=40).n_mels == 40
    with pytest.raises(ConfigError, match="hop_length"):
        PRESETS["amser"].replace(hop_length=-1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_min_samples_is_the_smallest_length_with_a_frame(name: str) -> None:
    cfg = PRESETS[name]
    n = cfg.min_samples
    assert cfg.num_frames(n) >= 1
    if cfg.padding == "snip":
        assert cfg.num_frames(n - 1) == 0
