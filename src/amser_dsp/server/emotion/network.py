"""The emotion fusion network (the "ER" of AMSER), its checkpoint, and inference.

Architecture (the paper's, section IV-B):

- audio branch: Conv1d-BatchNorm-ReLU blocks over time (the kernel spans every
  feature channel), then a bidirectional LSTM; its input is Whisper's encoder
  states (the server computes them for the transcript anyway), a learned
  weighted sum of every encoder layer's states (SUPERB's protocol: computed
  by Whisper's encoder in torch on the clip's own frames, see
  :func:`encoder_layer_states`) or the decoded log-Mel (the paper's variant);
- text branch: a linear layer on the sentence encoder's output (its token
  states, or the pooled sentence embedding);
- fusion: MCAN-style co-attention (Yu et al. 2019): a stack of self-attention
  layers on the guiding modality, then self-attention plus guided attention on
  the other, every guided layer attending to the first stack's *final* output;
  each side is pooled by attention and the two are concatenated for the
  classifier.

The ablations are configurations of the same class (``fusion``): ``audio``
(audio branch only), ``text`` (text branch only), ``concat`` (both branches
pooled and concatenated, no attention), ``coattention``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from ...errors import CheckpointError, ConfigError
from .. import require_extra

require_extra("torch", extra="emotion")

import torch  # noqa: E402
from torch import nn  # noqa: E402

__all__ = [
    "CHECKPOINT_FORMAT",
    "LICENSE_CAUTION",
    "EmotionEnsemble",
    "EmotionNet",
    "EmotionRecogniser",
    "ModelConfig",
    "build_network",
    "default_checkpoint",
    "encoder_layer_states",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "amser-emotion"
CHECKPOINT_VERSION = 1
LICENSE_CAUTION = (
    "Trained on RAVDESS (CC BY-NC-SA 4.0: non-commercial, share-alike) and EmoDB (CC0, Burkhardt et al. 2005): "
    "these weights inherit RAVDESS's non-commercial, share-alike terms; do not use them commercially."
)
FUSIONS = ("audio", "text", "concat", "coattention")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the network's shape; stored in the checkpoint.

    ``audio_input`` is ``encoder`` (Whisper encoder states, ``audio_dim`` 384
    for tiny.en), ``layers`` (the states after the encoder's convolutions and
    after each of its first ``audio_layers - 1`` blocks, stacked per frame
    as ``audio_layers * audio_dim`` channels, mixed by learned softmax weights)
    or ``mel`` (decoded log-Mel, 80); ``text_input`` is
    ``tokens`` (the text encoder's token states) or ``sentence`` (their mean);
    ``guide`` names the modality whose self-attention stack guides the other.
    ``pooled_stats`` adds a path beside the audio branch: the mean and standard
    deviation of the audio input over the clip, through a linear layer, into the
    classifier.  ``input_dropout`` drops audio input channels; ``path_dropout``
    drops, per training item, the whole pooled output of the audio branch (so
    the classifier learns to use the statistics and the text alone as well).
    ``time_mask`` is SpecAugment's time masking on the (mixed, standardised)
    audio input in training: two spans per item, each up to that fraction of
    its frames, set to the training mean.
    ``members`` > 1 is a seed ensemble: that many networks of this shape
    (trained with consecutive seeds) whose log-probabilities are averaged.
    """

    fusion: str = "coattention"
    audio_input: str = "encoder"
    audio_dim: int = 384
    audio_layers: int = 1
    text_input: str = "tokens"
    text_dim: int = 384
    n_classes: int = 4
    d_model: int = 128
    conv_blocks: int = 2
    conv_kernel: int = 5
    conv_stride: int = 2
    lstm_hidden: int = 64
    heads: int = 4
    layers: int = 2
    ffn: int = 256
    guide: str = "text"
    dropout: float = 0.3
    pooled_stats: bool = False
    input_dropout: float = 0.0
    time_mask: float = 0.0
    path_dropout: float = 0.0
    members: int = 1

    def __post_init__(self) -> None:
        choices = {
            "fusion": FUSIONS,
            "audio_input": ("encoder", "layers", "mel"),
            "text_input": ("tokens", "sentence"),
            "guide": ("text", "audio"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: expected one of {allowed}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{f.name}={value!r} is invalid: expected a positive integer")
        for name in ("dropout", "input_dropout", "path_dropout", "time_mask"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: expected 0 <= {name} < 1")
        if not isinstance(self.pooled_stats, bool):
            raise ConfigError(f"pooled_stats={self.pooled_stats!r} is invalid: expected true or false")
        if self.audio_layers != 1 and self.audio_input != "layers":
            raise ConfigError(f"audio_layers={self.audio_layers} goes with audio_input 'layers' only")
        if self.d_model % self.heads or self.lstm_hidden * 2 != self.d_model:
            raise ConfigError(
                f"d_model={self.d_model} must be divisible by heads={self.heads} and equal 2 x lstm_hidden={self.lstm_hidden}"
            )

    @property
    def uses_audio(self) -> bool:
        return self.fusion != "text"

    @property
    def uses_text(self) -> bool:
        return self.fusion != "audio"

    @property
    def reads_encoder(self) -> bool:
        """Whether the audio branch reads a Whisper encoder's states (so the checkpoint names that recogniser)."""
        return self.uses_audio and self.audio_input != "mel"

    @property
    def input_width(self) -> int:
        """Channels per frame of the audio input (every mixed layer's states side by side)."""
        return self.audio_layers * self.audio_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model settings {unknown}; known: {sorted(known)}")
        return cls(**data)


# ------------------------------------------------------------------ network
def _key_padding(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """True where a position is padding (``nn.MultiheadAttention``'s convention)."""
    return torch.arange(width)[None, :] >= lengths[:, None]


class _FeedForward(nn.Module):
    def __init__(self, d: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """MCAN's SA unit: multi-head self-attention and a feed-forward layer, each residual + LayerNorm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(cfg.d_model, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.ffn = _FeedForward(cfg.d_model, cfg.ffn, cfg.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.att(x, x, x, key_padding_mask=pad, need_weights=False)[0]))
        return self.norm2(x + self.drop(self.ffn(x)))


class GuidedAttention(nn.Module):
    """MCAN's SGA unit: self-attention, then attention from ``x`` to the guide ``y``, then feed-forward."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_att = nn.MultiheadAttention(cfg.d_model, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.guided = nn.MultiheadAttention(cfg.d_model, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.ffn = _FeedForward(cfg.d_model, cfg.ffn, cfg.dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, x_pad: torch.Tensor, y: torch.Tensor, y_pad: torch.Tensor) -> torch.Tensor:
        x = self.norms[0](x + self.drop(self.self_att(x, x, x, key_padding_mask=x_pad, need_weights=False)[0]))
        x = self.norms[1](x + self.drop(self.guided(x, y, y, key_padding_mask=y_pad, need_weights=False)[0]))
        return self.norms[2](x + self.drop(self.ffn(x)))


class AttentionPool(nn.Module):
    """MCAN's attentional reduction: a learned weight per position, masked softmax, weighted sum."""

    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d // 2, 1))

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        weights = self.score(x).squeeze(-1).masked_fill(pad, float("-inf")).softmax(-1)
        return torch.einsum("bt,btd->bd", weights, x)


def masked_stats(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation over the valid frames of ``x`` (batch, frames, dim) -> (batch, 2 dim)."""
    valid = (~_key_padding(lengths, x.shape[1]))[:, :, None].to(x.dtype)
    n = valid.sum(1).clamp(min=1)
    mean = (x * valid).sum(1) / n
    var = (((x - mean[:, None]) * valid) ** 2).sum(1) / n
    return torch.cat([mean, torch.sqrt(var + 1e-5)], -1)


def _mask_time(x: torch.Tensor, lengths: torch.Tensor, fraction: float, training: bool) -> torch.Tensor:
    """SpecAugment's time masking: per item two spans of up to ``fraction`` of its frames set to 0 (training only)."""
    if not training or fraction == 0:
        return x
    n = lengths.to(torch.float32)[:, None]
    width = (torch.rand(x.shape[0], 2) * fraction * n).long()
    start = (torch.rand(x.shape[0], 2) * (n - width + 1)).long()
    t = torch.arange(x.shape[1])[None, None, :]
    masked = ((t >= start[:, :, None]) & (t < (start + width)[:, :, None])).any(1)
    return x.masked_fill(masked[:, :, None], 0.0)


def _drop_items(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero whole rows of ``x`` with probability ``p`` in training (survivors scaled by 1 / (1 - p))."""
    if not training or p == 0:
        return x
    keep = (torch.rand(x.shape[0], 1) >= p).to(x.dtype)
    return x * keep / (1 - p)


class AudioBranch(nn.Module):
    """Conv1d-BatchNorm-ReLU blocks over time (the first with ``conv_stride``), then a bidirectional LSTM.

    Padding frames are zeroed before every block, so a clip gives the same
    output alone or in a padded batch.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.convs: list[tuple[int, int, int]] = []  # each block's convolution: kernel, stride, padding
        channels = cfg.audio_dim
        for i in range(cfg.conv_blocks):
            stride, padding = (cfg.conv_stride if i == 0 else 1), cfg.conv_kernel // 2
            self.convs.append((cfg.conv_kernel, stride, padding))
            self.blocks.append(
                nn.Sequential(
                    nn.Conv1d(channels, cfg.d_model, cfg.conv_kernel, stride=stride, padding=padding),
                    nn.BatchNorm1d(cfg.d_model),
                    nn.ReLU(),
                    nn.Dropout(cfg.dropout),
                )
            )
            channels = cfg.d_model
        self.lstm = nn.LSTM(cfg.d_model, cfg.lstm_hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.transpose(1, 2)  # (batch, channels, frames)
        for block, (kernel, stride, padding) in zip(self.blocks, self.convs, strict=True):
            h = h.masked_fill(_key_padding(lengths, h.shape[2])[:, None, :], 0.0)
            lengths = (lengths + 2 * padding - kernel) // stride + 1
            h = block(h)
        lengths = lengths.clamp(1, h.shape[2])
        packed = nn.utils.rnn.pack_padded_sequence(h.transpose(1, 2), lengths, batch_first=True, enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=h.shape[2])
        return y, lengths


class EmotionNet(nn.Module):
    """The fusion network; ``forward(audio, audio_len, text, text_len) -> logits`` (batch, n_classes).

    ``audio`` is ``(batch, frames, audio_dim)``, ``text`` ``(batch, tokens, text_dim)``
    (one token for ``text_input='sentence'``), both zero-padded with their lengths
    given.  Inputs are standardised with statistics of the training set, kept as
    buffers (``set_normalisation``).
    """

    # Buffers (register_buffer): declared for the type checker.
    audio_mean: torch.Tensor
    audio_std: torch.Tensor
    text_mean: torch.Tensor
    text_std: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.members != 1:
            raise ConfigError(f"members={cfg.members}: an ensemble is built by build_network, not EmotionNet")
        self.cfg = cfg
        d = cfg.d_model
        self.register_buffer("audio_mean", torch.zeros(cfg.input_width))
        self.register_buffer("audio_std", torch.ones(cfg.input_width))
        if cfg.audio_input == "layers":  # SUPERB's layer weights: softmax-normalised, equal at the start
            self.layer_logits = nn.Parameter(torch.zeros(cfg.audio_layers))
        self.register_buffer("text_mean", torch.zeros(cfg.text_dim))
        self.register_buffer("text_std", torch.ones(cfg.text_dim))
        width = 0
        self.input_drop = nn.Dropout(cfg.input_dropout)
        if cfg.uses_audio:
            self.audio = AudioBranch(cfg)
            self.audio_pool = AttentionPool(d, cfg.dropout)
            width += d
            if cfg.pooled_stats:
                self.stats = nn.Sequential(nn.Linear(2 * cfg.audio_dim, d), nn.ReLU(), nn.Dropout(cfg.dropout))
                width += d
        if cfg.uses_text:
            self.text = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.ReLU(), nn.Dropout(cfg.dropout))
            self.text_pool = AttentionPool(d, cfg.dropout)
            width += d
        if cfg.fusion == "coattention":
            self.encoder = nn.ModuleList(SelfAttention(cfg) for _ in range(cfg.layers))
            self.decoder = nn.ModuleList(GuidedAttention(cfg) for _ in range(cfg.layers))
        self.classifier = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, d), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(d, cfg.n_classes)
        )

    def set_normalisation(self, audio: tuple[np.ndarray, np.ndarray], text: tuple[np.ndarray, np.ndarray]) -> None:
        """Store the training set's per-channel mean and standard deviation of each input."""
        for prefix, (mean, std) in (("audio", audio), ("text", text)):
            getattr(self, f"{prefix}_mean").copy_(torch.as_tensor(mean, dtype=torch.float32))
            getattr(self, f"{prefix}_std").copy_(torch.as_tensor(np.maximum(std, 1e-5), dtype=torch.float32))

    def layer_weights(self) -> torch.Tensor:
        """The weight of each mixed encoder layer (non-negative, summing to 1; one layer: ``[1]``)."""
        if self.cfg.audio_input != "layers":
            return torch.ones(1)
        return self.layer_logits.softmax(0)

    def mix(self, audio: torch.Tensor) -> torch.Tensor:
        """Standardised audio input ``(batch, frames, audio_layers * audio_dim)`` -> ``(batch, frames, audio_dim)``.

        Every layer is standardised per channel (training statistics) before the weighted sum, so a layer
        of large activations does not win by scale alone.
        """
        if self.cfg.audio_input != "layers":
            return (audio - self.audio_mean) / self.audio_std
        # sum_l w_l (x_l - m_l) / s_l as one pass over the (wide) input: x @ (w / s) minus the constant term.
        shape = (self.cfg.audio_layers, self.cfg.audio_dim)
        scale = self.layer_weights()[:, None] / self.audio_std.view(shape)
        layers = audio.view(*audio.shape[:2], *shape)
        mixed = layers[:, :, 0] * scale[0]
        for k in range(1, shape[0]):  # a loop of multiply-adds: measured faster than einsum on CPU
            mixed = mixed + layers[:, :, k] * scale[k]
        return mixed - (scale * self.audio_mean.view(shape)).sum(0)

    def forward(
        self, audio: torch.Tensor, audio_len: torch.Tensor, text: torch.Tensor, text_len: torch.Tensor
    ) -> torch.Tensor:
        cfg = self.cfg
        pooled = []
        if cfg.uses_audio:
            x = self.input_drop(_mask_time(self.mix(audio), audio_len, cfg.time_mask, self.training))
            if cfg.pooled_stats:
                pooled.append(self.stats(masked_stats(x, audio_len)))
            a, a_len = self.audio(x, audio_len)
            a_pad = _key_padding(a_len, a.shape[1])
        if cfg.uses_text:
            t = self.text((text - self.text_mean) / self.text_std)
            t_pad = _key_padding(text_len, t.shape[1])
        if cfg.fusion == "coattention":
            (g, g_pad), (o, o_pad) = ((t, t_pad), (a, a_pad)) if cfg.guide == "text" else ((a, a_pad), (t, t_pad))
            for layer in self.encoder:
                g = layer(g, g_pad)
            for layer in self.decoder:  # every guided layer attends to the guide's final output
                o = layer(o, o_pad, g, g_pad)
            (a, t) = (o, g) if cfg.guide == "text" else (g, o)
        if cfg.uses_audio:
            pooled.append(_drop_items(self.audio_pool(a, a_pad), cfg.path_dropout, self.training))
        if cfg.uses_text:
            pooled.append(self.text_pool(t, t_pad))
        return self.classifier(torch.cat(pooled, -1))


class EmotionEnsemble(nn.Module):
    """``cfg.members`` networks of one shape; ``forward`` gives their mean log-probabilities (as logits)."""

    def __init__(self, cfg: ModelConfig, members: Sequence[EmotionNet] | None = None) -> None:
        super().__init__()
        single = replace(cfg, members=1)
        members = list(members) if members is not None else [EmotionNet(single) for _ in range(cfg.members)]
        if len(members) != cfg.members or any(m.cfg != single for m in members):
            raise ConfigError(f"an ensemble of {cfg.members} needs that many networks of the configuration {single}")
        self.cfg = cfg
        self.members = nn.ModuleList(members)

    def forward(
        self, audio: torch.Tensor, audio_len: torch.Tensor, text: torch.Tensor, text_len: torch.Tensor
    ) -> torch.Tensor:
        logp = [m(audio, audio_len, text, text_len).log_softmax(-1) for m in self.members]
        return torch.stack(logp).mean(0)


def build_network(cfg: ModelConfig) -> EmotionNet | EmotionEnsemble:
    """The network of ``cfg``: one :class:`EmotionNet`, or an :class:`EmotionEnsemble` when ``cfg.members`` > 1."""
    return EmotionNet(cfg) if cfg.members == 1 else EmotionEnsemble(cfg)


def encoder_layer_states(encoder: Any, features: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per ``(80, T)`` whisper-preset item: every encoder layer's states, ``(ceil(T / 2), layers * width)`` float32.

    ``encoder`` is a :class:`~amser_dsp.server.recognition.torch_encoder.WhisperEncoder`; its
    :meth:`~amser_dsp.server.recognition.torch_encoder.WhisperEncoder.layers` run on the item's own frames (in
    pieces of at most one 30-s window, 3000 frames), not on a window padded to 30 s: the cost follows the
    clip's length (a 3-s clip costs a tenth of a window), and training and the service compute the same
    thing.  Items are run one at a time, so a result never depends on what else is in the batch.
    """
    window = 2 * int(encoder.positions.shape[0])
    out = []
    with torch.inference_mode():
        for f in features:
            f = np.asarray(f, np.float32)
            pieces = []
            for lo in range(0, f.shape[1], window):
                mel = torch.from_numpy(np.ascontiguousarray(f[None, :, lo : lo + window]))
                pieces.append(torch.cat(encoder.layers(mel), -1)[0].numpy())
            width = len(encoder.blocks) + 1
            out.append(
                np.concatenate(pieces) if pieces else np.zeros((0, width * encoder.positions.shape[1]), np.float32)
            )
    return out


#: Padded frames in one forward pass of :meth:`EmotionRecogniser.predict_inputs`.  A batch is padded to its
#: longest item, so a whole recording beside its hundred segments in one batch would cost the product
#: (ten minutes of five 384-d layers: 230 MB a segment).
PREDICT_FRAMES = 32_768


def length_batches(lengths: Sequence[int], frames: int) -> list[list[int]]:
    """Indices grouped by length so that each group's count times its longest stays within ``frames``
    (an item longer than that alone); the network's output for an item does not depend on its batch."""
    groups: list[list[int]] = []
    group: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if group and (len(group) + 1) * max(lengths[i], 1) > frames:
            groups.append(group)
            group = []
        group.append(i)
    return [*groups, group] if group else groups


def collate(
    audio: Sequence[np.ndarray], text: Sequence[np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-padded float32 batch tensors and lengths from per-item ``(frames, dim)`` arrays (empty -> one zero row)."""

    def pad(items: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        items = [np.zeros((1, i.shape[1] if i.ndim == 2 else 0), np.float32) if len(i) == 0 else i for i in items]
        lengths = torch.tensor([len(i) for i in items])
        out = torch.zeros((len(items), int(lengths.max()), items[0].shape[1]))
        for k, item in enumerate(items):  # torch converts float16 items while copying (faster than NumPy)
            out[k, : len(item)] = torch.from_numpy(np.asarray(item))
        return out, lengths

    a, a_len = pad(audio)
    t, t_len = pad(text)
    return a, a_len, t, t_len


# --------------------------------------------------------------- checkpoint
def _state_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], model: EmotionNet | EmotionEnsemble, meta: dict[str, Any]) -> int:
    """Write the state dict and metadata (model config, labels, preset, ...) to ``path``; returns its size in bytes.

    Weights are stored as float32; ``meta`` must hold only JSON-like values.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    try:  # plain JSON types only: the loader accepts nothing else (weights_only)
        meta = json.loads(json.dumps(meta))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint metadata must be JSON-like: {exc}") from None
    meta = {
        **meta,
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": model.cfg.to_dict(),
        "state_sha256": _state_digest(state),
    }
    meta.setdefault("license", LICENSE_CAUTION)
    buffer = io.BytesIO()
    torch.save({"meta": meta, "state_dict": state}, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(buffer.getvalue())
    return buffer.tell()


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    preset: dict[str, Any] | None = None,
    text_encoder: str | None = None,
    recogniser: str | None = None,
) -> tuple[EmotionNet | EmotionEnsemble, dict[str, Any]]:
    """The network (in eval mode) and metadata of a checkpoint, checked against what the caller will feed it.

    Parameters
    ----------
    labels, preset, text_encoder, recogniser : optional
        Expected label order, feature config dict (``FeatureConfig.to_dict()``),
        text encoder name, and Whisper model id (for encoder-state models).

    Raises
    ------
    CheckpointError
        If the file is damaged or not an emotion checkpoint, or was made for
        another label map, preset, text encoder or recogniser.
    """
    try:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"emotion checkpoint not found: {path}") from None
    except Exception as exc:  # torch raises RuntimeError, pickle and zip errors for damaged files
        raise CheckpointError(
            f"{path} is not a readable emotion checkpoint (damaged or another format): {exc}"
        ) from None
    meta = blob.get("meta") if isinstance(blob, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or "state_dict" not in blob:
        raise CheckpointError(f"{path} is not an {CHECKPOINT_FORMAT} checkpoint")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is checkpoint version {meta.get('version')}; this build reads {CHECKPOINT_VERSION}"
        )
    state = blob["state_dict"]
    if _state_digest(state) != meta.get("state_sha256"):
        raise CheckpointError(f"{path} is damaged: its weights do not match the digest stored with them")
    if labels is not None and list(meta.get("labels", ())) != list(labels):
        raise CheckpointError(f"{path} was trained for labels {meta.get('labels')}; expected {list(labels)}")
    if preset is not None and meta.get("preset") != preset:
        raise CheckpointError(
            f"{path} was trained on features of another preset; expected {preset.get('name', preset)}"
        )
    if text_encoder is not None and meta.get("text_encoder", {}).get("name") != text_encoder:
        raise CheckpointError(
            f"{path} was trained with text encoder {meta.get('text_encoder', {}).get('name')!r}, not {text_encoder!r}"
        )
    cfg = ModelConfig.from_dict(meta["model_config"])
    if recogniser is not None and cfg.reads_encoder and meta.get("recogniser") != recogniser:
        raise CheckpointError(
            f"{path} reads encoder states of Whisper {meta.get('recogniser')!r}; the recogniser here is {recogniser!r}"
        )
    model = build_network(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit its model config: {exc}") from None
    return model.eval(), meta


def default_checkpoint() -> Path:
    """The emotion model shipped in the package."""
    return Path(__file__).resolve().parent / "data" / "emotion-v2.pt"


# ---------------------------------------------------------------- inference
class EmotionRecogniser:
    """Emotion of decoded features from what the recogniser made of them.

    Parameters
    ----------
    checkpoint : path, optional
        Default: the packaged model (:func:`default_checkpoint`).
    recogniser : str, optional
        The Whisper model id whose encoder states will be fed (checked against
        the checkpoint for encoder-state models).
    text_encoder : TextEncoder, optional
        Default: the one the checkpoint names, loaded here.
    threads : int or None
        Sets torch's (process-wide) intra-op thread count; ``None`` leaves it.  One
        thread by default: the network is small, and on a busy machine torch's
        spinning worker threads cost more than they give (measured: 0.9-5.7 s per
        clip with 2 threads against 0.09-0.15 s with 1 on 2 shared cores).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        *,
        recogniser: str | None = None,
        text_encoder: Any = None,
        threads: int | None = 1,
    ) -> None:
        from ...config import get_preset

        self.path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
        name = text_encoder.name if text_encoder is not None else None
        self.model, self.meta = load_checkpoint(
            self.path,
            labels=None,
            preset=get_preset("whisper").to_dict(),
            text_encoder=name,
            recogniser=recogniser,
        )
        self.labels = tuple(self.meta["labels"])
        self.cfg = self.model.cfg
        if threads is not None:
            torch.set_num_threads(threads)
        if self.cfg.uses_text and text_encoder is None:
            from .text import TextEncoder

            text_encoder = TextEncoder(self.meta["text_encoder"]["name"])
        if text_encoder is not None and text_encoder.dim != self.cfg.text_dim:
            raise CheckpointError(
                f"{self.path} expects {self.cfg.text_dim}-d text features; the encoder gives {text_encoder.dim}"
            )
        self.text_encoder = text_encoder
        #: Whisper's encoder in torch, for a model that reads every encoder layer (None otherwise).
        self.layer_encoder: Any = None
        if self.cfg.audio_input == "layers":
            from ..recognition.models import named_model
            from ..recognition.torch_encoder import load_encoder

            name = named_model(str(self.meta.get("recogniser")))
            if name is None:
                raise CheckpointError(
                    f"{self.path} reads the layers of Whisper {self.meta.get('recogniser')!r}, which no model name loads"
                )
            self.layer_encoder = load_encoder(name)
            if len(self.layer_encoder.blocks) + 1 != self.cfg.audio_layers:
                raise CheckpointError(f"{self.path} mixes {self.cfg.audio_layers} layers; {name} has another depth")
        self.name = str(self.meta.get("name", self.path.stem))
        # The first forward pass sets up torch's kernels (about 2 s): pay it here, not in the first request.
        self.predict([np.zeros((4, self.cfg.input_width), np.float32)], [np.zeros((80, 8), np.float32)], ["warm up"])
        if self.layer_encoder is not None:
            self.layer_states([np.zeros((80, 8), np.float32)])

    def info(self) -> dict[str, Any]:
        """The model's name, labels, configuration and licence caution (``/v1/info`` shows it)."""
        return {
            "model": self.name,
            "labels": list(self.labels),
            "fusion": self.cfg.fusion,
            "audio_input": self.cfg.audio_input,
            **({"layer_weights": [round(float(w), 4) for w in self.layer_weights()]} if self.layer_encoder else {}),
            "text_encoder": self.meta["text_encoder"]["name"],
            "license": self.meta.get("license", LICENSE_CAUTION),
        }

    def layer_weights(self) -> np.ndarray:
        """The learned weight of each encoder layer (the members' mean for a seed ensemble)."""
        nets = (
            [cast(EmotionNet, m) for m in self.model.members]
            if isinstance(self.model, EmotionEnsemble)
            else [self.model]
        )
        with torch.inference_mode():
            return torch.stack([n.layer_weights() for n in nets]).mean(0).numpy()

    def layer_states(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """What the audio branch of a layer-mixing model reads for each ``(80, T)`` item (:func:`encoder_layer_states`)."""
        if self.layer_encoder is None:
            raise ConfigError(f"{self.path} reads no encoder layers (audio input {self.cfg.audio_input!r})")
        return encoder_layer_states(self.layer_encoder, features)

    def text_features(self, texts: Sequence[str]) -> list[np.ndarray]:
        """What the text branch reads for each transcript (token states, or the pooled embedding as one row)."""
        if not self.cfg.uses_text:
            return [np.zeros((1, self.cfg.text_dim), np.float32) for _ in texts]
        if self.cfg.text_input == "sentence":
            return [e[None, :] for e in self.text_encoder.embed(texts)]
        return self.text_encoder.tokens(texts)

    def predict(self, states: Sequence[np.ndarray], mel: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` from encoder states ``(frames, d)`` (a layer-mixing model:
        :meth:`layer_states`), log-Mel ``(80, T)``, transcripts."""
        audio = list(states) if self.cfg.reads_encoder else [np.asarray(m).T for m in mel]
        return self.predict_inputs(audio, self.text_features(texts))

    def predict_inputs(self, audio: Sequence[np.ndarray], text: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities from ready audio-branch ``(frames, dim)`` and text-branch ``(tokens, dim)`` inputs."""
        if len(audio) != len(text):
            raise ConfigError(f"{len(audio)} audio inputs but {len(text)} text inputs")
        out = np.zeros((len(audio), len(self.labels)), np.float64)
        with torch.inference_mode():
            for group in length_batches([len(a) for a in audio], PREDICT_FRAMES):
                logits = self.model(*collate([audio[i] for i in group], [text[i] for i in group]))
                out[group] = logits.softmax(-1).numpy()
        return out

    def describe(self, probabilities: np.ndarray) -> dict[str, Any]:
        """``{"label", "probabilities": {label: p}}`` for one row of :meth:`predict`."""
        return {
            "label": self.labels[int(np.argmax(probabilities))],
            "probabilities": {k: float(p) for k, p in zip(self.labels, probabilities, strict=True)},
        }
