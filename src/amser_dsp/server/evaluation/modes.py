"""The ways of getting features to the recogniser that the WER evaluation compares (``amser eval-asr``)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import codec as codecs
from ...api import features
from ...config import get_preset
from ...errors import AmserError
from ...io import load_audio
from ..recognition.whisper import WINDOW_FRAMES, decode_for_whisper

__all__ = [
    "KLTDCT_KBPS",
    "KLTDCT_STEPS",
    "SAMPLE_RATE",
    "Clip",
    "Mode",
    "audio_features",
    "container_mode",
    "default_modes",
    "held_out_tables",
    "kltdct_mode",
    "learned_modes",
    "opus_mode",
    "opus_roundtrip",
    "read_asr_manifest",
]

SAMPLE_RATE = get_preset("whisper").sample_rate


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    text: str
    speaker: str


@dataclass
class Mode:
    """One way of getting features to the recogniser.

    ``run(clip, audio) -> (features, n_bytes)`` returns the ``(80, T)`` features
    the recogniser decodes and the bytes sent (None for the reference).
    Transcripts are cached by the features themselves, so a mode needs no
    cache key of its own.
    """

    name: str
    family: str
    run: Callable[[Clip, np.ndarray], tuple[np.ndarray, int | None]]
    results: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    #: For container modes: ``(clip, audio) -> container`` (what ``run`` decodes).
    encode: Callable[[Clip, np.ndarray], bytes] | None = None


def audio_features(audio: np.ndarray) -> np.ndarray:
    """openai-whisper's input: the log-Mel of the audio followed by 30 s of zeros, over the audio's frames.

    The zeros set the last frames' spectra and take part in the dynamic-range clamp, as in
    openai-whisper; the recogniser pads every window with the same silence (``silence_value``).
    """
    cfg = get_preset("whisper")
    padded = np.concatenate([audio, np.zeros(WINDOW_FRAMES * cfg.hop_length, np.float32)])
    return np.ascontiguousarray(features(padded, SAMPLE_RATE, cfg)[:, : cfg.num_frames(audio.size)])


def container_mode(name: str, family: str, codec: dict | Callable[[Clip], dict]) -> Mode:
    """Features encoded into a container with ``codec`` (or ``codec(clip)``) and decoded, as the service gets them."""
    cfg = get_preset("whisper")
    codec_for = codec if callable(codec) else lambda clip: codec

    def encode(clip: Clip, audio: np.ndarray) -> bytes:
        return codecs.encode(features(audio, SAMPLE_RATE, cfg), config=cfg, codec=codec_for(clip))

    def run(clip: Clip, audio: np.ndarray) -> tuple[np.ndarray, int | None]:
        blob = encode(clip, audio)
        return codecs.decode(blob), len(blob)

    return Mode(name, family, run, encode=encode)


#: Step indices of the kltdct modes (about 1 to 16 kbps) and the rate-controlled targets (0.5 to 4 kbps).
KLTDCT_STEPS = (-32, -28, -24, -20, -16, -12, -8, -4, 0, 2, 4, 6, 8, 12, 16)
KLTDCT_KBPS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def kltdct_mode(
    label: str, params: dict, fold_tables: Sequence[codecs.kltdct.KltDctTables] | None, folds: dict
) -> Mode:
    """The kltdct codec with ``params``; out of fold when ``fold_tables`` is given.

    With ``fold_tables`` trained on speaker-disjoint folds (``amser
    train-codec --exclude-fold i/K``), each clip is coded with tables
    that never saw it (``folds``: :func:`held_out_tables`); without, with the
    shipped tables (trained on every clip: in-sample).
    """
    codec = {"codec": "kltdct", **params}
    if not fold_tables:
        return container_mode(label + " (in-sample tables)", "kltdct", codec)
    for tables in fold_tables:
        codecs.register_tables(tables)
    names = [t.name for t in fold_tables]
    return container_mode(label + " (out of fold)", "kltdct", lambda clip: {**codec, "tables": names[folds[clip.id]]})


def learned_modes(modes: Sequence[Mode], decoders: Sequence, folds: dict) -> list[Mode]:
    """Each kltdct mode again, its containers decoded by the learned decoder that never saw the clip.

    ``decoders`` are :class:`~..recognition.learned_decoder.LearnedDecoder` objects trained out of fold
    (``amser train-decoder --exclude-fold I/K``); ``folds`` maps a clip to the one that excludes it, and its
    tables must be the ones the clip is coded with.
    """
    out = []
    for mode in modes:
        if mode.family != "kltdct":
            continue

        def run(clip: Clip, audio: np.ndarray, mode: Mode = mode) -> tuple[np.ndarray, int | None]:
            assert mode.encode is not None  # every kltdct mode is a container mode
            blob = mode.encode(clip, audio)
            decoder = decoders[folds[clip.id]]
            tables = codecs.inspect(blob).codec.get("tables")
            if decoder.meta.get("tables") != tables:
                raise AmserError(
                    f"clip {clip.id} is coded with tables {tables!r}; its decoder was trained on "
                    f"{decoder.meta.get('tables')!r}"
                )
            return decode_for_whisper(blob, decoder=decoder).features, len(blob)

        out.append(Mode(mode.name + " + learned decoder", "kltdct learned", run))
    return out


def held_out_tables(clips: Sequence[Clip], fold_tables: Sequence) -> dict[str, int]:
    """Clip id -> index of a table set whose training clips (``meta["clips"]``) exclude it."""
    seen = [set(t.meta.get("clips", ())) for t in fold_tables]
    out = {}
    for clip in clips:
        unseen = [i for i, ids in enumerate(seen) if clip.id not in ids]
        if not unseen:
            raise AmserError(f"clip {clip.id} was in the training data of every file given (--fold-tables, --decoders)")
        out[clip.id] = unseen[0]
    return out


def opus_roundtrip(path: Path, kbps: int) -> tuple[np.ndarray, int]:
    """Audio of ``path`` through Opus (ffmpeg libopus, VoIP tuning, 16 kHz mono) and back: samples and Opus bytes."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AmserError("the Opus comparison needs ffmpeg (apt-get install ffmpeg)")
    with tempfile.TemporaryDirectory() as tmp:
        opus, wav = Path(tmp) / "a.opus", Path(tmp) / "b.wav"
        common = [ffmpeg, "-nostdin", "-loglevel", "error", "-y"]
        encode = ["-i", str(path), "-ac", "1", "-ar", "16000", "-c:a", "libopus", "-b:a", f"{kbps}k"]
        subprocess.run([*common, *encode, "-application", "voip", str(opus)], check=True)
        subprocess.run([*common, "-i", str(opus), "-ac", "1", "-ar", "16000", str(wav)], check=True)
        return load_audio(wav), opus.stat().st_size


def opus_mode(kbps: int) -> Mode:
    """Audio through Opus and back (:func:`opus_roundtrip`), then the audio path."""

    def run(clip: Clip, audio: np.ndarray) -> tuple[np.ndarray, int | None]:
        decoded, size = opus_roundtrip(clip.path, kbps)
        return audio_features(decoded[: audio.size]), size

    return Mode(f"Opus {kbps} kbps (voip)", "opus", run)


def default_modes(fold_tables: Sequence | None = None, folds: dict | None = None) -> list[Mode]:
    """The modes of docs/fidelity.md: reference, uncompressed, SVD ranks x dtypes, kltdct steps, Opus bitrates."""
    modes = [
        Mode(
            "audio path (reference)",
            "reference",
            lambda clip, audio: (audio_features(audio), None),
        ),
        container_mode("uncompressed features (float32)", "uncompressed", {"codec": "raw", "dtype": "float32"}),
        container_mode("features float16", "raw", {"codec": "raw", "dtype": "float16"}),
    ]
    grid = [(r, d) for r in (5, 10, 15, 20, 30, 40) for d in ("float16", "int8")]
    grid += [(r, "int8") for r in (12, 14, 16, 18)]  # finer where the 1-point boundary lies
    for rank, dtype in sorted(grid):
        ratio = rank / 80
        label = f"SVD rank {rank} of 80 ({ratio:g}), {dtype}"
        if rank == 10 and dtype == "float16":
            label += " (the paper's setting)"
        codec = {"codec": "svd", "ratio": ratio, "rank": None, "energy": None, "factor_dtype": dtype, "entropy": "zlib"}
        modes.append(container_mode(label, f"svd {dtype}", codec))
    for step in KLTDCT_STEPS:
        modes.append(kltdct_mode(f"KLT-DCT step {step}", {"step": step}, fold_tables, folds or {}))
    for kbps in KLTDCT_KBPS:
        modes.append(kltdct_mode(f"KLT-DCT kbps={kbps:g} (rate control)", {"kbps": kbps}, fold_tables, folds or {}))
    modes += [opus_mode(k) for k in (6, 8, 12, 16, 24)]
    return modes


def read_asr_manifest(path: Path, limit: int | None = None) -> list[Clip]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))[:limit]
    return [Clip(r["id"], path.parent / r["path"], r["text"], r.get("speaker", r["id"])) for r in rows]
