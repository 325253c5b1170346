"""Word error rate of Whisper on compressed features, against audio codecs (``amser eval-asr``).

Every mode goes through the same recogniser; the reference is the audio path
(openai-whisper's own input: the log-Mel of the audio followed by 30 s of
silence).  Transcripts are cached per (model, mode, clip) under ``--cache``, so
adding a mode costs only that mode.  WER is the corpus WER after Whisper's
English text normaliser (openai-whisper's ``EnglishTextNormalizer`` when
installed, else a documented fallback).  Changes against uncompressed
features get a paired bootstrap 95% confidence interval over clips.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import codec as codecs
from ..config import get_preset
from ..errors import AmserError
from ..frontend import features
from ..io import load_audio
from .asr import WINDOW_FRAMES, Transcriber

__all__ = ["Clip", "Mode", "default_modes", "normaliser", "run_evaluation", "word_errors"]

SAMPLE_RATE = 16_000
PCM_KBPS = 256.0


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    text: str
    speaker: str


@dataclass
class Mode:
    """One way of getting features to the recogniser.

    ``run(clip, audio) -> (windows, n_bytes)`` returns Whisper input windows
    and the bytes sent (None for the reference).  Transcripts are cached by
    the windows themselves, so a mode needs no cache key of its own.
    """

    name: str
    family: str
    run: Callable[[Clip, np.ndarray], tuple[list[np.ndarray], int | None]]
    results: dict[str, tuple[str, int | None]] = field(default_factory=dict)


# ------------------------------------------------------------ text scoring
def normaliser() -> tuple[Callable[[str], str], str]:
    """Whisper's English normaliser if openai-whisper is installed, else a minimal equivalent."""
    try:
        from whisper.normalizers import EnglishTextNormalizer

        return EnglishTextNormalizer(), "openai-whisper EnglishTextNormalizer"
    except ImportError:

        def basic(text: str) -> str:
            text = re.sub(r"[^\w\s']", " ", text.lower())
            return re.sub(r"\s+", " ", text.replace("'", "")).strip()

        return basic, "fallback normaliser (lower case, punctuation and apostrophes removed)"


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words): Levenshtein over words."""
    ref, hyp = reference.split(), hypothesis.split()
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1], len(ref)


# ------------------------------------------------------------------- modes
def audio_windows(audio: np.ndarray) -> list[np.ndarray]:
    """openai-whisper's input: log-Mel of audio + 30 s of zeros, cut into 30 s windows over the audio."""
    cfg = get_preset("whisper")
    padded = np.concatenate([audio, np.zeros(WINDOW_FRAMES * cfg.hop_length, np.float32)])
    mel = features(padded, SAMPLE_RATE, cfg)
    n = max(1, -(-cfg.num_frames(audio.size) // WINDOW_FRAMES))
    return [np.ascontiguousarray(mel[:, i * WINDOW_FRAMES : (i + 1) * WINDOW_FRAMES]) for i in range(n)]


def container_mode(name: str, family: str, codec: dict | Callable[[Clip], dict]) -> Mode:
    """Features encoded into a container with ``codec`` (or ``codec(clip)``), decoded, windowed as the service does."""
    from .asr import window_features

    cfg = get_preset("whisper")
    codec_for = codec if callable(codec) else lambda clip: codec

    def run(clip: Clip, audio: np.ndarray) -> tuple[list[np.ndarray], int | None]:
        blob = codecs.encode(features(audio, SAMPLE_RATE, cfg), config=cfg, codec=codec_for(clip))
        return window_features(codecs.decode(blob), cfg), len(blob)

    return Mode(name, family, run)


#: Step indices of the kltdct modes in the evaluation (about 1 to 16 kbps) and the rate-controlled targets.
KLTDCT_STEPS = (-32, -28, -24, -20, -16, -12, -8, -4, 0, 2, 4, 6, 8, 12, 16)
KLTDCT_KBPS = (2.0, 2.5, 3.0, 4.0)


def kltdct_mode(
    label: str, params: dict, fold_tables: Sequence[codecs.kltdct.KltDctTables] | None, folds: dict
) -> Mode:
    """The kltdct codec with ``params``; out of fold when ``fold_tables`` is given.

    With ``fold_tables`` trained on speaker-disjoint folds (``python -m
    amser_dsp.codec.train --exclude-fold i/K``), each clip is coded with tables
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


def held_out_tables(clips: Sequence[Clip], fold_tables: Sequence) -> dict[str, int]:
    """Clip id -> index of a table set whose training clips (``meta["clips"]``) exclude it."""
    seen = [set(t.meta.get("clips", ())) for t in fold_tables]
    out = {}
    for clip in clips:
        unseen = [i for i, ids in enumerate(seen) if clip.id not in ids]
        if not unseen:
            raise AmserError(f"clip {clip.id} was in the training data of every --fold-tables file")
        out[clip.id] = unseen[0]
    return out


def opus_mode(kbps: int) -> Mode:
    """Audio through Opus (ffmpeg libopus, VoIP tuning, 16 kHz mono) and back, then the audio path."""

    def run(clip: Clip, audio: np.ndarray) -> tuple[list[np.ndarray], int | None]:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise AmserError("the Opus comparison needs ffmpeg (apt-get install ffmpeg)")
        with tempfile.TemporaryDirectory() as tmp:
            opus, wav = Path(tmp) / "a.opus", Path(tmp) / "b.wav"
            common = [ffmpeg, "-nostdin", "-loglevel", "error", "-y"]
            subprocess.run(
                [
                    *common,
                    "-i",
                    str(clip.path),
                    "-ac",
                    "1",
                    "-ar",
                    "16000",
                    "-c:a",
                    "libopus",
                    "-b:a",
                    f"{kbps}k",
                    "-application",
                    "voip",
                    str(opus),
                ],
                check=True,
            )
            subprocess.run([*common, "-i", str(opus), "-ac", "1", "-ar", "16000", str(wav)], check=True)
            size = opus.stat().st_size
            decoded = load_audio(wav)
        return audio_windows(decoded[: audio.size]), size

    return Mode(f"Opus {kbps} kbps (voip)", "opus", run)


def default_modes(fold_tables: Sequence | None = None, folds: dict | None = None) -> list[Mode]:
    """The modes of docs/fidelity.md: reference, uncompressed, SVD ranks x dtypes, kltdct steps, Opus bitrates."""
    modes = [
        Mode(
            "audio path (reference)",
            "reference",
            lambda clip, audio: (audio_windows(audio), None),
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


# -------------------------------------------------------------- evaluation
def read_manifest(path: Path, limit: int | None = None) -> list[Clip]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))[:limit]
    return [Clip(r["id"], path.parent / r["path"], r["text"], r.get("speaker", r["id"])) for r in rows]


def _cache_file(cache: Path, model: str, windows: Sequence[np.ndarray]) -> Path:
    """Where the transcript of exactly these recogniser inputs is cached.

    Keyed by the model and the bytes of the windows: any change to a codec, a
    table or the front end that changes what Whisper sees misses the cache,
    and sizes are never cached (they are measured on every run).
    """
    digest = hashlib.sha256(model.encode())
    for w in windows:
        digest.update(repr(w.shape).encode())
        digest.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    text = digest.hexdigest()
    return cache / text[:2] / f"{text[2:40]}.json"


def run_evaluation(
    clips: Sequence[Clip], modes: Sequence[Mode], transcriber: Transcriber, cache: Path, *, progress: bool = True
) -> None:
    """Fill ``mode.results[clip.id] = (text, n_bytes)`` for every clip and mode, using the cache."""
    model = f"{transcriber.model_id}|{transcriber.compute_type}|beam{transcriber.beam_size}"
    audio = {}
    for mi, mode in enumerate(modes):
        todo, windows, owners = [], [], []
        for clip in clips:
            if clip.id not in audio:
                audio[clip.id] = load_audio(clip.path)
            wins, size = mode.run(clip, audio[clip.id])
            path = _cache_file(cache, model, wins)
            if path.exists():
                mode.results[clip.id] = (json.loads(path.read_text())["text"], size)
                continue
            todo.append((clip, size, path))
            windows += wins
            owners += [clip.id] * len(wins)
        if todo:
            start = time.perf_counter()
            texts = transcriber.transcribe_windows(windows)
            for clip, size, path in todo:
                text = " ".join(t for t, o in zip(texts, owners, strict=True) if o == clip.id and t)
                mode.results[clip.id] = (text, size)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"text": text, "mode": mode.name, "clip": clip.id}))
            if progress:
                print(
                    f"[{mi + 1}/{len(modes)}] {mode.name}: {len(todo)} clips in {time.perf_counter() - start:.0f} s",
                    file=sys.stderr,
                )


@dataclass
class Row:
    mode: Mode
    kbps: float | None
    wer: float
    delta: float
    ci: tuple[float, float]
    changed: float


def total_seconds(clips: Sequence[Clip]) -> float:
    """Audio duration of the clips (from the file headers)."""
    import soundfile as sf

    return sum(sf.info(str(c.path)).frames for c in clips) / SAMPLE_RATE


def summarise(
    clips: Sequence[Clip], modes: Sequence[Mode], baseline: Mode, *, seed: int = 0, resamples: int = 2000
) -> tuple[list[Row], str]:
    """Per mode: kbps, corpus WER, change vs ``baseline`` with a paired bootstrap CI, transcript-change rate."""
    norm, norm_name = normaliser()
    refs = [norm(c.text) for c in clips]
    seconds = total_seconds(clips)
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, len(clips), size=(resamples, len(clips)))

    def counts(mode: Mode) -> tuple[np.ndarray, np.ndarray, list[str]]:
        hyps = [norm(mode.results[c.id][0]) for c in clips]
        pairs = [word_errors(r, h) for r, h in zip(refs, hyps, strict=True)]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), hyps

    base_err, words, base_hyps = counts(baseline)
    rows = []
    for mode in modes:
        err, _, hyps = counts(mode)
        sizes = [mode.results[c.id][1] for c in clips]
        kbps = sum(sizes) * 8 / seconds / 1000 if all(s is not None for s in sizes) else None
        wer = 100 * err.sum() / words.sum()
        delta = wer - 100 * base_err.sum() / words.sum()
        boot = 100 * ((err[samples].sum(1) - base_err[samples].sum(1)) / words[samples].sum(1))
        lo, hi = np.percentile(boot, [2.5, 97.5])
        changed = float(np.mean([h != b for h, b in zip(hyps, base_hyps, strict=True)]))
        rows.append(Row(mode, kbps, float(wer), float(delta), (float(lo), float(hi)), changed))
    return rows, norm_name


def markdown(
    rows: Sequence[Row], clips: Sequence[Clip], seconds: float, norm_name: str, model: str, command: str
) -> str:
    """The docs/fidelity.md table, with the Opus comparison at equal bitrate."""
    words = sum(len(c.text.split()) for c in clips)
    minutes = seconds / 60
    opus = sorted((r.kbps, r.wer) for r in rows if r.mode.family == "opus" and r.kbps)
    lines = [
        f"{len(clips)} clips, {minutes:.1f} min, about {words:,} reference words; {model}; {norm_name}.",
        f"Command: `{command}`",
        "",
        "| mode | kbps | % of PCM | WER % | change vs uncompressed (95% CI) | transcripts changed | Opus at this rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kbps = f"{r.kbps:.2f}" if r.kbps is not None else "-"
        pct = f"{100 * r.kbps / PCM_KBPS:.2f}" if r.kbps is not None else "-"
        opus_wer = "-"
        if (
            r.kbps is not None
            and r.mode.family not in ("opus", "reference")
            and opus
            and opus[0][0] <= r.kbps <= opus[-1][0]
        ):
            rates, wers = zip(*opus, strict=True)
            opus_wer = f"{np.interp(r.kbps, rates, wers):.2f}"
        lines.append(
            f"| {r.mode.name} | {kbps} | {pct} | {r.wer:.2f} | {r.delta:+.2f} ({r.ci[0]:+.2f}, {r.ci[1]:+.2f}) | "
            f"{100 * r.changed:.0f}% | {opus_wer} |"
        )
    return "\n".join(lines) + "\n"


def lowest_within(rows: Sequence[Row], points: float) -> Row | None:
    """The lowest-bitrate compressed-feature mode whose WER change is at most ``points``."""
    ok = [
        r
        for r in rows
        if r.kbps is not None and r.mode.family not in ("opus", "uncompressed", "reference") and r.delta <= points
    ]
    return min(ok, key=lambda r: r.kbps) if ok else None


OURS = ("svd float16", "svd int8", "kltdct")


def opus_comparison(rows: Sequence[Row], rates: Sequence[float] = tuple(range(2, 17))) -> str:
    """Markdown: at each rate, our best WER at or under it against Opus's (interpolated between its points)."""
    opus = sorted((r.kbps, r.wer) for r in rows if r.mode.family == "opus" and r.kbps)
    lines = [
        "| kbps | our best mode at or under it | its WER % | Opus WER % | ours better |",
        "|---:|---|---:|---:|---|",
    ]
    for rate in rates:
        ours = [r for r in rows if r.mode.family in OURS and r.kbps is not None and r.kbps <= rate]
        best = min(ours, key=lambda r: r.wer) if ours else None
        if opus and opus[0][0] <= rate:
            o = float(np.interp(rate, *zip(*opus, strict=True)))
            opus_text = f"{o:.2f}"
        else:
            o, opus_text = math.inf, f"- (Opus runs at {opus[0][0]:.1f} kbps and up)" if opus else "-"
        lines.append(
            f"| {rate:g} | {best.mode.name if best else '-'} | {best.wer:.2f} | {opus_text} | "
            f"{'yes' if best and best.wer < o else 'no'} |"
            if best
            else f"| {rate:g} | - | - | {opus_text} | no |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], path: Path, title: str) -> None:
    """The rate-distortion plot: WER change against kbps for every family, with 95% intervals."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AmserError("--plot needs matplotlib: pip install 'amser-dsp[plot]'") from None
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    styles = {"kltdct": "o-", "svd int8": "s--", "svd float16": "^--", "opus": "D-", "raw": "x"}
    for family, style in styles.items():
        pts = sorted((r.kbps, r.delta, r.ci) for r in rows if r.mode.family == family and r.kbps)
        if not pts:
            continue
        x, y, ci = zip(*pts, strict=True)
        lows, highs = np.array([c[0] for c in ci]), np.array([c[1] for c in ci])
        # A percentile interval need not contain its point estimate: clip the bars at it.
        err = np.maximum([np.array(y) - lows, highs - np.array(y)], 0)
        ax.errorbar(x, y, yerr=err, fmt=style, capsize=2, label=family, alpha=0.85)
    ax.axhline(0, color="k", lw=0.8)
    ax.axhspan(-0.5, 0.5, color="g", alpha=0.08, label="within 0.5 point")
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 4, 8, 16, 32, 64])
    ax.set_xticklabels(["1", "2", "4", "8", "16", "32", "64"])
    ax.set_xlabel("kbps (container bytes / audio seconds)")
    ax.set_ylabel("WER change vs uncompressed features (points)")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(-2, 12)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(args) -> int:  # called by the ``amser eval-asr`` command
    clips = read_manifest(Path(args.manifest), args.limit)
    if not clips:
        raise AmserError(f"no clips in {args.manifest}")
    transcriber = Transcriber(model_path=args.model, beam_size=args.beam)
    fold_tables, folds = None, None
    if args.fold_tables:
        fold_tables = [codecs.kltdct.tables_from_bytes(Path(p).read_bytes()) for p in args.fold_tables]
        folds = held_out_tables(clips, fold_tables)
    modes = default_modes(fold_tables, folds)
    if args.modes:
        wanted = re.compile(args.modes)
        modes = [m for m in modes if m.family in ("reference", "uncompressed") or wanted.search(m.name)]
    run_evaluation(clips, modes, transcriber, Path(args.cache))
    baseline = next(m for m in modes if m.family == "uncompressed")
    rows, norm_name = summarise(clips, modes, baseline)
    model = f"Whisper {transcriber.name} (CTranslate2 {transcriber.compute_type}, beam {transcriber.beam_size})"
    table = markdown(rows, clips, total_seconds(clips), norm_name, model, "amser eval-asr " + " ".join(sys.argv[2:]))
    summary = [
        f"lowest bitrate within {points} point(s) of uncompressed: "
        + (f"{best.mode.name} at {best.kbps:.2f} kbps ({best.delta:+.2f})" if best else "none")
        for points in (0.5, 1.0, 2.0)
        for best in [lowest_within(rows, points)]
    ]
    comparison = opus_comparison(rows)
    print(table, *summary, "", comparison, sep="\n")
    if args.markdown:
        text = table + "\n" + "\n".join(f"- {line}" for line in summary) + "\n\n" + comparison
        Path(args.markdown).write_text(text)
    if args.plot:
        plot(rows, Path(args.plot), f"{len(clips)} clips, {model}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "mode": r.mode.name,
                        "family": r.mode.family,
                        "kbps": r.kbps,
                        "wer": r.wer,
                        "delta": r.delta,
                        "ci": r.ci,
                        "changed": r.changed,
                    }
                    for r in rows
                ],
                indent=1,
            )
        )
    return 0 if math.isfinite(rows[0].wer) else 1
