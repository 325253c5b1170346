"""EmoBox's fold protocol on the shared emotion data (``amser eval-emotion --protocol emobox``).

EmoBox (Ma et al., Interspeech 2024) scores frozen speech encoders with a small downstream model on published
folds: RAVDESS 8 classes in 6 folds of 4 actors, EmoDB 7 classes in 5 folds.  Its fold lists are vendored in
``data/emobox-folds.json`` (every test fold's clip keys and labels, from ``data/{corpus}/fold_{k}/`` of the
commit named in the file) and mapped onto our clips by file name.  Our data cannot reproduce the protocol
exactly, and every table this module writes says so:

- RAVDESS: only actors 01-18 and 5 of its 8 emotions (neutral, calm, happy, sad, angry; no fearful, disgust,
  surprised), so it is a 5-class task (chance and difficulty differ from the leaderboard's 8 classes) and
  four of the six folds lack some of their actors (actors 19-24);
- EmoDB: all 7 classes but 408 of 535 clips (8 of 10 speakers), cut or padded to 2.0 s by a third party.
  EmoBox's EmoDB folds are its corpus's ``cv_k_fold`` lists, which are *not* speaker-disjoint: every fold
  holds clips of every speaker.  They are reproduced as published.

Fold models are evaluation only (never shipped): the model configuration of the checkpoint being evaluated,
one network per fold, trained on the fold's training clips at every scored codec setting (clean, no
augmentation, a fixed epoch count) and scored on its test clips at each setting.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...backends.variants import cpu_model
from ...errors import AmserError
from .data import DEFAULT_SETTING, EmotionClip, Version, build_examples, read_emotion_manifest
from .network import ModelConfig
from .train import (
    TrainConfig,
    fit_config,
    layer_source,
    make_inputs,
    needs_recogniser,
    network_config,
    predict,
    scores,
    text_feature_fn,
)

__all__ = [
    "FOLDS_FILE",
    "LEADERBOARD",
    "CorpusFolds",
    "emobox_key",
    "map_folds",
    "protocol_report",
    "read_folds",
    "run_protocol",
]

FOLDS_FILE = Path(__file__).resolve().parent / "data" / "emobox-folds.json"

#: EmoBox's labels -> the manifest's (EmoDB's list spells boredom "boredem").
EMOBOX_LABELS = {
    "anger": "angry",
    "Angry": "angry",
    "boredem": "boredom",
    "Calm": "calm",
    "disgust": "disgust",
    "Disgust": "disgust",
    "fear": "fear",
    "Fearful": "fear",
    "happy": "happy",
    "Happy": "happy",
    "neutral": "neutral",
    "Neutral": "neutral",
    "sad": "sad",
    "Sad": "sad",
    "Surprised": "surprised",
}

#: EmoBox leaderboard, weighted accuracy (%) on its full class sets and speakers (RAVDESS 8 classes, 24 actors;
#: EmoDB 7 classes, 535 clips): encoders that see the audio, not codec-compressed Whisper features.
LEADERBOARD: dict[str, dict[str, float]] = {
    "ravdess": {"Whisper-large-v3": 75.87, "WavLM-large": 72.22, "HuBERT-large": 70.29, "HuBERT-base": 66.21},
    "emodb": {"Whisper-large-v3": 92.43, "WavLM-large": 92.67, "HuBERT-large": 90.26, "HuBERT-base": 87.73},
}


def emobox_key(clip: EmotionClip) -> str:
    """The EmoBox key of a manifest clip (``ravdess_03-01-...`` -> ``ravdess-03-01-...``)."""
    return clip.id.replace("_", "-", 1)


def _speaker(corpus: str, key: str) -> str:
    """The manifest's speaker name of an EmoBox key (RAVDESS: the actor, the key's last field; EmoDB: its first two digits)."""
    stem = key.split("-", 1)[1]
    return f"{corpus}_{stem[-2:] if corpus == 'ravdess' else stem[:2]}"


def read_folds(path: str | Path = FOLDS_FILE) -> dict[str, Any]:
    """The vendored fold lists: ``source``, and per corpus ``test_folds`` (a list of {key: EmoBox label})."""
    try:
        data = json.loads(Path(path).read_text())
        data["corpora"]["ravdess"]["test_folds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AmserError(f"{path} is not an EmoBox fold list: {exc}") from None
    return data


@dataclass(frozen=True)
class CorpusFolds:
    """EmoBox's folds of one corpus mapped onto our clips.

    ``labels``: the classes present here (EmoBox's order of first appearance is not kept: sorted);
    ``emobox_labels``: EmoBox's class set; ``test[k]`` / ``train[k]``: our clips of fold k (0-based);
    ``listed[k]``: how many clips EmoBox's fold k lists; ``speakers[k]``: EmoBox's speakers of that fold.
    """

    corpus: str
    labels: tuple[str, ...]
    emobox_labels: tuple[str, ...]
    test: list[list[EmotionClip]]
    train: list[list[EmotionClip]]
    listed: list[int]
    speakers: list[list[str]]

    @property
    def speaker_disjoint(self) -> bool:
        """Whether no fold's test speakers appear in its training clips."""
        return all(
            not {c.speaker for c in t} & {c.speaker for c in r} for t, r in zip(self.test, self.train, strict=True)
        )


def map_folds(clips: Sequence[EmotionClip], folds: dict[str, Any] | None = None) -> dict[str, CorpusFolds]:
    """EmoBox's test folds (``folds``: :func:`read_folds`) over ``clips`` (every label: ``read_emotion_manifest(..., every_label=True)``).

    Every clip of a corpus EmoBox covers lands in exactly one test fold; it trains in the others.

    Raises
    ------
    AmserError
        If a clip is in no EmoBox fold, or EmoBox labels it otherwise than the manifest does (a wrong mapping).
    """
    folds = folds if folds is not None else read_folds()
    out = {}
    for corpus, spec in folds["corpora"].items():
        fold_of, label_of = {}, {}
        for k, listed in enumerate(spec["test_folds"]):
            for key, label in listed.items():
                fold_of[key], label_of[key] = k, EMOBOX_LABELS.get(label, label)
        ours = [c for c in clips if c.corpus == corpus]
        if not ours:
            continue
        unlisted = [c.id for c in ours if emobox_key(c) not in fold_of]
        if unlisted:
            raise AmserError(f"{len(unlisted)} {corpus} clips are in no EmoBox fold (first: {unlisted[0]})")
        wrong = [c.id for c in ours if label_of[emobox_key(c)] != c.label]
        if wrong:
            raise AmserError(
                f"EmoBox labels {len(wrong)} {corpus} clips otherwise than the manifest (first: {wrong[0]})"
            )
        n = len(spec["test_folds"])
        test: list[list[EmotionClip]] = [[] for _ in range(n)]
        for c in ours:
            test[fold_of[emobox_key(c)]].append(c)
        out[corpus] = CorpusFolds(
            corpus,
            tuple(sorted({c.label for c in ours})),
            tuple(sorted(set(label_of.values()))),
            test,
            [[c for c in ours if fold_of[emobox_key(c)] != k] for k in range(n)],
            [len(f) for f in spec["test_folds"]],
            [sorted({_speaker(corpus, key) for key in f}) for f in spec["test_folds"]],
        )
    return out


def run_protocol(
    cfg: TrainConfig,
    *,
    settings: Sequence[str] = (DEFAULT_SETTING, "uncompressed"),
    epochs: int | None = None,
    corpora: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and score one fold model per EmoBox fold of each corpus; returns the rows and what differs.

    ``cfg``'s model settings (one network, the first seed) and optimisation, ``epochs`` (default ``cfg.epochs``)
    per fold, no validation split; each fold model trains on its training clips at every one of ``settings``
    and is scored at each.  Weighted accuracy (EmoBox's WA) is the overall accuracy, unweighted (UA) the mean
    per-class recall.
    """
    from ..recognition.whisper import Transcriber
    from .text import TextEncoder

    epochs = epochs or cfg.epochs
    cfg = replace(cfg, epochs=epochs)
    folds = read_folds()
    mapped = map_folds(read_emotion_manifest(cfg.manifest, every_label=True), folds)
    if corpora is not None:
        unknown = sorted(set(corpora) - set(mapped))
        if unknown:
            raise AmserError(f"no EmoBox folds for {unknown} in {cfg.manifest}; there are {sorted(mapped)}")
        mapped = {k: v for k, v in mapped.items() if k in corpora}
    base = ModelConfig.from_dict(cfg.model)
    transcriber = (
        Transcriber(model=cfg.whisper_model, beam_size=cfg.beam_size, threads=cfg.threads)
        if needs_recogniser(base)
        else None
    )
    layers = layer_source(cfg)
    encoder = TextEncoder(cfg.text_encoder)
    result: dict[str, Any] = {"source": folds["source"], "cpu": cpu_model(), "epochs": epochs, "corpora": {}}
    for corpus, cf in mapped.items():
        every = [c for fold in cf.test for c in fold]
        examples = build_examples(
            [Version(c, 0, False, s) for s in settings for c in every],
            transcriber,
            cfg.cache,
            seed=cfg.seed,
            progress=progress,
            layer_encoder=layers,
        )
        model_cfg = replace(network_config(cfg, encoder.dim, examples), members=1, n_classes=len(cf.labels))
        texts = text_feature_fn(model_cfg, encoder)
        rows = []
        for k, (test, train) in enumerate(zip(cf.test, cf.train, strict=True)):
            if not test:
                rows.append({"fold": k + 1, "clips": 0, "listed": cf.listed[k]})
                continue
            held = {c.id for c in test}
            train_ex = [e for e in examples if e.version.clip.id not in held]
            if progress:
                print(f"{corpus} fold {k + 1}/{len(cf.test)}: {len(test)} test clips", file=sys.stderr)
            start = time.perf_counter()
            net, _ = fit_config(
                cfg,
                model_cfg,
                make_inputs(train_ex, model_cfg, texts, cf.labels),
                None,
                seed=cfg.seed,
                patience=epochs,
                progress=progress,
            )
            seconds = time.perf_counter() - start
            row: dict[str, Any] = {
                "fold": k + 1,
                "clips": len(test),
                "listed": cf.listed[k],
                "train_clips": len(train),
                "speakers": sorted({c.speaker for c in test}),
                "emobox_speakers": cf.speakers[k],
                "fit_seconds": seconds,
            }
            for s in settings:
                part = [e for e in examples if e.version.clip.id in held and e.version.setting == s]
                inputs = make_inputs(part, model_cfg, texts, cf.labels)
                sc = scores(inputs.labels, predict(net, inputs).argmax(1), len(cf.labels))
                row[s] = {"wa": sc["accuracy"], "ua": sc["uar"], "n": sc["n"], "confusion": sc["confusion"]}
            rows.append(row)
        result["corpora"][corpus] = {
            "labels": list(cf.labels),
            "emobox_labels": list(cf.emobox_labels),
            "speaker_disjoint": cf.speaker_disjoint,
            "clips": len(every),
            "listed": sum(cf.listed),
            "folds": rows,
        }
    result["settings"] = list(settings)
    return result


def _summary(rows: list[dict[str, Any]], setting: str) -> tuple[float, float, float]:
    """Mean over folds of WA and UA, and the pooled WA (all test clips together)."""
    done = [r for r in rows if r.get("clips")]
    wa = float(np.mean([r[setting]["wa"] for r in done]))
    ua = float(np.mean([r[setting]["ua"] for r in done]))
    pooled = sum(r[setting]["wa"] * r[setting]["n"] for r in done) / max(sum(r[setting]["n"] for r in done), 1)
    return wa, ua, pooled


def differences(corpus: str, entry: dict[str, Any]) -> str:
    """What separates this run from EmoBox's leaderboard on ``corpus``, in one paragraph."""
    ours, theirs = entry["labels"], entry["emobox_labels"]
    missing = sorted(set(theirs) - set(ours))
    disjoint = "speaker-disjoint" if entry["speaker_disjoint"] else "not speaker-disjoint (as EmoBox publishes them)"
    text = (
        f"{corpus}: {len(ours)} of EmoBox's {len(theirs)} classes ({', '.join(ours)}"
        + (f"; missing {', '.join(missing)}" if missing else "")
        + f"), {entry['clips']} of the {entry['listed']} clips its folds list; folds {disjoint}."
    )
    if missing:
        text += (
            f" A {len(ours)}-class task is not the leaderboard's {len(theirs)}-class one (chance "
            f"{100 / len(ours):.0f}% against {100 / len(theirs):.1f}%, and which classes get confused changes with "
            "the class set): the leaderboard rows below are context, not a comparison."
        )
    elif entry["clips"] < entry["listed"]:
        text += " The same classes on a subset of the clips: near the leaderboard's task, not the same one."
    return text


def protocol_report(result: dict[str, Any], command: str) -> str:
    """The fold-by-fold markdown: per corpus a table per fold and setting, the means, and the leaderboard beside."""
    settings = result["settings"]
    lines = [
        "## EmoBox protocol (fold models: evaluation only, never shipped)",
        "",
        f"Command: `{command}`. Folds: EmoBox's published test lists ({result['source']}), mapped onto the shared "
        f"clips by file name. One network per fold ({result['epochs']} epochs, the model and optimisation settings of "
        "the given config or checkpoint, trained on the fold's training clips at every scored setting, clean, no "
        "augmentation), scored at each setting. "
        "WA: weighted accuracy (EmoBox's, the overall accuracy); UA: unweighted average recall. "
        f"CPU: {result['cpu']} (2 vCPU, shared with other jobs; 1 training thread).",
        "",
        *([result["note"], ""] if result.get("note") else []),
    ]
    for corpus, entry in result["corpora"].items():
        lines += [f"### {corpus}", "", differences(corpus, entry), ""]
        head = "| fold | test speakers here (EmoBox's) | clips here / listed | "
        head += " | ".join(f"WA {s} | UA {s}" for s in settings) + " | fit s |"
        lines += [head, "|---|---|---:|" + "---:|---:|" * len(settings) + "---:|"]
        for r in entry["folds"]:
            if not r.get("clips"):
                lines.append(f"| {r['fold']} | none here | 0 / {r['listed']} |" + " - | - |" * len(settings) + " - |")
                continue
            here = ", ".join(s.split("_")[1] for s in r["speakers"])
            theirs = len(r["emobox_speakers"])
            cells = " | ".join(f"{r[s]['wa']:.1f} | {r[s]['ua']:.1f}" for s in settings)
            lines.append(
                f"| {r['fold']} | {here} ({len(r['speakers'])} of {theirs}) | {r['clips']} / {r['listed']} | {cells} | {r['fit_seconds']:.0f} |"
            )
        means = [_summary(entry["folds"], s) for s in settings]
        cells = " | ".join(f"**{wa:.1f}** | **{ua:.1f}**" for wa, ua, _ in means)
        lines.append(f"| mean of folds | | {entry['clips']} / {entry['listed']} | {cells} | |")
        pooled_cells = [c for _, _, pooled in means for c in (f"{pooled:.1f}", "")]
        lines.append("| " + " | ".join(["all test clips pooled (WA)", "", "", *pooled_cells, ""]) + " |")
        n_ours, n_theirs = len(entry["labels"]), len(entry["emobox_labels"])
        label = (
            f"{n_theirs} classes, all speakers: a different class set from the rows above"
            if n_ours != n_theirs
            else f"{n_theirs} classes, all {entry['listed']} clips"
        )
        for name, wa in LEADERBOARD.get(corpus, {}).items():
            lines.append(f"| EmoBox leaderboard: {name} ({label}) | | | {wa:.2f} |" + " |" * (2 * len(settings)))
        lines.append("")
    return "\n".join(lines)
