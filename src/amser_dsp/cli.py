"""The ``amser`` command: features, encode, decode, info (others add their own subcommands).

Each subcommand lives in a module listed in :data:`SUBCOMMAND_MODULES`; a module
defines ``add_parser(subparsers)`` (which must call ``set_defaults(run=...)``)
and its run function.  To add one (``serve``, ``send``, ``transcribe``...),
write a module with those two functions and append its dotted name to the
list: no other line here changes.  A module whose optional dependencies are
missing is skipped when it raises ImportError at import.

Errors of amser_dsp's own types print one line on stderr and exit with 1;
usage errors exit with 2 (argparse's convention).
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

from .errors import AmserError

__all__ = ["SUBCOMMAND_MODULES", "main"]

#: Modules that each provide ``add_parser(subparsers)``; order is the order in ``--help``.
SUBCOMMAND_MODULES: list[str] = ["amser_dsp.cli"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
EPILOG = """examples:
  amser features speech.flac speech.npy --preset whisper
  amser encode speech.flac speech.amser --preset whisper --ratio 0.125 --dtype int8 --entropy zstd
  amser encode speech.npy speech.amser --rank 20          (features in, preset names their config)
  amser decode speech.amser speech.npy
  amser info speech.amser --json
  amser encode corpus/ encoded/ --energy 0.99             (a whole directory tree)
"""


# ------------------------------------------------------------------ helpers
def _progress(i: int, n: int, name: str, stream: Any = None) -> None:
    """A one-line progress bar on stderr (no extra dependency)."""
    stream = stream or sys.stderr
    width = 30
    done = int(width * i / max(n, 1))
    stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {name[-40:]:40s}")
    if i == n:
        stream.write("\n")
    stream.flush()


def _pairs(src: Path, dst: Path, suffixes: Iterable[str], out_suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one file, or every matching file under a directory tree."""
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        return [(p, (dst / p.relative_to(src)).with_suffix(out_suffix)) for p in files]
    return [(src, dst)]


def _run_many(
    args: argparse.Namespace, suffixes: Sequence[str], out_suffix: str, one: Callable[[Path, Path], dict[str, Any]]
) -> int:
    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise AmserError(f"input {str(src)!r} does not exist")
    pairs = _pairs(src, dst, suffixes, out_suffix)
    many = src.is_dir()
    if many and not pairs:
        raise AmserError(f"no {'/'.join(suffixes)} files under {str(src)!r}")
    t0 = time.perf_counter()
    totals: dict[str, float] = {}
    failures = 0
    for i, (a, b) in enumerate(pairs, 1):
        b.parent.mkdir(parents=True, exist_ok=True)
        try:
            stats = one(a, b)
        except AmserError as exc:
            if not many:
                raise
            failures += 1
            sys.stderr.write(f"\n{a}: {exc}\n")
            stats = {}
        for k, v in stats.items():
            totals[k] = totals.get(k, 0.0) + v
        if many and not getattr(args, "quiet", False):
            _progress(i, len(pairs), str(a))
    if many:
        summary = f"{len(pairs) - failures} of {len(pairs)} files in {time.perf_counter() - t0:.1f} s"
        if totals.get("seconds"):
            summary += f", {totals['seconds']:.1f} s of audio"
        if totals.get("bytes") and totals.get("seconds"):
            kbps = totals["bytes"] * 8 / totals["seconds"] / 1000
            summary += f", {totals['bytes']:.0f} bytes, {kbps:.2f} kbps ({100 * kbps / 256:.2f}% of 16-bit PCM)"
        print(summary, file=sys.stderr)
    return 1 if failures else 0


def _load_features_or_audio(path: Path, preset: str) -> tuple[np.ndarray, Any]:
    import amser_dsp

    if path.suffix.lower() == ".npy":
        try:
            feats = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise AmserError(f"cannot read features from {str(path)!r}: {exc}") from None
        return feats, amser_dsp.get_preset(preset)
    cfg = amser_dsp.get_preset(preset)
    audio = amser_dsp.load_audio(path, sample_rate=cfg.sample_rate)
    return amser_dsp.features(audio, cfg.sample_rate, cfg), cfg


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AmserError(f"cannot read {str(path)!r}: {exc.strerror}") from None


# -------------------------------------------------------------- subcommands
def run_features(args: argparse.Namespace) -> int:
    """``amser features IN OUT.npy``."""
    import amser_dsp

    def one(a: Path, b: Path) -> dict[str, Any]:
        cfg = amser_dsp.get_preset(args.preset)
        audio = amser_dsp.load_audio(a, sample_rate=cfg.sample_rate)
        np.save(b, amser_dsp.features(audio, cfg.sample_rate, cfg))
        return {"seconds": audio.shape[-1] / cfg.sample_rate}

    return _run_many(args, AUDIO_SUFFIXES, ".npy", one)


def run_encode(args: argparse.Namespace) -> int:
    """``amser encode IN OUT.amser``."""
    import amser_dsp

    def one(a: Path, b: Path) -> dict[str, Any]:
        feats, cfg = _load_features_or_audio(a, args.preset)
        blob = amser_dsp.encode(
            feats,
            rank=args.rank,
            ratio=args.ratio,
            energy=args.energy,
            factor_dtype=args.dtype,
            entropy=None if args.entropy == "none" else args.entropy,
            config=cfg,
            chunk_frames=args.chunk_frames,
        )
        b.write_bytes(blob)
        return {"bytes": len(blob), "seconds": feats.shape[1] * cfg.hop_length / cfg.sample_rate}

    return _run_many(args, (*AUDIO_SUFFIXES, ".npy"), ".amser", one)


def run_decode(args: argparse.Namespace) -> int:
    """``amser decode IN.amser OUT.npy``."""
    import amser_dsp

    def one(a: Path, b: Path) -> dict[str, Any]:
        enc = amser_dsp.decode_container(_read_bytes(a))
        np.save(b, enc.features)
        return {"seconds": enc.info.duration_seconds or 0.0, "bytes": enc.info.total_bytes}

    return _run_many(args, (".amser",), ".npy", one)


def _info_line(path: Path, info: Any) -> str:
    cfg = info.codec
    rule = next((f"{k}={cfg[k]}" for k in ("rank", "ratio", "energy") if cfg.get(k) is not None), "")
    ranks = sorted(set(info.ranks))
    dur = f"{info.duration_seconds:.2f} s" if info.duration_seconds else "? s"
    rate = f"{info.kbps:.2f} kbps ({info.pcm_percent:.2f}% of 16-bit PCM)" if info.kbps else "rate unknown"
    return (
        f"{path}: format {info.format_version}, codec {cfg['id']} {rule} {cfg.get('factor_dtype', '')} "
        f"{cfg.get('entropy')}, {info.n_mels} mels x {info.n_frames} frames, {info.n_chunks} chunk(s), "
        f"rank {ranks[0] if len(ranks) == 1 else ranks}, {dur}, {info.total_bytes} bytes "
        f"(header {info.header_bytes}, payload {info.payload_bytes}), {rate}"
    )


def run_info(args: argparse.Namespace) -> int:
    """``amser info IN.amser [--json]``."""
    import amser_dsp

    src = Path(args.input)
    if not src.exists():
        raise AmserError(f"input {str(src)!r} does not exist")
    files = sorted(p for p in src.rglob("*.amser")) if src.is_dir() else [src]
    if not files:
        raise AmserError(f"no .amser files under {str(src)!r}")
    out = []
    total_bytes = total_s = 0.0
    for p in files:
        info = amser_dsp.inspect(_read_bytes(p))
        total_bytes += info.total_bytes
        total_s += info.duration_seconds or 0.0
        if args.json:
            out.append({"path": str(p), **info.to_dict()})
        else:
            print(_info_line(p, info))
    if args.json:
        print(json.dumps(out[0] if not src.is_dir() else out, indent=2))
    elif src.is_dir() and total_s:
        kbps = total_bytes * 8 / total_s / 1000
        print(f"{len(files)} files, {total_s:.1f} s, {total_bytes:.0f} bytes, {kbps:.2f} kbps ({kbps / 2.56:.2f}% of PCM)")
    return 0


def add_parser(subparsers: Any) -> None:
    """Add this module's subcommands: features, encode, decode, info."""
    from .codec import FACTOR_DTYPES

    def io_args(p: argparse.ArgumentParser, what_in: str, what_out: str) -> None:
        p.add_argument("input", metavar="IN", help=f"{what_in}, or a directory tree of them")
        p.add_argument("output", metavar="OUT", help=f"{what_out}, or a directory (mirrors the input tree)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = subparsers.add_parser("features", help="compute log-Mel features of audio into .npy")
    io_args(p, "an audio file", "an .npy file")
    p.add_argument("--preset", default="amser", help="feature preset (amser, whisper, kaldi); default amser")
    p.set_defaults(run=run_features)

    p = subparsers.add_parser("encode", help="encode audio (or .npy features) into an .amser container")
    io_args(p, "an audio file or .npy features", "an .amser file")
    p.add_argument("--preset", default="amser", help="feature preset that makes (or made) the features")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--rank", type=int, help="components kept per chunk")
    rule.add_argument("--ratio", type=float, help="ratio r/k of components kept, in (0, 1]; default 0.125")
    rule.add_argument("--energy", type=float, help="fraction of energy kept, in (0, 1]")
    p.add_argument("--dtype", default="float16", choices=FACTOR_DTYPES, help="factor storage; default float16")
    p.add_argument("--entropy", default="zlib", choices=["zlib", "zstd", "none"], help="lossless stage; default zlib")
    p.add_argument("--chunk-frames", type=int, default=None, help="frames per chunk (default: one chunk)")
    p.set_defaults(run=run_encode)

    p = subparsers.add_parser("decode", help="decode an .amser container into .npy features")
    io_args(p, "an .amser file", "an .npy file")
    p.set_defaults(run=run_decode)

    p = subparsers.add_parser("info", help="show a container's header, rank, size and bitrate")
    p.add_argument("input", metavar="IN", help="an .amser file or a directory tree of them")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run_info)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every available subcommand module."""
    parser = argparse.ArgumentParser(
        prog="amser",
        description="Log-Mel speech features and compact .amser feature containers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"amser-dsp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = sys.modules[__name__] if name == __name__ else importlib.import_module(name)
        except ImportError:  # an optional extra is not installed: its subcommand is absent
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``amser`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except AmserError as exc:
        print(f"amser {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `amser info ... | head`: the reader left, nothing to report
        return 0
    except OSError as exc:  # unwritable output, full disk: still one line, not a traceback
        print(f"amser {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("amser: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
