"""Training the emotion network (``amser train-emotion --config FILE``).

The run: read the manifest, split by speaker (seeded, written beside the
checkpoint), make every training clip's versions (clean at the default codec
and uncompressed, plus augmented ones at codec settings drawn from the sweep)
through the real encode/decode and Whisper path (cached on disk), then Adam on
cross-entropy with class weights, early stopping on the validation speakers'
unweighted recall, and the best epoch saved as the checkpoint.  Same seed, same
thread count and same machine give the same weights bit for bit.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from ... import __version__
from ...config import get_preset
from ...errors import ConfigError
from .. import require_extra

require_extra("torch", extra="emotion")

import torch  # noqa: E402

from .data import (  # noqa: E402
    DEFAULT_SETTING,
    LABELS,
    SETTINGS,
    EmotionClip,
    Example,
    Version,
    build_examples,
    make_split,
    manifest_digest,
    read_emotion_manifest,
    speaker_folds,
    training_versions,
    write_split,
)
from .network import EmotionEnsemble, EmotionNet, ModelConfig, collate, save_checkpoint  # noqa: E402

__all__ = ["Inputs", "TrainConfig", "cross_validate", "fit", "fit_config", "predict", "scores", "train"]


@dataclass
class TrainConfig:
    """Everything a training run depends on (a JSON file of these keys; unknown keys are refused)."""

    manifest: str = "../shared/data/emotion/manifest.tsv"
    out: str = "src/amser_dsp/server/emotion/data/emotion-v2.pt"
    name: str = "amser-emotion-v2"
    cache: str = ".cache/emotion"
    seed: int = 0
    split_seed: int = 0
    test_fraction: float = 0.3
    val_fraction: float = 0.15
    model: dict[str, Any] = field(default_factory=dict)
    text_encoder: str = "all-MiniLM-L6-v2"
    clean_settings: list[str] = field(default_factory=lambda: [DEFAULT_SETTING, "uncompressed"])
    augmented_versions: int = 2
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 12
    label_smoothing: float = 0.0
    average: float = 0.0
    threads: int = 2
    whisper_model: str | None = None
    beam_size: int = 5
    #: Why this configuration was chosen (free text; travels in the checkpoint and into the evaluation report).
    note: str = ""

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a JSON config; paths in it are relative to the current directory."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the training config {path}: {exc}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ConfigError(f"{path}: unknown keys {sorted(set(data) - known)}; known: {sorted(known)}")
        cfg = cls(**data)
        ModelConfig.from_dict(cfg.model)  # refuse bad model settings before any work
        _check_fit_options(cfg.label_smoothing, cfg.average)
        bad = [s for s in cfg.clean_settings if s not in SETTINGS]
        if bad:
            raise ConfigError(f"{path}: unknown codec settings {bad}; known: {sorted(SETTINGS)}")
        return cfg


def _check_fit_options(label_smoothing: float, average: float) -> None:
    for name, value in (("label_smoothing", label_smoothing), ("average", average)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ConfigError(f"{name}={value!r} is invalid: expected a number, 0 <= {name} < 1")


# ------------------------------------------------------------------ metrics
def scores(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int = len(LABELS)) -> dict[str, Any]:
    """Accuracy, unweighted average recall (UAR), macro F1 (%) and the confusion matrix (rows: truth)."""
    confusion = np.zeros((n_classes, n_classes), int)
    np.add.at(confusion, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    support, predicted, hits = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    recall = np.divide(hits, support, out=np.zeros(n_classes), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros(n_classes), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n_classes), where=precision + recall > 0)
    present = support > 0
    return {
        "n": int(support.sum()),
        "accuracy": 100 * float(hits.sum() / max(support.sum(), 1)),
        "uar": 100 * float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": 100 * float(f1[present].mean()) if present.any() else 0.0,
        "confusion": confusion.tolist(),
    }


# --------------------------------------------------------------- the model
@dataclass
class Inputs:
    """Model inputs of a set of examples: per item an audio-branch and a text-branch array, and the label."""

    audio: list[np.ndarray]
    text: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def make_inputs(
    examples: Sequence[Example], model_cfg: ModelConfig, text_features: Any, labels: Sequence[str] = LABELS
) -> Inputs:
    """Inputs of ``examples`` for ``model_cfg``; ``text_features(texts)`` gives the text-branch arrays.

    Labels are indices in ``labels`` (default: the 4-class model's; a protocol with other classes passes its own).
    """
    if model_cfg.audio_input == "encoder":
        audio = [e.states for e in examples]
    elif model_cfg.audio_input == "layers":
        if any(e.layers is None for e in examples):
            raise ConfigError("a layer-mixing model needs examples built with the torch encoder (layer_encoder)")
        audio = [cast(np.ndarray, e.layers) for e in examples]
    else:
        audio = [np.ascontiguousarray(e.mel.T) for e in examples]
    texts = [e.text for e in examples]
    unique = sorted(set(texts))
    table = dict(zip(unique, text_features(unique) if unique else [], strict=True))
    return Inputs(
        audio, [table[t] for t in texts], np.array([labels.index(e.version.clip.label) for e in examples], int)
    )


def _stats(items: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over every row of ``items`` (accumulated: no copy of them all)."""
    total, squares, n = 0.0, 0.0, 0
    for i in items:
        if len(i):
            rows = np.asarray(i, np.float64)
            total, squares, n = total + rows.sum(0), squares + (rows**2).sum(0), n + len(rows)
    mean = np.asarray(total) / max(n, 1)
    return mean.astype(np.float32), np.sqrt(np.maximum(np.asarray(squares) / max(n, 1) - mean**2, 0)).astype(np.float32)


def predict(model: EmotionNet | EmotionEnsemble, inputs: Inputs, batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` of ``inputs`` (eval mode, no gradients)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for lo in range(0, len(inputs), batch_size):
            batch = collate(inputs.audio[lo : lo + batch_size], inputs.text[lo : lo + batch_size])
            out.append(model(*batch).softmax(-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.n_classes), np.float32)


def fit(
    model_cfg: ModelConfig,
    train: Inputs,
    val: Inputs | None,
    *,
    seed: int = 0,
    epochs: int = 60,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    patience: int = 12,
    threads: int = 1,
    label_smoothing: float = 0.0,
    average: float = 0.0,
    progress: bool = True,
) -> tuple[EmotionNet, list[dict[str, float]]]:
    """Train a network; returns the best epoch's weights (by validation UAR, then loss) and per-epoch metrics.

    Deterministic: torch's deterministic algorithms, ``threads`` intra-op
    threads, and every random draw (initial weights, dropout, batch order)
    from ``seed``.  Without ``val`` the last epoch is kept.  ``label_smoothing``
    goes to the cross-entropy; ``average`` > 0 keeps an exponential moving
    average of the weights and BatchNorm statistics (decay per step), and that
    average is what is validated and returned.
    """
    _check_fit_options(label_smoothing, average)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = EmotionNet(model_cfg)
    model.set_normalisation(_stats(train.audio), _stats(train.text))
    counts = np.bincount(train.labels, minlength=model_cfg.n_classes).astype(float)
    weights = torch.tensor(
        np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / model_cfg.n_classes, 0.0), dtype=torch.float32
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    # Exponential moving average of the weights (and BatchNorm statistics): what is scored and kept.
    averaged = (
        torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(average), use_buffers=True
        )
        if average
        else None
    )
    scored = cast(EmotionNet, averaged.module) if averaged is not None else model
    order_rng = torch.Generator().manual_seed(seed)
    labels = torch.from_numpy(train.labels)
    history: list[dict[str, float]] = []
    best: tuple[float, float] = (-math.inf, -math.inf)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    stale = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=order_rng).tolist()
        total, seen, correct = 0.0, 0, 0
        n_batches = -(-len(order) // batch_size)
        for b, lo in enumerate(range(0, len(order), batch_size)):
            idx = order[lo : lo + batch_size]
            if len(idx) < 2 and len(order) > 1:  # BatchNorm needs two items
                continue
            batch = collate([train.audio[i] for i in idx], [train.text[i] for i in idx])
            logits = model(*batch)
            loss = loss_fn(logits, labels[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += loss.item() * len(idx)
            seen += len(idx)
            correct += int((logits.argmax(-1) == labels[idx]).sum())
            if progress and sys.stderr.isatty():
                filled = 20 * (b + 1) // n_batches
                sys.stderr.write(f"\repoch {epoch:3d} [{'#' * filled}{'.' * (20 - filled)}] loss {total / seen:.3f}")
                sys.stderr.flush()
        row = {"epoch": epoch, "loss": total / max(seen, 1), "train_accuracy": 100 * correct / max(seen, 1)}
        if val is not None and len(val):
            probs = predict(scored, val)
            s = scores(val.labels, probs.argmax(1), model_cfg.n_classes)
            val_loss = float(
                torch.nn.functional.nll_loss(torch.log(torch.from_numpy(probs) + 1e-9), torch.from_numpy(val.labels))
            )
            row.update(val_loss=val_loss, val_accuracy=s["accuracy"], val_uar=s["uar"])
            key = (s["uar"], -val_loss)
            if key > best:
                best, best_state, stale = key, {k: v.clone() for k, v in scored.state_dict().items()}, 0
                row["best"] = 1.0
            else:
                stale += 1
        else:
            best_state = {k: v.clone() for k, v in scored.state_dict().items()}
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if progress:
            metrics = " ".join(
                f"{k} {v:.3f}" if k.endswith("loss") else f"{k} {v:.1f}"
                for k, v in row.items()
                if k not in ("epoch", "best")
            )
            sys.stderr.write(f"\repoch {epoch:3d}/{epochs} {metrics}{' *' if row.get('best') else ''}\n")
        if val is not None and stale >= patience:
            break
    model.load_state_dict(best_state)
    return model.eval(), history


def fit_config(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    train: Inputs,
    val: Inputs | None,
    *,
    seed: int,
    patience: int,
    progress: bool,
) -> tuple[EmotionNet, list[dict[str, float]]]:
    """:func:`fit` with the optimisation settings of ``cfg``."""
    return fit(
        model_cfg,
        train,
        val,
        seed=seed,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        patience=patience,
        threads=cfg.threads,
        label_smoothing=cfg.label_smoothing,
        average=cfg.average,
        progress=progress,
    )


# ---------------------------------------------------------------- the run
def split_clips(cfg: TrainConfig) -> tuple[list[EmotionClip], dict[str, str]]:
    """The manifest's clips and the run's speaker split (cheap: no audio is read)."""
    clips = read_emotion_manifest(cfg.manifest)
    return clips, make_split(clips, seed=cfg.split_seed, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction)


def needs_recogniser(model_cfg: ModelConfig) -> bool:
    """Whether a model reads what only the recogniser's decoding gives (its transcript, or CTranslate2's states)."""
    return model_cfg.uses_text or (model_cfg.uses_audio and model_cfg.audio_input == "encoder")


def layer_source(cfg: TrainConfig, models: Sequence[ModelConfig] | None = None) -> tuple[str, Any] | None:
    """``(name, torch encoder)`` of ``cfg``'s recogniser when a model (default: ``cfg``'s) mixes encoder layers."""
    models = models if models is not None else [ModelConfig.from_dict(cfg.model)]
    if not any(m.audio_input == "layers" for m in models):
        return None
    from ..recognition.torch_encoder import load_encoder

    name = cfg.whisper_model or "tiny.en"
    return name, load_encoder(name)


def load_split_examples(
    cfg: TrainConfig,
    transcriber: Any,
    *,
    progress: bool = True,
    test: bool = True,
    models: Sequence[ModelConfig] | None = None,
) -> dict[str, Any]:
    """Clips, split and examples of a run: ``train`` (all versions), ``val`` and ``test`` (clean; none if not ``test``).

    The examples hold what ``models`` (default: ``cfg``'s) read: the recogniser runs only when one of them reads
    its output (:func:`needs_recogniser`), the torch encoder only when one mixes its layers.
    """
    clips, split = split_clips(cfg)
    models = models if models is not None else [ModelConfig.from_dict(cfg.model)]
    layers = layer_source(cfg, models)
    if not any(needs_recogniser(m) for m in models):
        transcriber = None
    part = {p: [c for c in clips if split[c.speaker] == p] for p in ("train", "val", "test")}
    versions = training_versions(
        part["train"], seed=cfg.seed, clean=cfg.clean_settings, augmented=cfg.augmented_versions
    )

    def examples(of: list[Version]) -> list[Example]:
        return build_examples(
            of,
            transcriber,
            cfg.cache,
            seed=cfg.seed,
            babble_pool=part["train"],
            progress=progress,
            layer_encoder=layers,
        )

    return {
        "clips": clips,
        "split": split,
        "train": examples(versions),
        "val": examples([Version(c, 0, False, DEFAULT_SETTING) for c in part["val"]]),
        "test": examples(
            [Version(c, 0, False, s) for s in (DEFAULT_SETTING, "uncompressed") for c in (part["test"] if test else [])]
        ),
    }


def text_feature_fn(model_cfg: ModelConfig, encoder: Any) -> Any:
    """``texts -> arrays`` for the text branch of ``model_cfg`` (zeros when the model reads no text)."""
    if not model_cfg.uses_text:
        return lambda texts: [np.zeros((1, model_cfg.text_dim), np.float32) for _ in texts]
    if model_cfg.text_input == "sentence":
        return lambda texts: [e[None, :] for e in encoder.embed(texts)]
    return encoder.tokens


def network_config(cfg: TrainConfig, text_dim: int, examples: Sequence[Example]) -> ModelConfig:
    """The network settings of ``cfg`` with the input widths of the text encoder and of ``examples``."""
    model_cfg = ModelConfig.from_dict({"text_dim": text_dim, **cfg.model})
    if model_cfg.audio_input == "encoder" and examples:
        return replace(model_cfg, audio_dim=int(examples[0].states.shape[1]))
    if model_cfg.audio_input == "layers":
        source = layer_source(cfg)
        assert source is not None
        depth = len(source[1].blocks) + 1
        return replace(model_cfg, audio_layers=depth, audio_dim=int(source[1].positions.shape[1]))
    if model_cfg.audio_input == "mel":
        return replace(model_cfg, audio_dim=get_preset("whisper").n_mels)
    return model_cfg


def cross_validate(
    cfg: TrainConfig, folds: int, *, progress: bool = True, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Speaker-fold cross-validation of ``cfg`` on its training and validation speakers (never its test speakers).

    Each fold holds out a group of speakers (:func:`speaker_folds`), trains one
    network (the config's first seed) on the others' versions for all
    ``cfg.epochs`` (no early stopping) and scores the held-out speakers' clean
    default-codec clips after every epoch.  Returns per-fold histories, the mean
    validation UAR per epoch, and the epoch count with the best mean: what to
    choose a configuration and a fixed epoch count by, on far more speakers
    than one validation split has.  ``data`` (``clips``: the non-test clips,
    ``examples``: their versions) skips the Whisper pass.
    """
    from ..recognition.whisper import Transcriber
    from .text import TextEncoder

    torch.set_num_threads(cfg.threads)
    # Without a validation split the run's training part is every non-test speaker (the test ones do not move).
    run_cfg = replace(cfg, val_fraction=0.0)
    if data is not None:
        clips, examples = data["clips"], data["examples"]
    else:
        every_clip, split = split_clips(run_cfg)
        clips, examples = [c for c in every_clip if split[c.speaker] == "train"], None
    fold_of = speaker_folds(clips, folds, seed=cfg.split_seed)  # a bad K is refused before the Whisper pass
    if examples is None:
        transcriber = Transcriber(model=cfg.whisper_model, beam_size=cfg.beam_size, threads=cfg.threads)
        examples = load_split_examples(run_cfg, transcriber, progress=progress, test=False)["train"]
    encoder = TextEncoder(cfg.text_encoder)
    model_cfg = replace(network_config(cfg, encoder.dim, examples), members=1)
    texts = text_feature_fn(model_cfg, encoder)
    histories = []
    for f in range(folds):
        held = [fold_of[e.version.clip.speaker] == f for e in examples]
        train_part = [e for e, h in zip(examples, held, strict=True) if not h]
        val_part = [
            e
            for e, h in zip(examples, held, strict=True)
            if h and not e.version.augmented and e.version.setting == DEFAULT_SETTING
        ]
        if progress:
            speakers = sorted({e.version.clip.speaker for e in val_part})
            print(f"fold {f + 1}/{folds}: {len(val_part)} clips of {', '.join(speakers)}", file=sys.stderr)
        _, history = fit_config(
            cfg,
            model_cfg,
            make_inputs(train_part, model_cfg, texts),
            make_inputs(val_part, model_cfg, texts),
            seed=cfg.seed,
            patience=cfg.epochs,
            progress=progress,
        )
        histories.append(history)
    mean_uar = [float(np.mean([h[e]["val_uar"] for h in histories])) for e in range(cfg.epochs)]
    return {
        "folds": folds,
        "histories": histories,
        "mean_val_uar": mean_uar,
        "best_epochs": int(np.argmax(mean_uar)) + 1,
        "fold_of": fold_of,
    }


def train(
    cfg: TrainConfig, *, progress: bool = True, data: dict[str, Any] | None = None, save: bool = True
) -> tuple[EmotionNet | EmotionEnsemble, dict[str, Any]]:
    """Run ``cfg`` end to end; write the checkpoint and split file when ``save``; returns the model and metadata."""
    from ..recognition.whisper import Transcriber
    from .text import TextEncoder

    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    transcriber = Transcriber(model=cfg.whisper_model, beam_size=cfg.beam_size, threads=cfg.threads)
    data = data or load_split_examples(cfg, transcriber, progress=progress)
    encoder = TextEncoder(cfg.text_encoder)
    model_cfg = network_config(cfg, encoder.dim, data["train"])
    texts = text_feature_fn(model_cfg, encoder)
    inputs = {k: make_inputs(data[k], model_cfg, texts) for k in ("train", "val", "test")}
    prepared = time.perf_counter()
    members, histories = [], []
    for k in range(model_cfg.members):  # a seed ensemble: member k is trained with seed + k
        if progress and model_cfg.members > 1:
            print(f"member {k + 1}/{model_cfg.members} (seed {cfg.seed + k})", file=sys.stderr)
        net, history = fit_config(
            cfg,
            replace(model_cfg, members=1),
            inputs["train"],
            inputs["val"],
            seed=cfg.seed + k,
            patience=cfg.patience,
            progress=progress,
        )
        members.append(net)
        histories.append(history)
    model = members[0] if model_cfg.members == 1 else EmotionEnsemble(model_cfg, members).eval()
    history = histories[0]
    test = inputs["test"]
    settings = [e.version.setting for e in data["test"]]
    probs = predict(model, test)
    metrics = {
        s: {k: v for k, v in scores(test.labels[m], probs[m].argmax(1)).items() if k != "confusion"}
        for s in (DEFAULT_SETTING, "uncompressed")
        for m in [np.array([x == s for x in settings])]
    }
    best = next((h for h in reversed(history) if h.get("best")), history[-1])
    meta = {
        "name": cfg.name,
        "labels": list(LABELS),
        "preset": get_preset("whisper").to_dict(),
        "audio_input": model_cfg.audio_input,
        "recogniser": transcriber.model_id,
        "recogniser_compute_type": transcriber.compute_type,
        "codec": {
            "default": SETTINGS[DEFAULT_SETTING],
            "clean_settings": cfg.clean_settings,
            "augmented_settings": sorted(SETTINGS),
        },
        "text_encoder": {"name": cfg.text_encoder, "dim": encoder.dim},
        "metrics": {
            "test": metrics,
            "best_epoch": best,
            "epochs_run": len(history),
            "members": [
                {
                    "seed": cfg.seed + k,
                    "best_epoch": next((h for h in reversed(hs) if h.get("best")), hs[-1]),
                    "epochs_run": len(hs),
                }
                for k, hs in enumerate(histories)
            ],
        },
        "manifest_sha256": manifest_digest(data["train"]),
        "split": {s: p for s, p in sorted(data["split"].items())},
        "train_config": asdict(cfg),
        "versions": {"amser_dsp": __version__, "torch": str(torch.__version__)},
        "seconds": {"prepare": prepared - started, "fit": time.perf_counter() - prepared},
    }
    if save:
        size = save_checkpoint(cfg.out, model, meta)
        write_split(data["split"], Path(cfg.out).with_suffix(".split.tsv"), data["clips"])
        if progress:
            print(f"wrote {cfg.out} ({size / 1e6:.2f} MB)", file=sys.stderr)
    return model, meta


def main(args: Any) -> int:  # ``amser train-emotion``
    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    if args.folds is not None and args.out:
        raise ConfigError(
            "--out goes without --folds (cross-validation writes no checkpoint; --json keeps its numbers)"
        )
    if args.out:
        cfg.out = args.out
    if args.folds is not None:
        result = cross_validate(cfg, args.folds)
        print("epoch | mean validation UAR % | per fold")
        for e, m in enumerate(result["mean_val_uar"]):
            per_fold = " ".join(f"{h[e]['val_uar']:.1f}" for h in result["histories"])
            print(f"{e + 1:5d} | {m:.1f} | {per_fold}")
        print(f"best: {result['best_epochs']} epochs, mean validation UAR {max(result['mean_val_uar']):.1f}%")
        if args.json:
            Path(args.json).write_text(json.dumps({"train_config": asdict(cfg), **result}, indent=1))
        return 0
    if args.json:
        raise ConfigError("--json goes with --folds (the training run itself writes a checkpoint)")
    _, meta = train(cfg)
    for setting, m in meta["metrics"]["test"].items():
        print(
            f"{setting}: accuracy {m['accuracy']:.1f}%, UAR {m['uar']:.1f}%, macro F1 {m['macro_f1']:.1f}% on {m['n']} held-out clips"
        )
    return 0
