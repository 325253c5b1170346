"""``amser batch encode|transcribe|analyze|features SRC DST``: the batch API as a command (entry point of the batch extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypedDict

from ..cli import add_codec_arguments, codec_arguments
from ..errors import AmserError
from ..server.commands.recognition import add_model_arguments

__all__ = ["add_parsers"]

EPILOG = """examples:
  amser batch encode recordings/ containers/                  # a local Dask cluster, one process per core
  amser batch encode recordings/ containers/ --kbps 2.5 --workers 8
  amser batch transcribe containers/ transcripts/ --scheduler tcp://10.0.0.5:8786
  amser batch features recordings/ corpus.zarr               # one Zarr store of coded features
Run the same command again to resume: verified outputs are skipped (--force redoes them).
"""

SHOWN_FAILURES = 10


def _report(summary: object) -> int:
    from .report import Summary

    assert isinstance(summary, Summary)
    for src, message in summary.warnings[:SHOWN_FAILURES]:
        print(f"amser: warning: {src}: {message}", file=sys.stderr)
    if len(summary.warnings) > SHOWN_FAILURES:
        print(f"amser: ... {len(summary.warnings) - SHOWN_FAILURES} more warnings", file=sys.stderr)
    for src, reason in summary.failures[:SHOWN_FAILURES]:
        print(f"amser: error: {src}: {reason}", file=sys.stderr)
    if summary.failed > SHOWN_FAILURES:
        print(f"amser: ... {summary.failed - SHOWN_FAILURES} more in {summary.failures_file}", file=sys.stderr)
    print(summary.table())
    if summary.interrupted:
        print("amser: interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0 if summary.ok else 1


class _Cluster(TypedDict):
    """The keywords every batch function takes from the cluster options."""

    scheduler: str | None
    workers: int | None
    force: bool
    progress: bool


def _common(args: argparse.Namespace) -> _Cluster:
    if args.workers is not None and args.workers < 1:
        raise AmserError(f"--workers {args.workers} is invalid: expected a positive integer")
    return {"scheduler": args.scheduler, "workers": args.workers, "force": args.force, "progress": True}


def cmd_encode(args: argparse.Namespace) -> int:
    from . import encode

    return _report(
        encode(
            args.src, args.dst, preset=args.preset, chunk_seconds=args.chunk_seconds,
            **codec_arguments(args), **_common(args),
        )
    )  # fmt: skip


def cmd_transcribe(args: argparse.Namespace) -> int:
    from . import transcribe

    if args.chunk_seconds is not None:
        raise AmserError("--chunk-seconds does not apply to batch transcribe (each file is one container)")
    return _report(transcribe(args.src, args.dst, model=args.model, beam=args.beam, language=args.language,
                              **codec_arguments(args),
                              **_common(args)))  # fmt: skip


def cmd_analyze(args: argparse.Namespace) -> int:
    from . import analyze

    if args.chunk_seconds is not None:
        raise AmserError("--chunk-seconds does not apply to batch analyze (each file is one container)")
    return _report(analyze(args.src, args.dst, model=args.model, beam=args.beam, language=args.language,
                           emotion_model=args.emotion_model,
                           **codec_arguments(args), **_common(args)))  # fmt: skip


def cmd_features(args: argparse.Namespace) -> int:
    from . import features

    if args.chunk_seconds is not None:
        raise AmserError("--chunk-seconds does not apply to batch features (Zarr chunks are --chunk-frames)")
    return _report(
        features(
            args.src, args.dst, preset=args.preset, chunk_frames=args.chunk_frames, backend=args.backend,
            **codec_arguments(args), **_common(args),
        )
    )  # fmt: skip


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", type=Path, help="source folder (walked recursively) or file")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler (default: a local cluster)")
    p.add_argument(
        "--workers", type=int, help="local cluster processes (default: one per core); with --scheduler, wait for N"
    )
    p.add_argument("--force", action="store_true", help="redo outputs that verify")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from ..config import DEFAULT_PRESET, PRESETS

    batch = sub.add_parser(
        "batch",
        help="whole corpora on Dask: encode, transcribe, analyze, features (resumable)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = batch.add_subparsers(dest="batch_command", required=True, metavar="KIND")

    p = kinds.add_parser("encode", help="audio to .amser containers, tree mirrored", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    _cluster_arguments(p)
    p.add_argument("dst", type=Path, help="output folder (manifest and failures file inside)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET)
    add_codec_arguments(p)
    p.set_defaults(run=cmd_encode)

    for name, run, text in [
        ("transcribe", cmd_transcribe, "audio or containers to Whisper transcripts (.json per file)"),
        ("analyze", cmd_analyze, "transcript and emotion per file (.json; needs the emotion classifier)"),
    ]:
        p = kinds.add_parser(name, help=text)
        _cluster_arguments(p)
        p.add_argument("dst", type=Path, help="output folder")
        add_model_arguments(p)
        p.add_argument("--beam", type=int, default=5, help="beam size (1: greedy)")
        if name == "analyze":
            p.add_argument("--emotion-model", help="emotion checkpoint (default: the packaged one)")
        add_codec_arguments(p)
        p.set_defaults(run=run)

    p = kinds.add_parser("features", help="audio to one Zarr store of coded features (docs/batch.md)")
    _cluster_arguments(p)
    p.add_argument("dst", type=Path, help="the Zarr store (a folder; bookkeeping goes beside it)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET)
    p.add_argument("--chunk-frames", type=int, default=1024, help="frames per Zarr chunk (default 1024)")
    p.add_argument("--backend", help="compute back end (default: fastest installed)")
    add_codec_arguments(p)
    p.set_defaults(run=cmd_features)
