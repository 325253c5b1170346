"""Training the learned kltdct decoder (:mod:`.learned_decoder`) through Whisper's frozen encoder (``amser train-decoder``).

Speech: the shared ASR clips (all, or every fold but one: out of fold as the codec tables are) and the shared
emotion clips, their features joined in manifest order and cut into pieces of 10 s.  Each step takes a few
pieces, codes each with the kltdct codec at a random step (the tables named, a container per piece as a device
would send it), decodes it with the plain decoder, and moves the network so that the encoder's states on its
output match the states on the uncompressed features: mean squared error of the last layer and of the middle
block, each over the reference's energy, plus a small term on the log-Mel itself.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import codec as codecs
from ...api import features
from ...codec.train import clip_folds
from ...config import get_preset
from ...errors import AmserError
from ...io import load_audio
from ..recognition.models import resolve_model
from .learned_decoder import DecoderNet, LearnedDecoder, decoder_from_bytes
from .torch_encoder import WhisperEncoder, load_encoder

__all__ = ["decoder_loss", "main", "speech_features", "speech_pieces", "train_decoder"]

PIECE_FRAMES = 1000
#: Licences of the shared speech folders a decoder may be trained on (the data's README).
LICENCES = {
    "asr": "LibriSpeech (CC BY 4.0) and LJ Speech (public domain)",
    "ravdess": "RAVDESS (CC BY-NC-SA 4.0: non-commercial, share-alike)",
    "emodb": "EmoDB (CC0, as republished by audEERING)",
}


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def speech_features(
    manifest: Path, cache: Path | None, skip: Sequence[str] = (), corpora: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Clip id -> whisper-preset features of every clip in ``manifest`` not in ``skip`` (and, with ``corpora``,
    whose ``corpus`` column is one of them), cached as float32 ``.npz``."""
    cfg = get_preset("whisper")
    rows = [r for r in _rows(manifest) if r["id"] not in set(skip)]
    if corpora is not None:
        rows = [r for r in rows if r.get("corpus") in corpora]
    key = hashlib.sha256("\n".join(r["id"] for r in rows).encode()).hexdigest()[:16]
    file = cache / f"features-{manifest.parent.name}-{key}.npz" if cache is not None else None
    if file is not None and file.exists():
        with np.load(file) as z:
            return {k: z[k] for k in z.files}
    out = {r["id"]: features(load_audio(manifest.parent / r["path"]), cfg.sample_rate, cfg) for r in rows}
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp.npz")
        np.savez(tmp, **out)  # type: ignore[arg-type]
        tmp.replace(file)
    return out


def speech_pieces(clip_features: Sequence[np.ndarray], frames: int = PIECE_FRAMES) -> list[np.ndarray]:
    """The clips joined in order and cut into pieces of exactly ``frames`` frames (the remainder dropped)."""
    if not clip_features:
        return []
    joined = np.concatenate(list(clip_features), axis=1)
    return [np.ascontiguousarray(joined[:, i : i + frames]) for i in range(0, joined.shape[1] - frames + 1, frames)]


def plain_decoded(piece: np.ndarray, tables: str, step: int) -> np.ndarray:
    """What the plain decoder gives for ``piece`` coded as one container at ``step`` with ``tables``."""
    cfg = get_preset("whisper")
    return codecs.decode(codecs.encode(piece, config=cfg, codec={"codec": "kltdct", "tables": tables, "step": step}))


def decoder_loss(
    encoder: WhisperEncoder, out: torch.Tensor, ref: torch.Tensor, ref_states: list[torch.Tensor], mel_weight: float
) -> torch.Tensor:
    """Per piece ``(batch,)``: encoder-state distance of ``out`` from the reference (last layer + middle block,
    each over the reference's energy) + ``mel_weight`` x the log-Mel's squared error over its variance."""
    states = encoder.layers(out)
    mid = len(states) // 2
    loss = torch.zeros(out.shape[0])
    for i, weight in ((len(states) - 1, 1.0), (mid, 0.5)):
        loss = loss + weight * (states[i] - ref_states[i]).square().mean((1, 2)) / ref_states[i].square().mean()
    return loss + mel_weight * (out - ref).square().mean((1, 2)) / (ref - ref.mean()).square().mean()


def train_decoder(
    model: str,
    tables: str,
    pieces: Sequence[np.ndarray],
    *,
    minutes: float,
    steps: tuple[int, int] = (-8, 18),
    batch: int = 4,
    lr: float = 1e-3,
    mel_weight: float = 0.1,
    balance: bool = True,
    seed: int = 0,
    init: DecoderNet | None = None,
    log: Any = sys.stderr,
) -> tuple[DecoderNet, dict[str, Any]]:
    """Fit a :class:`DecoderNet` for recogniser ``model`` on ``pieces`` for ``minutes`` of wall time (one thread).

    The learning rate follows a cosine from ``lr`` to zero over the time budget; steps are drawn uniformly
    from ``steps`` (inclusive); ``init`` is a network to start from (another recogniser's: a fine-tuning),
    trained further in place; ``balance`` weighs each piece by the inverse of the plain decoder's loss on it.
    Returns the network and a log (loss against the plain decoder's).
    """
    if not pieces:
        raise AmserError("no training speech: every clip was excluded or the manifests are empty")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = load_encoder(model)
    net = init if init is not None else DecoderNet()
    net.train()
    net.requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    cache: dict[tuple[int, int], np.ndarray] = {}
    start = time.perf_counter()
    budget = minutes * 60
    history: list[dict[str, float]] = []
    n_steps, ratio_sum, ratio_n = 0, 0.0, 0
    while (elapsed := time.perf_counter() - start) < budget:
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * elapsed / budget))
        idx = rng.integers(len(pieces), size=batch)
        chosen = rng.integers(steps[0], steps[1] + 1, size=batch)
        plain = []
        for i, s in zip(idx.tolist(), chosen.tolist(), strict=True):
            if (i, s) not in cache:
                cache[i, s] = plain_decoded(pieces[i], tables, s).astype(np.float16)
            plain.append(cache[i, s].astype(np.float32))
        x = torch.from_numpy(np.stack(plain))
        ref = torch.from_numpy(np.stack([pieces[i] for i in idx]))
        step_t = torch.from_numpy(np.repeat(chosen[:, None], x.shape[-1], axis=1).astype(np.float32))
        with torch.no_grad():
            ref_states = encoder.layers(ref)
            # The plain decoder's loss, the yardstick: with ``balance`` each piece counts relative to it, so fine
            # steps (small errors) weigh as much as coarse ones.
            plain_loss = decoder_loss(encoder, x, ref, ref_states, mel_weight) if balance or n_steps % 10 == 0 else None
        per_piece = decoder_loss(encoder, net(x, step_t), ref, ref_states, mel_weight)
        loss = (per_piece / plain_loss).mean() if balance and plain_loss is not None else per_piece.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        n_steps += 1
        if plain_loss is not None:
            ratio_sum += float(per_piece.detach().sum() / plain_loss.sum())
            ratio_n += 1
        if n_steps % 20 == 0:
            entry = {
                "step": n_steps,
                "minutes": elapsed / 60,
                "loss": float(loss.detach()),
                "ratio": ratio_sum / ratio_n,
            }
            history.append(entry)
            print(
                f"step {n_steps} {elapsed / 60:.1f} min: loss {float(loss.detach()):.4f}, "
                f"over the plain decoder's {entry['ratio']:.3f}",
                file=log,
                flush=True,
            )
            ratio_sum, ratio_n = 0.0, 0
    net.eval()
    net.requires_grad_(False)
    info = {
        "steps": n_steps,
        "minutes": (time.perf_counter() - start) / 60,
        "batch": batch,
        "piece_frames": int(pieces[0].shape[1]),
        "lr": lr,
        "mel_weight": mel_weight,
        "balance": balance,
        "step_range": list(steps),
        "history": history,
    }
    return net, info


def main(args: argparse.Namespace) -> int:  # called by ``amser train-decoder``
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    for name in ("asr_manifest", "emotion_manifest", "tables", "init"):
        given = getattr(args, name)
        if given and output.exists() and output.samefile(given):
            raise AmserError(f"-o {output} is the --{name.replace('_', '-')} input: write the decoder elsewhere")
    model = resolve_model(args.model).label
    start = decoder_from_bytes(Path(args.init).read_bytes()) if args.init else None
    tables_name = codecs.kltdct.DEFAULT_TABLES
    exclude: list[str] = []
    if args.tables:
        tables = codecs.kltdct.tables_from_bytes(Path(args.tables).read_bytes())
        codecs.register_tables(tables)
        tables_name = tables.name
    asr = Path(args.asr_manifest)
    rows = _rows(asr)
    if args.exclude_fold:
        try:
            fold, n_folds = (int(v) for v in args.exclude_fold.split("/"))
        except ValueError:
            raise AmserError(f"--exclude-fold takes I/K (for instance 0/2), got {args.exclude_fold!r}") from None
        if not 0 <= fold < n_folds:
            raise AmserError(f"--exclude-fold {args.exclude_fold}: the fold must be 0 to {n_folds - 1}")
        folds = clip_folds(rows, n_folds)
        exclude = [cid for cid, f in folds.items() if f == fold]
    if args.asr_repeat < 1:
        raise AmserError(f"--asr-repeat must be at least 1, got {args.asr_repeat}")
    if args.emotion_corpora and not args.emotion_manifest:
        raise AmserError("--emotion-corpora chooses clips of --emotion-manifest: give the manifest too")
    cache = Path(args.cache) if args.cache else None
    asr_feats = speech_features(asr, cache, exclude)
    clips = list(asr_feats)
    parts = [asr_feats[c] for c in clips]
    sources = [LICENCES["asr"]]
    if args.emotion_manifest:
        corpora = args.emotion_corpora.split(",") if args.emotion_corpora else None
        emo = speech_features(Path(args.emotion_manifest), cache, corpora=corpora)
        if not emo:
            raise AmserError(f"no clips of corpora {corpora} in {args.emotion_manifest}")
        parts += list(emo.values())
        sources += [
            LICENCES.get(c, f"{c} (see the manifest's licence column)") for c in corpora or ("ravdess", "emodb")
        ]
    # The transcribed clips are the speech the recogniser is judged on: --asr-repeat draws them more often.
    pieces = speech_pieces(parts[: len(clips)]) * args.asr_repeat + speech_pieces(parts[len(clips) :])
    print(f"{len(pieces)} pieces of {PIECE_FRAMES} frames ({len(clips)} ASR clips)", file=sys.stderr)
    net, info = train_decoder(
        model,
        tables_name,
        pieces,
        minutes=args.minutes,
        seed=args.seed,
        balance=not args.no_balance,
        init=start.net if start else None,
        lr=args.lr,
    )
    if start is not None:
        info["started_from"] = {"sha256": start.sha256, "model": start.meta.get("model"), "meta": start.meta}
    meta = {
        "model": model,
        "tables": tables_name,
        "clips": clips,
        "excluded_fold": args.exclude_fold,
        "speech": sources,
        "emotion_clips": len(parts) - len(clips),
        "torch_threads": args.threads,
        "asr_repeat": args.asr_repeat,
        **info,
    }
    out = LearnedDecoder(net, args.min_step, meta).to_bytes()
    decoder_from_bytes(out)  # what is written reads back
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(out)
    print(f"wrote {args.output} ({len(out) / 1e6:.2f} MB) after {info['minutes']:.1f} min", file=sys.stderr)
    return 0
