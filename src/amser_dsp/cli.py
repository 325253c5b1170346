"""The ``amser`` command: features, encode, decode, info (and the server's commands when installed).

It parses arguments, calls the public API and turns :class:`AmserError` into
one line on stderr and exit status 1 (2 for usage errors).  No logic of its own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import PRESETS, __version__
from .errors import AmserError

__all__ = ["main"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")

#: Modules that add subcommands: each has ``add_parsers(subparsers)``; imported
#: only for argument definitions, so heavy imports stay inside their commands.
EXTENSIONS = ("amser_dsp.server.commands",)

EPILOG = """examples:
  amser features speech.flac speech.npy --preset whisper
  amser encode speech.flac speech.amser                       # the default codec (kltdct)
  amser encode speech.flac speech.amser --kbps 2.5            # kltdct at a target bitrate
  amser encode speech.flac speech.amser --preset whisper --rank 20 --dtype int8   # SVD, as the paper
  amser encode recordings/ containers/ --ratio 0.125          # a whole tree, mirrored
  amser decode speech.amser speech.npy
  amser info speech.amser --json
"""


# ------------------------------------------------------------------ helpers
class Progress:
    """A one-line progress bar on stderr (silent when stderr is not a terminal unless forced)."""

    def __init__(self, total: int, label: str, *, enabled: bool | None = None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.perf_counter()

    def step(self, name: str) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = width * self.done // max(self.total, 1)
            sys.stderr.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {name[:40]:40s}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _jobs(src: Path, dst: Path, suffixes: Iterable[str], out_suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one file, or every matching file of a tree mirrored under ``dst``."""
    if not src.exists():
        raise AmserError(f"input not found: {src}")
    if src.is_file():
        return [(src, dst)]
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in tuple(suffixes))
    if not files:
        raise AmserError(f"no {'/'.join(suffixes)} files under {src}")
    return [(p, (dst / p.relative_to(src)).with_suffix(out_suffix)) for p in files]


def _run_jobs(jobs: list[tuple[Path, Path]], work: Callable[[Path, Path], dict[str, Any]], label: str) -> int:
    """Run ``work`` per file; in tree mode keep going past failures, then print a summary."""
    if len(jobs) == 1:
        src, dst = jobs[0]
        dst.parent.mkdir(parents=True, exist_ok=True)
        work(src, dst)
        return 0
    progress = Progress(len(jobs), label)
    failures: list[str] = []
    totals: dict[str, float] = {}
    for src, dst in jobs:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            for key, value in work(src, dst).items():
                totals[key] = totals.get(key, 0.0) + value
        except AmserError as exc:
            failures.append(f"{src}: {exc}")
        progress.step(src.name)
    progress.close()
    for line in failures:
        print(f"amser: {line}", file=sys.stderr)
    summary = f"{label}: {len(jobs) - len(failures)} of {len(jobs)} files"
    if totals.get("seconds"):
        summary += f", {totals['seconds']:.1f} s of audio"
    if totals.get("bytes") and totals.get("seconds"):
        summary += f", {int(totals['bytes'])} bytes ({totals['bytes'] * 8 / totals['seconds'] / 1000:.2f} kbps)"
    print(summary)
    return 1 if failures else 0


def _codec_args(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--kbps", type=float, help="kltdct codec at this bitrate (kilobits per audio second)")
    mode.add_argument("--quality", type=float, help="kltdct codec at this RMS error (feature units)")
    mode.add_argument("--step", type=int, help="kltdct codec with this step index (-64..63; +8 halves the precision)")
    mode.add_argument("--rank", type=int, help="SVD codec, rank r")
    mode.add_argument("--ratio", type=float, help="SVD codec, rank as the paper's ratio r / k (0.125 keeps 10 of 80)")
    mode.add_argument("--energy", type=float, help="SVD codec keeping at least this fraction of the energy")
    p.add_argument("--dtype", choices=("float32", "float16", "int8"), help="SVD factor storage")
    p.add_argument(
        "--entropy", choices=("zlib", "zstd", "none"), default="zlib", help="SVD lossless stage (default zlib)"
    )
    p.add_argument("--chunk-seconds", type=float, help="audio per self-contained chunk (default: one chunk)")


def codec_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :func:`amser_dsp.encode` from the ``_codec_args`` options (None: not given)."""
    if args.step is not None:
        return {"codec": {"codec": "kltdct", "step": args.step}}
    return dict(
        rank=args.rank,
        ratio=args.ratio,
        energy=args.energy,
        factor_dtype=args.dtype,
        entropy=None if args.entropy == "none" else args.entropy,
        kbps=args.kbps,
        quality=args.quality,
    )


# ----------------------------------------------------------------- commands
def cmd_features(args: argparse.Namespace) -> int:
    from . import features, load_audio

    def work(src: Path, dst: Path) -> dict[str, Any]:
        audio = load_audio(src, sample_rate=PRESETS[args.preset].sample_rate)
        feats = features(audio, PRESETS[args.preset].sample_rate, args.preset, backend=args.backend)
        np.save(dst, feats)
        return {"seconds": audio.size / PRESETS[args.preset].sample_rate}

    return _run_jobs(_jobs(args.input, args.output, AUDIO_SUFFIXES, ".npy"), work, "features")


def cmd_encode(args: argparse.Namespace) -> int:
    from . import encode_audio, load_audio

    cfg = PRESETS[args.preset]

    def work(src: Path, dst: Path) -> dict[str, Any]:
        audio = load_audio(src, sample_rate=cfg.sample_rate)
        blob = encode_audio(audio, cfg, chunk_seconds=args.chunk_seconds, **codec_kwargs(args))
        dst.write_bytes(blob)
        return {"seconds": audio.size / cfg.sample_rate, "bytes": len(blob)}

    return _run_jobs(_jobs(args.input, args.output, AUDIO_SUFFIXES, ".amser"), work, "encode")


def cmd_decode(args: argparse.Namespace) -> int:
    from . import decode

    def work(src: Path, dst: Path) -> dict[str, Any]:
        np.save(dst, decode(src.read_bytes()))
        return {}

    return _run_jobs(_jobs(args.input, args.output, (".amser",), ".npy"), work, "decode")


def cmd_info(args: argparse.Namespace) -> int:
    from . import inspect

    paths = [args.input] if args.input.is_file() else sorted(args.input.rglob("*.amser"))
    if not paths:
        raise AmserError(f"no .amser files at {args.input}")
    infos = []
    for path in paths:
        info = inspect(path.read_bytes()).to_dict()
        info["path"] = str(path)
        infos.append(info)
    if args.json:
        print(json.dumps(infos[0] if args.input.is_file() else infos, indent=2))
        return 0
    for i in infos:
        cfg = i["config"]
        preset = next((n for n, c in PRESETS.items() if cfg and c.to_dict() == cfg), "custom" if cfg else "none")
        codec = ", ".join(f"{k}={v}" for k, v in i["codec"].items() if k != "codec" and v is not None)
        rate = f"{i['kbps']:.2f} kbps, {i['percent_of_pcm']:.2f}% of 16-bit PCM" if i["kbps"] else "rate unknown"
        print(
            f"{i['path']}: format {i['format_version']}, preset {preset}, codec {i['codec']['codec']} ({codec}), "
            f"{i['n_mels']} x {i['n_frames']} frames in {i['n_chunks']} chunk(s), {i['bytes']} bytes "
            f"(header {i['header_bytes']}), {rate}"
        )
    return 0


# ------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amser",
        description="Log-Mel features and compact feature containers for speech.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"amser-dsp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "features",
        help="audio file(s) to log-Mel features (.npy)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="audio file or folder")
    p.add_argument("output", type=Path, help=".npy file or folder")
    p.add_argument("--preset", choices=sorted(PRESETS), default="amser")
    p.add_argument("--backend", help="compute back end (default: fastest installed)")
    p.set_defaults(run=cmd_features)

    p = sub.add_parser(
        "encode",
        help="audio file(s) to .amser containers",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="audio file or folder")
    p.add_argument("output", type=Path, help=".amser file or folder")
    p.add_argument("--preset", choices=sorted(PRESETS), default="whisper")
    _codec_args(p)
    p.set_defaults(run=cmd_encode)

    p = sub.add_parser("decode", help=".amser container(s) to features (.npy)")
    p.add_argument("input", type=Path, help=".amser file or folder")
    p.add_argument("output", type=Path, help=".npy file or folder")
    p.set_defaults(run=cmd_decode)

    p = sub.add_parser("info", help="describe .amser container(s)")
    p.add_argument("input", type=Path, help=".amser file or folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_info)

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue  # the extra is not installed; its commands are absent
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``amser`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except AmserError as exc:
        print(f"amser: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # an optional extra is missing; the message names it
        print(f"amser: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"amser: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("amser: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
