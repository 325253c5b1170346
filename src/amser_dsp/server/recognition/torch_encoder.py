"""Whisper's audio encoder in torch, built from a CTranslate2 model's own weights.

CTranslate2 returns only the encoder's last layer, without gradients.  The emotion model reads a learned weighted
sum of every layer, and a decoder trained through the frozen encoder needs its gradients: both run this module.
It reads the ``encoder/...`` variables of the same ``model.bin`` the recogniser serves (no second copy of the
model), and computes what CTranslate2's encoder computes: two GELU convolutions (the second halves the frame
rate), sinusoidal positions, pre-norm self-attention blocks, a final layer norm.  Tested against CTranslate2's
own encoder output and against openai-whisper's ``AudioEncoder``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelError
from .models import Variable, model_variables, resolve_model

__all__ = ["WhisperEncoder", "load_encoder"]

# CTranslate2's data type codes and the NumPy types whose bytes they store.
_DTYPES = {0: np.float32, 2: np.int16, 3: np.int32, 4: np.float16}
LAYER_NORM_EPS = 1e-5


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp_in = nn.Linear(width, 4 * width)
        self.mlp_out = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self.out(attended)
        return x + self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder; :meth:`layers` returns every block's output, :meth:`forward` the last, normed.

    Parameters
    ----------
    mels, width, heads, layers, positions
        The model's dimensions: Mel bands in, state width, attention heads, blocks, encoder positions (1500).
    """

    def __init__(self, mels: int, width: int, heads: int, layers: int, positions: int = 1500) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(mels, width, 3, padding=1)
        self.conv2 = nn.Conv1d(width, width, 3, stride=2, padding=1)
        self.positions: torch.Tensor
        self.register_buffer("positions", torch.zeros(positions, width))
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def layers(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """States after the convolutions and after each block (``len(blocks) + 1`` tensors ``(batch, T/2, width)``).

        The last one is normed as the recogniser's decoder sees it; the others are the blocks' raw residual streams.
        ``mel`` is ``(batch, mels, frames)`` with at most ``2 * positions`` frames (Whisper's windows are 3000).
        """
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        if x.shape[1] > self.positions.shape[0]:
            raise ModelError(f"the encoder takes at most {2 * self.positions.shape[0]} frames, got {mel.shape[-1]}")
        x = x + self.positions[: x.shape[1]]
        out = [x]
        for block in self.blocks:
            x = block(x)
            out.append(x)
        out[-1] = self.norm(x)
        return out

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """The encoder's output ``(batch, T/2, width)``: what CTranslate2's ``Whisper.encode`` returns."""
        return self.layers(mel)[-1]


def _array(file: Path, v: Variable) -> np.ndarray:
    if v.dtype not in _DTYPES:
        raise ModelError(f"{file}: variable {v.name} has CTranslate2 type {v.dtype}; this reader takes float16/32")
    with open(file, "rb") as f:
        f.seek(v.offset)
        data = f.read(v.nbytes)
    return np.frombuffer(data, _DTYPES[v.dtype]).reshape(v.shape).astype(np.float32)


def load_encoder(model: str | os.PathLike[str] | None = None) -> WhisperEncoder:
    """The encoder of a Whisper model (a name such as ``"tiny.en"`` or ``"base"``, or a directory), frozen, in eval mode.

    Raises
    ------
    ModelError
        If the model's ``model.bin`` lacks an encoder variable or stores one quantised (int8 models: convert with
        ``--quantization float16``).
    """
    file = resolve_model(model).path / "model.bin"
    found = {v.name: v for v in model_variables(file) if v.name.startswith("encoder/")}

    def get(name: str) -> np.ndarray:
        if f"encoder/{name}" not in found:
            raise ModelError(f"{file} has no variable encoder/{name}: not a Whisper encoder this reader knows")
        return _array(file, found[f"encoder/{name}"])

    conv1 = get("conv1/weight")
    width, mels = conv1.shape[:2]
    layers = 1 + max((int(m[1]) for n in found if (m := re.match(r"encoder/layer_(\d+)/", n))), default=-1)
    heads = int(get("num_heads"))
    positions = get("position_encodings/encodings")
    encoder = WhisperEncoder(mels, width, heads, layers, positions.shape[0])
    state = {
        "conv1.weight": conv1,
        "conv1.bias": get("conv1/bias"),
        "conv2.weight": get("conv2/weight"),
        "conv2.bias": get("conv2/bias"),
        "positions": positions,
        "norm.weight": get("layer_norm/gamma"),
        "norm.bias": get("layer_norm/beta"),
    }
    names = {
        "attn_norm": "self_attention/layer_norm",
        "qkv": "self_attention/linear_0",
        "out": "self_attention/linear_1",
        "mlp_norm": "ffn/layer_norm",
        "mlp_in": "ffn/linear_0",
        "mlp_out": "ffn/linear_1",
    }
    for i in range(layers):
        for ours, theirs in names.items():
            norm = ours.endswith("norm")
            state[f"blocks.{i}.{ours}.weight"] = get(f"layer_{i}/{theirs}/{'gamma' if norm else 'weight'}")
            state[f"blocks.{i}.{ours}.bias"] = get(f"layer_{i}/{theirs}/{'beta' if norm else 'bias'}")
    encoder.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    encoder.eval()
    encoder.requires_grad_(False)
    return encoder
