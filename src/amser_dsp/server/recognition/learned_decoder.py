"""A learned decoder for kltdct containers: the plain inverse transform plus a small network's correction.

The plain decoder (:func:`~amser_dsp.codec.decode`) puts each quantised coefficient at the centre of its cell;
the features it gives are the reference and stay what ``amser decode`` returns.  For the recogniser, a
small convolutional network over time adds a correction to them, conditioned on each chunk's quantiser step,
trained so that Whisper's encoder states on the corrected features match those on the uncompressed features
(:mod:`.decoder_training`).  One network per recogniser; each ships as an ``.npz`` of float16 weights and a
JSON header (no pickle), under ``server/recognition/data/decoders``, and runs in a few milliseconds per
second of audio on one thread.  It is used only at steps where it paid on held-out speakers (``min_step``,
measured with ``amser eval-asr --decoders``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ... import container as fmt
from ...codec import Decoded
from ...codec.containers import header_codec
from ...codec.kltdct import KltDctCodec
from ...errors import ModelError
from .models import shipped_decoder

__all__ = [
    "DecoderNet",
    "LearnedDecoder",
    "decoder_from_bytes",
    "frame_steps",
    "learned_decoder_for",
    "refine_decoded",
]

#: Step indices are given to the network divided by this (steps -8 to 24 become -0.5 to 1.5).
STEP_SCALE = 16.0


class _Block(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(F.gelu(self.conv(F.gelu(x))))


class DecoderNet(nn.Module):
    """Features ``(batch, mels, frames)`` and steps ``(batch, frames)`` -> the features plus a correction.

    Parameters
    ----------
    mels : int
        Mel bands (80).
    width : int
        Channels of the hidden layers.
    dilations : tuple of int
        One residual block per entry (a dilated kernel-3 convolution and a 1 x 1 one); the receptive field is
        ``3 + 2 * sum(dilations)`` frames.

    The output layer starts at zero, so an untrained network is the plain decoder.
    """

    def __init__(self, mels: int = 80, width: int = 128, dilations: tuple[int, ...] = (1, 2, 4, 8, 1)) -> None:
        super().__init__()
        self.hyper = {"mels": mels, "width": width, "dilations": list(dilations)}
        self.inp = nn.Conv1d(mels + 1, width, 3, padding=1)
        self.blocks = nn.ModuleList(_Block(width, d) for d in dilations)
        self.out = nn.Conv1d(width, mels, 1)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([x, (step / STEP_SCALE).unsqueeze(1)], dim=1))
        for block in self.blocks:
            h = block(h)
        return x + self.out(F.gelu(h))


@dataclass(eq=False)
class LearnedDecoder:
    """A trained :class:`DecoderNet` and where it applies.

    Attributes
    ----------
    net : DecoderNet
        The network (eval mode, no gradients).
    min_step : int
        Chunks coded at a finer step than this are left as the plain decoder gives them (the network did
        not pay there on held-out speakers).
    meta : dict
        Provenance: recogniser, tables, training speech and its licences, clips, fold, the measurements.
    sha256 : str
        Digest of the file it was read from.
    """

    net: DecoderNet
    min_step: int
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""

    @property
    def key(self) -> str:
        """Short identifier for cache keys: the file's digest and where it applies."""
        return f"{self.sha256[:16]}>={self.min_step}"

    def refine(self, features: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Corrected ``(mels, T)`` features of plain-decoded ``features`` whose frames were coded at ``steps``.

        Frames at steps under :attr:`min_step` are returned unchanged; the others are corrected and kept in
        the plain features' range (the decoder's clip to each chunk's range, which the network does not see).
        """
        steps = np.asarray(steps)
        if features.ndim != 2 or steps.shape != (features.shape[1],):
            raise ModelError(f"features {features.shape} and steps {steps.shape} do not match")
        use = steps >= self.min_step
        if not use.any():
            return features
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(features, np.float32))[None]
            s = torch.from_numpy(steps.astype(np.float32))[None]
            y = self.net(x, s)[0].numpy()
        np.clip(y, features.min(), features.max(), out=y)
        return np.where(use[None, :], y, features).astype(np.float32)

    def to_bytes(self) -> bytes:
        """The ``.npz`` layout :func:`decoder_from_bytes` reads (float16 weights, JSON header)."""
        buf = io.BytesIO()
        header = {"hyper": self.net.hyper, "min_step": self.min_step, "meta": self.meta}
        arrays = {f"w/{k}": v.detach().numpy().astype(np.float16) for k, v in self.net.state_dict().items()}
        np.savez(buf, header=np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8), **arrays)
        return buf.getvalue()


def decoder_from_bytes(data: bytes) -> LearnedDecoder:
    """Read a learned decoder file (:meth:`LearnedDecoder.to_bytes`); no pickle, nothing downloaded.

    Raises
    ------
    ModelError
        If the file is not a learned decoder or its weights do not fit its declared shape.
    """
    if not data.startswith(b"PK"):  # np.load would try it as a pickle and say so
        raise ModelError("not a learned decoder file: expected the .npz that amser train-decoder writes")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            weights = {k[2:]: z[k] for k in z.files if k.startswith("w/")}
        hyper = header["hyper"]
        net = DecoderNet(int(hyper["mels"]), int(hyper["width"]), tuple(int(d) for d in hyper["dilations"]))
        net.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in weights.items()})
        min_step = int(header["min_step"])
    except (OSError, EOFError, ValueError, KeyError, TypeError, RuntimeError, zipfile.BadZipFile) as exc:
        raise ModelError(f"not a learned decoder file: {exc}") from None
    net.eval()
    net.requires_grad_(False)
    return LearnedDecoder(net, min_step, header.get("meta", {}), hashlib.sha256(data).hexdigest())


@functools.lru_cache(maxsize=4)
def _load_shipped(model: str) -> LearnedDecoder | None:
    data = shipped_decoder(model)
    return decoder_from_bytes(data) if data is not None else None


def learned_decoder_for(model: str, source: str | os.PathLike[str] | None = None) -> LearnedDecoder | None:
    """The learned decoder for recogniser ``model`` (its shipped one), or the one in file ``source``.

    ``None`` when none ships for that recogniser (a model directory of the user's own): the plain decoder.
    """
    if source is not None:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read learned decoder {os.fspath(source)}: {exc.strerror or exc}") from None
        return decoder_from_bytes(data)
    return _load_shipped(model)


def frame_steps(blob: bytes, n_frames: int, limits: fmt.Limits | None = None) -> np.ndarray | None:
    """The kltdct step index each frame of a container was coded at; ``None`` for other codecs.

    The container was decoded already (so it parses); this reads only its chunk heads.
    """
    header, chunks, _ = fmt.read_all(blob, limits or fmt.DEFAULT_LIMITS)
    codec = header_codec(header)
    if not isinstance(codec, KltDctCodec):
        return None
    parts = [np.full(c.n_frames, codec.chunk_step(c.payload), np.int16) for c in chunks]
    steps = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    return steps if steps.size == n_frames else None


def refine_decoded(blob: bytes, decoded: Decoded, decoder: LearnedDecoder, limits: fmt.Limits | None) -> Decoded:
    """``decoded`` (the plain decoding of ``blob``) corrected by ``decoder`` if it is kltdct; else unchanged."""
    steps = frame_steps(blob, decoded.features.shape[1], limits)
    if steps is None:
        return decoded
    return Decoded(decoder.refine(decoded.features, steps), decoded.info)
