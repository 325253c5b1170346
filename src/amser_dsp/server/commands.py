"""Subcommands of ``amser`` that need the server extra: ``transcribe`` and ``eval-asr``.

Only argument definitions live here; the heavy modules load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli import AUDIO_SUFFIXES, Progress, _codec_args, codec_kwargs
from ..errors import AmserError

__all__ = ["add_parsers"]


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .. import decode, encode_audio, load_audio
    from .asr import Transcriber

    files: list[Path] = []
    for item in args.inputs:
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise AmserError(f"input not found: {item}")
    if not files:
        raise AmserError("no audio files to transcribe")
    transcriber = Transcriber(model_path=args.model, beam_size=args.beam)
    progress = Progress(len(files), "transcribe", enabled=sys.stderr.isatty() and not args.json)
    for path in files:
        audio = load_audio(path)
        blob = encode_audio(audio, "whisper", **codec_kwargs(args))
        text = transcriber.transcribe(decode(blob))
        progress.step(path.name)
        if args.json:
            print(
                json.dumps(
                    {
                        "path": str(path),
                        "text": text,
                        "bytes": len(blob),
                        "kbps": len(blob) * 8 / (audio.size / 16000) / 1000,
                    }
                )
            )
        else:
            print(f"{path}: {text}")
    progress.close()
    return 0


def cmd_eval_asr(args: argparse.Namespace) -> int:
    from .evaluate import main

    return main(args)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="encode, decode and transcribe audio locally (no server)")
    p.add_argument("inputs", type=Path, nargs="+", help="audio files or folders")
    _codec_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--model", help="CTranslate2 Whisper directory (default: packaged tiny.en)")
    p.add_argument("--beam", type=int, default=5, help="beam size (1: greedy)")
    p.set_defaults(run=cmd_transcribe, chunk_seconds=None)

    p = sub.add_parser("eval-asr", help="WER of every codec mode and of Opus on a manifest (docs/fidelity.md)")
    p.add_argument("--manifest", required=True, help="TSV with id, path, text (../shared/data/asr/manifest.tsv)")
    p.add_argument("--cache", default=".cache/eval", help="transcript cache folder")
    p.add_argument("--limit", type=int, help="first N clips only")
    p.add_argument("--modes", help="regular expression selecting modes (reference and uncompressed always run)")
    p.add_argument("--model", help="CTranslate2 Whisper directory (default: packaged tiny.en)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--json", help="also write the rows as JSON here")
    p.set_defaults(run=cmd_eval_asr)
