"""Emotion data: the 4-class manifest, speaker splits, codec settings, and cached model inputs.

Every example goes the way the service's input goes: audio (augmented, for
training versions) -> ``whisper`` features -> container at a codec setting ->
decoded features -> Whisper, whose one encoder pass per window gives both the
encoder states the audio branch reads and the transcript the text branch reads.
That recogniser output is cached on disk, keyed by the model and the bytes of
the recogniser's input windows (like ``amser eval-asr``), so a change of codec,
tables, front end or augmentation can never reuse a stale entry.
"""

from __future__ import annotations

import csv
import hashlib
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ... import codec as codecs
from ...api import features
from ...config import get_preset
from ...errors import AmserError, ConfigError
from ...io import load_audio
from ..recognition.transcripts import input_digest
from ..recognition.whisper import Transcriber, window_features
from .augment import Augmenter

__all__ = [
    "DEFAULT_SETTING",
    "LABELS",
    "SETTINGS",
    "EmotionClip",
    "Example",
    "Version",
    "build_examples",
    "codec_features",
    "make_split",
    "read_emotion_manifest",
    "read_split",
    "speaker_folds",
    "training_versions",
    "write_split",
]

#: The four classes, in the order of the classifier's outputs.
LABELS = ("angry", "happy", "neutral", "sad")
SAMPLE_RATE = get_preset("whisper").sample_rate

#: Codec settings by name: keyword arguments of :func:`amser_dsp.encode` (the paper's sweep and ours).
SETTINGS: dict[str, dict[str, Any]] = {
    "uncompressed": {"codec": {"codec": "raw", "dtype": "float32"}},
    "kltdct default": {"codec": dict(codecs.DEFAULT_CODEC)},
    "kltdct 2 kbps": {"kbps": 2.0},
    "kltdct 3 kbps": {"kbps": 3.0},
    "kltdct 5 kbps": {"kbps": 5.0},
    "svd 12.5%": {"ratio": 0.125, "factor_dtype": "float16"},
    "svd 18.75%": {"ratio": 0.1875, "factor_dtype": "float16"},
    "svd 25%": {"ratio": 0.25, "factor_dtype": "float16"},
    "svd 50%": {"ratio": 0.5, "factor_dtype": "float16"},
    "svd 100%": {"ratio": 1.0, "factor_dtype": "float16"},
}
DEFAULT_SETTING = "kltdct default"


@dataclass(frozen=True)
class EmotionClip:
    """One row of the emotion manifest (4-class rows only)."""

    id: str
    path: Path
    corpus: str
    speaker: str
    gender: str
    label: str
    text: str


def read_emotion_manifest(path: str | Path, *, every_label: bool = False) -> list[EmotionClip]:
    """The clips of ``manifest.tsv`` whose label is one of :data:`LABELS` (``in_4class`` = 1), or every clip.

    ``every_label`` keeps the corpus's other emotions too (calm, boredom, fear, disgust: their own names).

    Raises
    ------
    AmserError
        If the file lacks a needed column or holds no 4-class clip.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    need = {"id", "path", "corpus", "speaker", "label", "in_4class"}
    if not rows or not need <= set(rows[0]):
        raise AmserError(f"{path} is not an emotion manifest: expected the columns {sorted(need)}")
    clips = [
        EmotionClip(
            r["id"],
            path.parent / r["path"],
            r["corpus"],
            r["speaker"],
            r.get("gender", ""),
            r["label"],
            r.get("text", ""),
        )
        for r in rows
        if every_label or (r["in_4class"] == "1" and r["label"] in LABELS)
    ]
    if not clips:
        raise AmserError(f"{path} has no clips{'' if every_label else ' labelled ' + ', '.join(LABELS)}")
    return clips


# ------------------------------------------------------------------- splits
def _speaker_groups(clips: Sequence[EmotionClip]) -> dict[tuple[str, str], list[str]]:
    """(corpus, gender) -> its speakers, in order of first appearance."""
    groups: dict[tuple[str, str], list[str]] = {}
    for c in clips:
        speakers = groups.setdefault((c.corpus, c.gender), [])
        if c.speaker not in speakers:
            speakers.append(c.speaker)
    return groups


def make_split(
    clips: Sequence[EmotionClip], *, seed: int = 0, test_fraction: float = 0.3, val_fraction: float = 0.15
) -> dict[str, str]:
    """Speaker -> ``train``, ``val`` or ``test``: seeded, by speaker only, per corpus and gender.

    Within each (corpus, gender) group the speakers are shuffled with ``seed``
    and the first ``test_fraction`` of them (rounded, at least one) go to test,
    the next ``val_fraction`` to validation (early stopping; none when it is 0),
    the rest to training.
    """
    groups = _speaker_groups(clips)
    split = {}
    for key in sorted(groups):
        speakers = sorted(groups[key])
        order = np.random.default_rng([seed, zlib.crc32("/".join(key).encode())]).permutation(len(speakers))
        n_test = max(1, round(test_fraction * len(speakers)))
        n_val = max(1, round(val_fraction * len(speakers))) if val_fraction > 0 and len(speakers) > n_test + 1 else 0
        for rank, i in enumerate(order):
            split[speakers[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split


def speaker_folds(clips: Sequence[EmotionClip], k: int, *, seed: int = 0) -> dict[str, int]:
    """Speaker -> fold (0 to ``k - 1``): seeded, by speaker only, each (corpus, gender) group dealt round the folds."""
    groups = _speaker_groups(clips)
    n_speakers = sum(len(g) for g in groups.values())
    if not 2 <= k <= n_speakers:
        raise ConfigError(f"{k} folds: expected 2 to the number of speakers ({n_speakers})")
    fold, dealt = {}, 0
    for key in sorted(groups):
        speakers = sorted(groups[key])
        order = np.random.default_rng([seed, zlib.crc32("/".join(key).encode()), 1]).permutation(len(speakers))
        for i in order:  # continue dealing where the last group stopped, so folds stay even
            fold[speakers[i]] = dealt % k
            dealt += 1
    return fold


def write_split(split: dict[str, str], path: str | Path, clips: Sequence[EmotionClip]) -> None:
    """Write the split as TSV (speaker, corpus, part, clips)."""
    counts: dict[str, int] = {}
    corpus = {}
    for c in clips:
        counts[c.speaker] = counts.get(c.speaker, 0) + 1
        corpus[c.speaker] = c.corpus
    lines = ["speaker\tcorpus\tpart\tclips"]
    lines += [f"{s}\t{corpus.get(s, '')}\t{split[s]}\t{counts.get(s, 0)}" for s in sorted(split)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")


def read_split(path: str | Path) -> dict[str, str]:
    """The speaker -> part map written by :func:`write_split`."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    bad = [r for r in rows if r.get("part") not in ("train", "val", "test")]
    if not rows or bad:
        raise AmserError(f"{path} is not a split file (speaker, corpus, part in train/val/test)")
    return {r["speaker"]: r["part"] for r in rows}


# ----------------------------------------------------------------- examples
@dataclass(frozen=True)
class Version:
    """One way a clip reaches the server: clean or augmented (``index`` seeds it), at a codec setting."""

    clip: EmotionClip
    index: int
    augmented: bool
    setting: str


@dataclass
class Example:
    """What the classifier reads for one version: encoder states, decoded log-Mel, transcript, every layer's states.

    ``states`` and ``text`` are empty when the examples were built without the recogniser (a model that reads
    neither), ``layers`` is None when they were built without the torch encoder.
    """

    version: Version
    states: np.ndarray  # (frames, d) float16, Whisper encoder output over the clip's frames
    mel: np.ndarray  # (80, T) float16, the decoded features
    text: str
    layers: np.ndarray | None = None  # (frames, layers * d) float16, every encoder layer on the clip's own frames

    @property
    def label(self) -> int:
        return LABELS.index(self.version.clip.label)


def codec_features(audio: np.ndarray, setting: str) -> np.ndarray:
    """``whisper`` features of ``audio`` through a container at the codec ``setting`` and back.

    Computed by the NumPy reference back end: the recogniser cache is keyed by
    these bytes, and a faster kernel's last-bit differences (which vary with
    the CPU and the kernel's revision) would otherwise invalidate every entry.
    """
    if setting not in SETTINGS:
        raise ConfigError(f"unknown codec setting {setting!r}; known: {sorted(SETTINGS)}")
    cfg = get_preset("whisper")
    mel = features(audio, SAMPLE_RATE, cfg, backend="numpy")
    return codecs.decode(codecs.encode(mel, config=cfg, **SETTINGS[setting]))


def training_versions(
    clips: Sequence[EmotionClip],
    *,
    seed: int,
    clean: Sequence[str] = (DEFAULT_SETTING, "uncompressed"),
    augmented: int = 2,
    weights: dict[str, float] | None = None,
) -> list[Version]:
    """Per clip: one clean version at each of ``clean`` settings, and ``augmented`` augmented versions.

    An augmented version's codec setting is drawn (seeded per clip) from
    :data:`SETTINGS` with ``weights`` (default: the default codec 3, the rest 1).
    """
    weights = weights or {name: 3.0 if name == DEFAULT_SETTING else 1.0 for name in SETTINGS}
    names = sorted(weights)
    p = np.array([weights[n] for n in names], float)
    out = []
    for clip in clips:
        out += [Version(clip, i, False, s) for i, s in enumerate(clean)]
        rng = np.random.default_rng([seed, zlib.crc32(clip.id.encode()), 1])
        for k in range(augmented):
            out.append(Version(clip, len(clean) + k, True, names[rng.choice(len(names), p=p / p.sum())]))
    return out


def model_key(transcriber: Transcriber) -> str:
    """The recogniser's identity in cache keys (model files, arithmetic, beam, how transcripts are decoded)."""
    return f"{transcriber.key}|states"


def build_examples(
    versions: Sequence[Version],
    transcriber: Transcriber | None,
    cache: str | Path,
    *,
    seed: int = 0,
    augmenter: Augmenter | None = None,
    babble_pool: Sequence[EmotionClip] = (),
    progress: bool = True,
    batch: int = 16,
    layer_encoder: tuple[str, Any] | None = None,
) -> list[Example]:
    """Examples of ``versions``, computing on cache misses only (in batches of ``batch`` clips).

    Augmented versions draw from ``np.random.default_rng([seed, crc32(clip id), index])``;
    babble comes from ``babble_pool`` (other training clips).  ``transcriber`` None skips the recogniser
    (no states, no transcript: for a model that reads neither).  ``layer_encoder`` (its name in cache keys,
    a :class:`~amser_dsp.server.recognition.torch_encoder.WhisperEncoder`) adds every encoder layer's states
    (:func:`~.network.encoder_layer_states`, cached the same way).
    """
    augmenter = augmenter or Augmenter()
    cache = Path(cache)
    key = model_key(transcriber) if transcriber is not None else None
    cfg = get_preset("whisper")
    audio: dict[str, np.ndarray] = {}

    def load(clip: EmotionClip) -> np.ndarray:
        if clip.id not in audio:
            audio[clip.id] = load_audio(clip.path, sample_rate=SAMPLE_RATE)
        return audio[clip.id]

    pool_ids = [c.id for c in babble_pool]
    out: list[Example | None] = [None] * len(versions)
    start, computed = time.perf_counter(), 0
    for lo in range(0, len(versions), batch):
        todo = []
        for i in range(lo, min(lo + batch, len(versions))):
            v = versions[i]
            x = load(v.clip)
            if v.augmented:
                rng = np.random.default_rng([seed, zlib.crc32(v.clip.id.encode()), v.index])
                others = [load(c) for c, cid in zip(babble_pool, pool_ids, strict=True) if cid != v.clip.id]
                x = augmenter(x, rng, others)
            mel = codec_features(x, v.setting)
            windows = window_features(mel, cfg)
            layers = None
            if layer_encoder is not None:
                layers, fresh = _cached_layers(layer_encoder, mel, windows, cache)
                computed += fresh and key is None  # with the recogniser, its misses are what is counted
            if key is None:
                out[i] = Example(v, np.zeros((0, 1), np.float16), mel.astype(np.float16), "", layers)
                continue
            digest = input_digest(key, windows)
            path = cache / digest[:2] / f"{digest[2:40]}.npz"
            if path.exists():
                with np.load(path) as z:
                    out[i] = Example(v, z["states"], mel.astype(np.float16), str(z["text"]), layers)
            else:
                todo.append((i, mel, path, layers))
        if todo and transcriber is not None:
            results = transcriber.transcribe_with_states([m for _, m, _, _ in todo])
            for (i, mel, path, layers), (text, states) in zip(todo, results, strict=True):
                states16 = states.astype(np.float16)
                _save(path, states=states16, text=np.array(text))
                out[i] = Example(versions[i], states16, mel.astype(np.float16), text, layers)
            computed += len(todo)
        if progress:
            done = min(lo + batch, len(versions))
            rate = computed / max(time.perf_counter() - start, 1e-9)
            print(
                f"\rexamples {done}/{len(versions)} ({computed} computed, {rate:.2f}/s)",
                end="" if done < len(versions) else "\n",
                file=sys.stderr,
                flush=True,
            )
    return [e for e in out if e is not None]


def _save(path: Path, **arrays: Any) -> None:
    """Write a cache entry atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, allow_pickle=False, **arrays)
    tmp.replace(path)


def _cached_layers(
    layer_encoder: tuple[str, Any], mel: np.ndarray, windows: Any, cache: Path
) -> tuple[np.ndarray, bool]:
    """Every encoder layer's states of ``mel`` (float16), from the cache or computed and stored; whether computed."""
    from .network import encoder_layer_states

    name, encoder = layer_encoder
    digest = input_digest(f"{name}|torch layers|{mel.shape[1]}", windows)
    path = cache / "layers" / digest[:2] / f"{digest[2:40]}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["layers"], False
    layers = encoder_layer_states(encoder, [mel])[0].astype(np.float16)
    _save(path, layers=layers)
    return layers, True


def manifest_digest(examples: Sequence[Example]) -> str:
    """SHA-256 over the training examples' identities (clip, version, setting, label): the checkpoint's data hash."""
    digest = hashlib.sha256()
    for e in examples:
        v = e.version
        digest.update(f"{v.clip.id}\t{v.index}\t{int(v.augmented)}\t{v.setting}\t{v.clip.label}\n".encode())
    return digest.hexdigest()
