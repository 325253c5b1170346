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


def _audio_files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise AmserError(f"input not found: {item}")
    if not files:
        raise AmserError("no audio files given")
    return files


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .. import decode, encode_audio, load_audio
    from .asr import Transcriber

    files = _audio_files(args.inputs)
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


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from .app import ServiceSettings, create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = ServiceSettings.from_env(
        max_body_bytes=args.max_body_bytes,
        max_audio_seconds=args.max_audio_seconds,
        request_timeout=args.timeout,
        queue_size=args.queue,
        workers=args.workers,
        api_key_file=args.api_key_file,
        beam_size=args.beam,
        model_path=args.model,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from .client import Client

    files = _audio_files(args.inputs)
    # An explicit codec setting overrides the codec the service asks for.
    chosen = any(getattr(args, k) is not None for k in ("rank", "ratio", "energy", "kbps", "quality", "step"))
    params = {k: v for k, v in codec_kwargs(args).items() if v is not None} if chosen else {}
    with Client(args.url, api_key=args.api_key) as client:
        progress = Progress(len(files), "send", enabled=sys.stderr.isatty() and not args.json)
        for path in files:
            result = client.transcribe_file(path, **params)
            progress.step(path.name)
            print(json.dumps(result) if args.json else f"{path}: {result['text']}")
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

    p = sub.add_parser("serve", help="run the HTTP service (containers in, transcripts out)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-body-bytes", type=int, help="largest request body (default 4 MiB)")
    p.add_argument("--max-audio-seconds", type=float, help="longest audio per request (default 600)")
    p.add_argument("--timeout", type=float, help="seconds per request before 504 (default 60)")
    p.add_argument("--queue", type=int, help="requests admitted at once before 503 (default 8)")
    p.add_argument("--workers", type=int, help="recogniser threads (default 1)")
    p.add_argument("--api-key-file", help="file of accepted API keys, one per line (or AMSER_API_KEY)")
    p.add_argument("--model", help="CTranslate2 Whisper directory (default: packaged tiny.en)")
    p.add_argument("--beam", type=int, help="beam size (default 5)")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("send", help="encode audio locally and send it to a service")
    p.add_argument("inputs", type=Path, nargs="+", help="audio files or folders")
    p.add_argument("--url", required=True, help="service URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", help="API key (default: AMSER_API_KEY)")
    _codec_args(p)
    p.add_argument("--json", action="store_true", help="one JSON answer per file")
    p.set_defaults(run=cmd_send)

    p = sub.add_parser("eval-asr", help="WER of every codec mode and of Opus on a manifest (docs/fidelity.md)")
    p.add_argument("--manifest", required=True, help="TSV with id, path, text (../shared/data/asr/manifest.tsv)")
    p.add_argument("--cache", default=".cache/eval", help="transcript cache folder")
    p.add_argument("--limit", type=int, help="first N clips only")
    p.add_argument("--modes", help="regular expression selecting modes (reference and uncompressed always run)")
    p.add_argument("--model", help="CTranslate2 Whisper directory (default: packaged tiny.en)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--markdown", help="also write the table and the Opus comparison (markdown) here")
    p.add_argument("--plot", help="also draw the rate-distortion plot (PNG, needs matplotlib) here")
    p.add_argument(
        "--fold-tables",
        nargs="+",
        metavar="NPZ",
        help="kltdct tables trained without fold 0, 1, ... (python -m amser_dsp.codec.train --exclude-fold I/K): "
        "evaluate the kltdct modes out of fold (default: the shipped, in-sample tables)",
    )
    p.set_defaults(run=cmd_eval_asr)
