"""The ``amser`` command: features, encode, decode, info (and the commands of installed extras).

It parses arguments, calls the public API and turns :class:`AmserError` into
one line on stderr and exit status 1 (2 for usage errors).  Every command that
takes files treats them alike (:func:`run_jobs`): a folder is walked, a bad file
is named and skipped, a summary goes to stderr, and the status is 1 if any file
failed.  ``-`` as a path is standard input or output.  Extras add commands
through the ``amser_dsp.commands`` entry-point group (each entry point names a
function ``add_parsers(subparsers)``), so this module never imports them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import PRESETS, __version__
from .config import DEFAULT_PRESET, FeatureConfig
from .container import CONTAINER_SUFFIX
from .errors import AmserError, AmserWarning
from .io import AUDIO_SUFFIXES

__all__ = [
    "STDIO",
    "Done",
    "Job",
    "Progress",
    "add_codec_arguments",
    "amser_warnings",
    "clash_reason",
    "codec_arguments",
    "container_from",
    "jobs_for",
    "main",
    "read_input",
    "run_jobs",
    "write_output",
]

#: ``-``: standard input as an input path, standard output as an output path.
STDIO = Path("-")
ENTRY_POINT_GROUP = "amser_dsp.commands"

EPILOG = """examples:
  amser features speech.flac speech.npy                       # the whisper preset, as everywhere
  amser encode speech.flac speech.amser                       # the default codec (kltdct)
  amser encode speech.flac speech.amser --kbps 2.5            # kltdct at a target bitrate
  amser encode speech.flac speech.amser --rank 20 --factor-dtype int8   # SVD, as the paper
  amser encode recordings/ containers/ --ratio 0.125          # a whole tree, mirrored
  arecord -f S16_LE -r 16000 -t wav | amser encode - - > speech.amser
  amser decode speech.amser speech.npy
  amser info containers/ --json                               # one JSON object per file
"""


# ------------------------------------------------------------------ helpers
class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal (or when forced)."""

    def __init__(self, total: int, label: str, *, enabled: bool | None = None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self._shown = False

    def _draw(self, name: str = "") -> None:
        width = 30
        filled = width * self.done // max(self.total, 1)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {name[:40]:40s}"
        )
        sys.stderr.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False

    def write(self, text: str, *, err: bool = False) -> None:
        """Print a line (to stdout, or stderr) without mixing it into the bar."""
        self._clear()
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
        if self.enabled and self.done < self.total:
            self._draw()

    def step(self, name: str) -> None:
        self.done += 1
        if self.enabled:
            self._draw(name)

    def close(self) -> None:
        self._clear()


@dataclass(frozen=True)
class Job:
    """One input file, the output it makes (None for commands that print), and a reason it cannot run."""

    src: Path
    dst: Path | None = None
    refused: str | None = None


@dataclass
class Done:
    """What one job did: a line to print (stdout) and numbers to add up in the summary."""

    output: str | None = None
    totals: dict[str, float] = field(default_factory=dict)


def _files_under(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    wanted = tuple(s.lower() for s in suffixes)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in wanted)


def _is_folder(output: Path | str) -> bool:
    """An output names a folder if it is one, or ends in a separator (``out/``: created as a folder)."""
    text = os.fspath(output)
    return Path(text) != STDIO and (text.endswith(("/", os.sep)) or Path(text).is_dir())


def _overwrites_input(job: Job) -> bool:
    """True if the job's output is its input (the same path, or the same file through a link)."""
    if job.dst is None or STDIO in (job.src, job.dst):
        return False
    try:
        return os.path.samefile(job.src, job.dst)
    except OSError:  # the output does not exist yet
        return False


def jobs_for(
    inputs: Sequence[Path],
    suffixes: Iterable[str],
    *,
    output: Path | str | None = None,
    out_suffix: str | None = None,
) -> list[Job]:
    """The jobs of a command: every input file, and every matching file under the input folders.

    With ``output``, one input maps to it: a file; or a folder (an existing
    one, or a name ending in ``/``) that takes a file's output under the
    file's name, or mirrors an input folder.  Jobs are refused, each named,
    when inputs would write the same output (``x.wav`` and ``x.flac`` to
    ``x.amser``) or when the output is the input itself (the same path, or
    the same file through a link): nothing is read before this check.

    Raises
    ------
    AmserError
        If an input does not exist, a folder holds no matching file, or ``-`` /
        a folder is combined with an output that cannot take it.
    """
    suffixes = tuple(suffixes)
    into_folder = output is not None and _is_folder(output)
    out = None if output is None else Path(os.fspath(output))
    jobs: list[Job] = []
    for item in inputs:
        if item == STDIO:
            if into_folder:
                raise AmserError(
                    f"standard input has no file name to give its output in the folder {out}: "
                    "name an output file (or - for standard output)"
                )
            jobs.append(Job(STDIO, out))
        elif item.is_dir():
            files = _files_under(item, suffixes)
            if not files:
                raise AmserError(f"no {'/'.join(suffixes)} files under {item}")
            if out is None:
                jobs += [Job(p) for p in files]
            elif out == STDIO:
                raise AmserError(f"{item} is a folder: its outputs cannot all go to standard output")
            else:
                jobs += [Job(p, (out / p.relative_to(item)).with_suffix(out_suffix or "")) for p in files]
        elif item.exists():
            jobs.append(Job(item, out / Path(item.name).with_suffix(out_suffix or "") if into_folder and out else out))
        else:
            raise AmserError(f"input not found: {item}")
    by_output: dict[Path, list[Job]] = {}
    for job in jobs:
        if job.dst is not None and job.dst != STDIO:
            by_output.setdefault(job.dst, []).append(job)
    clashes = {id(j): group for group in by_output.values() if len(group) > 1 for j in group}
    return [_refusal(j, clashes.get(id(j))) for j in jobs]


def _refusal(job: Job, clash: list[Job] | None) -> Job:
    """The job, refused with the reason if its output would overwrite its input or another job's output."""
    if _overwrites_input(job):
        how = "" if job.src == job.dst else " (the same file through a link)"
        return Job(job.src, job.dst, f"the output {job.dst} is the input{how}: writing it would destroy the input")
    if clash:
        return Job(job.src, job.dst, clash_reason([o.src for o in clash], job.dst))
    return job


def clash_reason(sources: Iterable[object], output: object) -> str:
    """Why inputs that would all write one output are refused (the CLI and ``amser batch`` alike)."""
    return f"{', '.join(str(s) for s in sources)} would all be written to {output}; rename one of them"


def read_input(path: Path) -> bytes | Path:
    """A path, or the bytes of standard input for ``-``.

    Raises
    ------
    AmserError
        If standard input is empty.
    """
    if path != STDIO:
        return path
    data = sys.stdin.buffer.read()
    if not data:
        raise AmserError("nothing arrived on it (pipe a file in: amser encode - out.amser < in.wav)")
    return data


def write_output(path: Path | None, data: bytes | Callable[[Any], None]) -> None:
    """Write bytes (or call ``data(fileobj)``) to ``path``, or to standard output for ``-``.

    A file is written under a temporary name and renamed, so an interrupted run
    never leaves a half-written output.  ``path`` is a :class:`Job`'s ``dst``:
    None (a job listed without an output) is refused.

    Raises
    ------
    AmserError
        If no output was named, or it cannot be written (a folder of that name, no permission, ...).
    """
    if path is None:
        raise AmserError("no output was named for it")
    if path == STDIO:
        if callable(data):
            # Into memory first: np.save on a pipe asks for the file position, which fails under qemu-user (arm64).
            buf = io.BytesIO()
            data(buf)
            data = buf.getvalue()
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
        return
    if path.parent.exists() and not path.parent.is_dir():
        raise AmserError(f"cannot write the output {path}: {path.parent} is a file, not a folder")
    tmp = path.with_name(f".{path.name}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            data(fh) if callable(data) else fh.write(data)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise AmserError(f"cannot write the output {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def amser_warnings() -> Iterator[list[str]]:
    """Collect the library's warnings (a rate target not met, audio cut short) as messages, each once.

    Every command prints them as ``amser: warning: FILE: message`` lines rather
    than as Python warnings with a source line.
    """
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AmserWarning)
        try:
            yield found
        finally:
            found += dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, AmserWarning))


def run_jobs(jobs: list[Job], work: Callable[[Job], Done], label: str, *, progress: bool = True) -> int:
    """Run ``work`` per job: keep going past failures, name each, summarise several; 1 if any failed.

    Library warnings (a rate target not met) are printed with the file they concern.
    """
    several = len(jobs) > 1
    bar = Progress(len(jobs), label, enabled=None if (several and progress) else False)
    failures = 0
    totals: dict[str, float] = {}
    for job in jobs:
        name = "standard input" if job.src == STDIO else str(job.src)
        with amser_warnings() as caught:
            try:
                if job.refused:
                    raise AmserError(job.refused)
                done = work(job)
            except AmserError as exc:
                failures += 1
                bar.write(f"amser: error: {name}: {exc}", err=True)
                done = None
            except BrokenPipeError:
                raise  # the reader of standard output is gone: main() stops quietly
            except OSError as exc:
                failures += 1
                bar.write(f"amser: error: {name}: {exc.strerror or exc}", err=True)
                done = None
        for message in caught:
            bar.write(f"amser: warning: {name}: {message}", err=True)
        if done is not None:
            if done.output is not None:
                bar.write(done.output)
            for key, value in done.totals.items():
                totals[key] = totals.get(key, 0.0) + value
        bar.step(Path(name).name)
    bar.close()
    if several:
        summary = f"{label}: {len(jobs) - failures} of {len(jobs)} files"
        if failures:
            summary += f" ({failures} failed)"
        if totals.get("seconds"):
            summary += f", {totals['seconds']:.1f} s of audio"
        if totals.get("bytes") and totals.get("seconds"):
            summary += f", {int(totals['bytes'])} bytes ({totals['bytes'] * 8 / totals['seconds'] / 1000:.2f} kbps)"
        print(summary, file=sys.stderr)
    return 1 if failures else 0


def add_codec_arguments(p: argparse.ArgumentParser) -> None:
    """``--codec``, one option per codec option (declared by the codec classes), and ``--chunk-seconds``."""
    from .codec import registered

    group = p.add_argument_group("codec (default kltdct step -4; an option implies its codec)")
    group.add_argument("--codec", choices=sorted(registered()), help="codec name")
    seen: set[str] = set()
    for cls in sorted(registered().values(), key=lambda c: c.name):
        for name, f in cls.options().items():
            if name in seen:
                continue
            seen.add(name)
            meta = f.metadata
            group.add_argument(
                f"--{name.replace('_', '-')}",
                dest=f"codec_{name}",
                type=meta["type"] or str,
                choices=meta["choices"] or None,
                help=meta["help"],
            )
    p.add_argument("--chunk-seconds", type=float, help="audio per self-contained chunk (default: one chunk)")


def codec_arguments(args: argparse.Namespace, config: FeatureConfig | None = None) -> dict[str, Any]:
    """Keyword arguments for ``encode_audio`` / ``StreamEncoder`` / the client from :func:`add_codec_arguments`.

    Only what was given: ``codec`` (a name) and the codec options, checked
    once here (options of different codecs, a value out of range), with
    ``--chunk-seconds`` against ``config`` (default: the default preset), so
    that a bad combination is one error, not the same failure for every file.
    """
    from .codec import make_codec, registered
    from .codec.stream import chunk_frames

    if getattr(args, "chunk_seconds", None) is not None:
        chunk_frames(config or PRESETS[DEFAULT_PRESET], args.chunk_seconds)

    out: dict[str, Any] = {}
    if args.codec is not None:
        out["codec"] = args.codec
    for cls in registered().values():
        for name in cls.options():
            value = getattr(args, f"codec_{name}", None)
            if value is not None:
                out[name] = value
    if out:
        make_codec(**out)
    return out


# ----------------------------------------------------------------- commands
def cmd_features(args: argparse.Namespace) -> int:
    from . import features

    cfg = PRESETS[args.preset]

    def work(job: Job) -> Done:
        audio = _load_audio(job.src, cfg.sample_rate)
        feats = features(audio, cfg.sample_rate, cfg, backend=args.backend)
        write_output(job.dst, lambda fh: np.save(fh, feats))
        return Done(totals={"seconds": audio.size / cfg.sample_rate})

    return run_jobs(jobs_for([args.input], AUDIO_SUFFIXES, output=args.output, out_suffix=".npy"), work, "features")


def _load_audio(src: Path, sample_rate: int) -> np.ndarray:
    return _load_audio_data(read_input(src), sample_rate)


def _load_audio_data(data: bytes | Path, sample_rate: int) -> np.ndarray:
    from . import load_audio

    return load_audio(io.BytesIO(data) if isinstance(data, bytes) else data, sample_rate=sample_rate)


def is_container(src: Path, data: bytes | Path) -> bool:
    """Whether an input (from :func:`read_input`) is a container: bytes with its magic, or a ``.amser`` path."""
    from .container import MAGIC

    return data[:4] == MAGIC if isinstance(data, bytes) else src.suffix.lower() == CONTAINER_SUFFIX


def container_from(
    src: Path,
    encode: Callable[[np.ndarray], bytes],
    options: dict[str, Any],
    chunk_seconds: float | None,
    *,
    sample_rate: int = PRESETS[DEFAULT_PRESET].sample_rate,
) -> tuple[bytes, float | None]:
    """A container from an input that is one already (``.amser``, or bytes starting with its magic) or audio.

    Audio is loaded at ``sample_rate`` (default: the default preset's, the one the commands encode with) and
    passed to ``encode``.  Returns the container
    and the audio's duration (None for a container: its info says).

    Raises
    ------
    AmserError
        If codec options or ``chunk_seconds`` come with a container (it is encoded already).
    """
    data = read_input(src)
    if is_container(src, data):
        given = sorted(options) + (["chunk_seconds"] if chunk_seconds is not None else [])
        if given:
            raise AmserError(f"is a container, encoded already: codec options {given} do not apply to it")
        return (data if isinstance(data, bytes) else src.read_bytes()), None
    audio = _load_audio_data(data, sample_rate)
    return encode(audio), audio.size / sample_rate


def cmd_encode(args: argparse.Namespace) -> int:
    from . import encode_audio

    cfg = PRESETS[args.preset]
    options = codec_arguments(args, cfg)

    def work(job: Job) -> Done:
        audio = _load_audio(job.src, cfg.sample_rate)
        blob = encode_audio(audio, cfg, chunk_seconds=args.chunk_seconds, **options)
        write_output(job.dst, blob)
        return Done(totals={"seconds": audio.size / cfg.sample_rate, "bytes": len(blob)})

    jobs = jobs_for([args.input], AUDIO_SUFFIXES, output=args.output, out_suffix=CONTAINER_SUFFIX)
    return run_jobs(jobs, work, "encode")


def cmd_decode(args: argparse.Namespace) -> int:
    from . import decode

    def work(job: Job) -> Done:
        feats = decode(read_input(job.src))
        write_output(job.dst, lambda fh: np.save(fh, feats))
        return Done()

    jobs = jobs_for([args.input], (CONTAINER_SUFFIX,), output=args.output, out_suffix=".npy")
    return run_jobs(jobs, work, "decode")


def _describe(info: dict[str, Any]) -> str:
    cfg = info["config"]
    preset = next((n for n, c in PRESETS.items() if cfg and c.to_dict() == cfg), "custom" if cfg else "none")
    codec = ", ".join(f"{k}={v}" for k, v in info["codec"].items() if k != "codec" and v is not None)
    rate = f"{info['kbps']:.2f} kbps, {info['percent_of_pcm']:.2f}% of 16-bit PCM" if info["kbps"] else "rate unknown"
    return (
        f"{info['path']}: format {info['format_version']}, preset {preset}, codec {info['codec']['codec']} ({codec}), "
        f"{info['n_mels']} x {info['n_frames']} frames in {info['n_chunks']} chunk(s), {info['bytes']} bytes "
        f"(header {info['header_bytes']}), {rate}"
    )


def cmd_info(args: argparse.Namespace) -> int:
    from . import inspect

    def work(job: Job) -> Done:
        info = {"path": str(job.src), **inspect(read_input(job.src)).to_dict()}
        return Done(json.dumps(info) if args.json else _describe(info))

    return run_jobs(jobs_for(args.inputs, (CONTAINER_SUFFIX,)), work, "info")


# ------------------------------------------------------------------- parser
def _load_extensions(sub: argparse._SubParsersAction) -> None:
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            add_parsers = ep.load()
        except ImportError:
            continue  # an extra's module could not load; its commands are absent
        add_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amser",
        description="Log-Mel features and compact feature containers for speech.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"amser-dsp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("features", "audio file(s) to log-Mel features (.npy)")
    p.add_argument("input", type=Path, help="audio file, folder, or - (standard input)")
    p.add_argument("output", help=".npy file, folder, or - (standard output)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET)
    p.add_argument("--backend", help="compute back end (default: fastest installed)")
    p.set_defaults(run=cmd_features)

    p = command("encode", "audio file(s) to .amser containers")
    p.add_argument("input", type=Path, help="audio file, folder, or - (standard input)")
    p.add_argument("output", help=".amser file, folder, or - (standard output)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET)
    add_codec_arguments(p)
    p.set_defaults(run=cmd_encode)

    p = command("decode", ".amser container(s) to features (.npy)")
    p.add_argument("input", type=Path, help=".amser file, folder, or - (standard input)")
    p.add_argument("output", help=".npy file, folder, or - (standard output)")
    p.set_defaults(run=cmd_decode)

    p = command("info", "describe .amser container(s)")
    p.add_argument("inputs", type=Path, nargs="+", help=".amser files, folders, or - (standard input)")
    p.add_argument("--json", action="store_true", help="one JSON object per container")
    p.set_defaults(run=cmd_info)

    _load_extensions(sub)
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
    except BrokenPipeError:
        # The reader went away (`amser info ... | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        print(f"amser: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("amser: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
