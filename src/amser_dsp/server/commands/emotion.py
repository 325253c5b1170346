"""Subcommands of ``amser`` for the emotion model: analyze, train-emotion, eval-emotion.

Registered through the ``amser_dsp.commands`` entry point; only argument
definitions live here, and torch loads when a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...cli import Done, Job, add_codec_arguments, codec_arguments, container_from, jobs_for, run_jobs
from .. import DEFAULT_BEAM_SIZE
from .recognition import INPUT_SUFFIXES, add_model_arguments

__all__ = ["add_parsers"]


def cmd_analyze(args: argparse.Namespace) -> int:
    from ... import encode_audio, inspect
    from ..analysis import Analyzer
    from ..recognition.models import model_arguments
    from ..recognition.whisper import Transcriber, decode_for_whisper

    options = codec_arguments(args)
    jobs = jobs_for(args.inputs, INPUT_SUFFIXES)
    transcriber = Transcriber(**model_arguments(args), beam_size=args.beam or DEFAULT_BEAM_SIZE)
    analyzer = Analyzer.load(transcriber, args.emotion_model)  # both models load once, for every file

    def work(job: Job) -> Done:
        blob, seconds = container_from(
            job.src, lambda audio: encode_audio(audio, "whisper", chunk_seconds=args.chunk_seconds, **options),
            options, args.chunk_seconds,
        )  # fmt: skip
        if seconds is None:
            seconds = inspect(blob).seconds or 0.0
        result = analyzer.analyze([decode_for_whisper(blob).features])[0]
        if args.json:
            line = json.dumps(
                {
                    "path": str(job.src),
                    "text": result["text"],
                    "label": result["label"],
                    "probabilities": result["probabilities"],
                    "segments": result["segments"],
                    "bytes": len(blob),
                    "kbps": len(blob) * 8 / seconds / 1000 if seconds else None,
                }
            )
        else:
            label = result["label"]
            said = f"{label} ({result['probabilities'][label]:.2f})" if label else "no audio"
            line = f"{job.src}: {said}: {result['text']}"
        return Done(line, {"seconds": seconds, "bytes": len(blob)})

    return run_jobs(jobs, work, "analyze", progress=not args.json)


def cmd_train_emotion(args: argparse.Namespace) -> int:
    from ..emotion.train import main

    return main(args)


def cmd_eval_emotion(args: argparse.Namespace) -> int:
    from ..emotion.evaluate import main

    return main(args)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the emotion commands to the ``amser`` parser."""
    p = sub.add_parser("analyze", help="encode, decode, transcribe and name the emotion of audio, locally")
    p.add_argument("inputs", type=Path, nargs="+", help="audio or .amser files, folders, or - (standard input)")
    add_codec_arguments(p)
    p.add_argument("--json", action="store_true", help="one JSON object per file: path, text, label, probabilities")
    add_model_arguments(p)
    p.add_argument("--beam", type=int, help="beam size (1: greedy; default 5)")
    p.add_argument("--emotion-model", help="emotion checkpoint (default: the packaged one)")
    p.set_defaults(run=cmd_analyze)

    p = sub.add_parser("train-emotion", help="train the emotion model (docs/emotion.md; about 30-60 min on 2 cores)")
    p.add_argument("--config", help="JSON training config (keys of TrainConfig; default: the shipped model's)")
    p.add_argument("--out", help="checkpoint to write (default: the config's out)")
    p.add_argument(
        "--folds",
        type=int,
        help="instead of training the model: cross-validate the config over K speaker folds of its training and "
        "validation speakers (mean validation UAR per epoch)",
    )
    p.add_argument("--json", help="with --folds: also write the per-fold histories as JSON here")
    p.set_defaults(run=cmd_train_emotion)

    p = sub.add_parser("eval-emotion", help="score an emotion model on held-out speakers at every codec setting")
    p.add_argument("--checkpoint", help="emotion checkpoint (default: the packaged one)")
    p.add_argument("--manifest", help="emotion manifest (default: the one the checkpoint was trained from)")
    p.add_argument("--cache", help="cache folder of recogniser outputs (default: the training config's)")
    p.add_argument(
        "--settings",
        nargs="+",
        metavar="NAME",
        help="codec settings to score (default: all; default and uncompressed always)",
    )
    p.add_argument(
        "--ablations", nargs="*", metavar="NAME", help="ablations to train and score (default: all; none: give no name)"
    )
    p.add_argument(
        "--protocol",
        choices=("heldout", "emobox"),
        default="heldout",
        help="heldout (default): the checkpoint on its test speakers; emobox: EmoBox's folds (RAVDESS, EmoDB), one "
        "fold model each with the checkpoint's model settings, at the default codec and uncompressed (evaluation "
        "only; docs/emotion.md says what differs from EmoBox's leaderboard)",
    )
    p.add_argument(
        "--config", help="with --protocol emobox: training config of the fold models (default: the checkpoint's)"
    )
    p.add_argument("--epochs", type=int, help="with --protocol emobox: epochs per fold model (default: the config's)")
    p.add_argument(
        "--emobox-json", help="held-out report: add the EmoBox protocol's tables from this --protocol emobox --json"
    )
    p.add_argument("--markdown", help="write the report here (docs/emotion.md)")
    p.add_argument("--plot", help="write the confusion-matrix PNG here (docs/img/emotion-confusion.png)")
    p.add_argument("--json", help="also write every score as JSON here")
    p.set_defaults(run=cmd_eval_emotion)
