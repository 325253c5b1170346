"""Word error rate of Whisper on compressed features, against audio codecs (``amser eval-asr``).

Every mode (:mod:`.modes`) goes through the same recogniser and the same long-form
decoding as the service; the reference is the audio path (openai-whisper's own
input: the log-Mel of the audio followed by 30 s of silence).  ``--long`` runs
the long-form set instead of the clips: the clips joined into recordings of 2
to 10 minutes (:mod:`.recordings`).  Transcripts are cached by the recogniser's
input (:mod:`..recognition.transcripts`), so adding a mode costs only that mode.  WER is the
corpus WER after Whisper's English text normaliser (:mod:`.scoring`); changes
against uncompressed features get a paired bootstrap 95% confidence interval
over clips (:mod:`.eval_report`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ... import codec as codecs
from ...errors import AmserError
from ...io import load_audio
from ..recognition.models import model_arguments
from ..recognition.transcripts import TranscriptCache
from ..recognition.whisper import Transcriber
from .modes import Clip, Mode, default_modes, held_out_tables, learned_modes, read_asr_manifest
from .recordings import long_recordings, recording_clips
from .report import lowest_within, markdown, opus_comparison, plot, summarise, total_seconds

__all__ = ["KEPT_MARKER", "main", "run_evaluation", "write_markdown"]

#: ``--markdown`` rewrites the file above this line and keeps what follows it.
KEPT_MARKER = "<!-- written by hand: eval-asr --markdown keeps what follows -->"


def run_evaluation(
    clips: Sequence[Clip], modes: Sequence[Mode], transcriber: Transcriber, cache: Path, *, progress: bool = True
) -> None:
    """Fill ``mode.results[clip.id] = (text, n_bytes)`` for every clip and mode, using the cache."""
    store = TranscriptCache(cache, transcriber)
    audio = {c.id: load_audio(c.path) for c in clips}
    for mi, mode in enumerate(modes):
        start = time.perf_counter()
        runs = [mode.run(clip, audio[clip.id]) for clip in clips]
        fresh = sum(store.get(feats) is None for feats, _ in runs)
        texts = store.transcribe([feats for feats, _ in runs], [{"mode": mode.name, "clip": c.id} for c in clips])
        for clip, text, (_, size) in zip(clips, texts, runs, strict=True):
            mode.results[clip.id] = (text, size)
        if progress and fresh:
            print(
                f"[{mi + 1}/{len(modes)}] {mode.name}: {fresh} clips in {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
            )


def write_markdown(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, keeping what an existing file holds from :data:`KEPT_MARKER` on."""
    kept = path.read_text().partition(KEPT_MARKER) if path.exists() else ("", "", "")
    path.write_text(text + ("\n\n" + kept[1] + kept[2] if kept[1] else ""))


def _decoders(paths: Sequence[str], clips: Sequence[Clip], model: str) -> tuple[list, dict[str, int]]:
    """The learned decoders in ``paths`` (out of fold: each lists its training clips) and which one each clip gets."""
    from ..recognition.learned_decoder import learned_decoder_for

    decoders = [learned_decoder_for(model, p) for p in paths]
    for path, d in zip(paths, decoders, strict=True):
        if d is None or d.meta.get("model") != model:
            raise AmserError(f"{path} was trained for Whisper {d and d.meta.get('model')!r}, not {model!r}")
    return decoders, held_out_tables(clips, decoders)


def main(args: argparse.Namespace) -> int:  # called by the ``amser eval-asr`` command
    clips = read_asr_manifest(Path(args.manifest), args.limit)
    if not clips:
        raise AmserError(f"no clips in {args.manifest}")
    if args.long:
        if args.fold_tables:
            raise AmserError("--fold-tables chooses tables per clip; a long recording holds many clips: drop one")
        clips = recording_clips(long_recordings(clips), Path(args.cache) / "long")
    transcriber = Transcriber(**model_arguments(args), beam_size=args.beam)
    fold_tables, folds = None, None
    if args.fold_tables:
        fold_tables = [codecs.kltdct.tables_from_bytes(Path(p).read_bytes()) for p in args.fold_tables]
        folds = held_out_tables(clips, fold_tables)
    modes = default_modes(fold_tables, folds)
    if args.decoders:
        modes += learned_modes(modes, *_decoders(args.decoders, clips, transcriber.name))
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
        write_markdown(Path(args.markdown), text)
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
                        "divergence": r.divergence,
                        "divergence_ci": r.divergence_ci,
                    }
                    for r in rows
                ],
                indent=1,
            )
        )
    return 0 if math.isfinite(rows[0].wer) else 1
