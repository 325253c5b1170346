"""Subcommands of ``amser`` that need the server extra: transcribe, send, stream, serve, eval-asr, train-codec,
train-decoder.

Registered through the ``amser_dsp.commands`` entry point; only argument
definitions live here, and the heavy modules load when a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ...cli import (
    Done,
    Job,
    add_codec_arguments,
    codec_arguments,
    container_from,
    is_container,
    jobs_for,
    run_jobs,
    write_output,
)
from ...config import get_preset
from ...container import CONTAINER_SUFFIX
from ...errors import AmserError
from ...io import AUDIO_SUFFIXES
from .. import DEFAULT_BEAM_SIZE

__all__ = ["add_decoder_argument", "add_model_arguments", "add_parsers"]

INPUT_SUFFIXES = (*AUDIO_SUFFIXES, CONTAINER_SUFFIX)


def add_decoder_argument(p: argparse.ArgumentParser) -> None:
    """``--decoder``: how kltdct containers are decoded for the recogniser (serve, transcribe)."""
    p.add_argument(
        "--decoder",
        help="kltdct containers for the recogniser: auto (default: the learned decoder shipped for the model, if "
        "torch is installed), off (the plain inverse transform, as amser decode), or a decoder file (docs/rd.md)",
    )


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model`` and ``--language``, the same on every command that runs Whisper (no model loads for ``--help``)."""
    p.add_argument(
        "--model",
        help="Whisper model: tiny.en (default, packaged), base (extra whisper-base), or a CTranslate2 Whisper "
        "directory (docs/models.md)",
    )
    p.add_argument(
        "--language",
        help="language a multilingual model is asked to transcribe (default en; tiny.en takes only en)",
    )


class _Sent(NamedTuple):
    """A file on its way: its container and seconds, then the service's answer."""

    blob: bytes
    seconds: float | None
    answer: dict[str, Any] | None = None


def _report(job: Job, text: str, blob: bytes, seconds: float | None, as_json: bool, **extra: object) -> Done:
    fields, totals = _fields(job, text, blob, seconds, **extra)
    return Done(json.dumps(fields) if as_json else f"{job.src}: {text}", totals)


def _fields(
    job: Job, text: str, blob: bytes, seconds: float | None, **extra: object
) -> tuple[dict[str, Any], dict[str, float]]:
    """A file's JSON answer (path, text, bytes, kbps, chunks, ``extra``) and its numbers for the summary."""
    from ... import inspect

    info = inspect(blob)
    if seconds is None:  # a container: its framing says how long it is
        seconds = info.seconds or 0.0
    kbps = len(blob) * 8 / seconds / 1000 if seconds else None
    fields = {"path": str(job.src), "text": text, "bytes": len(blob), "kbps": kbps, "chunks": info.n_chunks, **extra}
    return fields, {"seconds": seconds, "bytes": len(blob)}


#: ``amser transcribe --format``: what each file's transcript is written as.
TRANSCRIPT_FORMATS = ("txt", "json", "srt", "vtt")


def cmd_transcribe(args: argparse.Namespace) -> int:
    from ... import encode_audio
    from ..recognition import subtitles
    from ..recognition.models import model_arguments
    from ..recognition.whisper import Transcriber, decode_for_whisper, load_learned_decoder

    form = args.format or ("json" if args.json else "txt")
    if args.json and form != "json":
        raise AmserError(f"--json and --format {form} disagree: give one of them")
    options = codec_arguments(args)
    jobs = jobs_for(args.inputs, INPUT_SUFFIXES, output=args.output, out_suffix=f".{form}")
    if form in ("srt", "vtt") and args.output is None and len(jobs) > 1:
        raise AmserError(f"--format {form} of several files needs --output FOLDER (one subtitle file per input)")
    transcriber = Transcriber(**model_arguments(args), beam_size=args.beam or DEFAULT_BEAM_SIZE)
    decoder, _ = load_learned_decoder(transcriber.name, args.decoder)

    def work(job: Job) -> Done:
        blob, seconds = container_from(
            job.src, lambda audio: encode_audio(audio, "whisper", chunk_seconds=args.chunk_seconds, **options),
            options, args.chunk_seconds,
        )  # fmt: skip
        # another preset's features: refused, not misread
        decoded = transcriber.decode([decode_for_whisper(blob, decoder=decoder).features])[0]
        fields, totals = _fields(job, decoded.text, blob, seconds, segments=[s.to_dict() for s in decoded.segments])
        document = {
            "txt": decoded.text + "\n",
            "json": json.dumps(fields) + "\n",
            "srt": subtitles.srt(decoded.segments),
            "vtt": subtitles.vtt(decoded.segments),
        }[form]
        if job.dst is not None:
            write_output(job.dst, document.encode())
            return Done(None, totals)
        if form == "txt":
            document = f"{job.src}: {decoded.text}"
        return Done(document.rstrip("\n"), totals)

    return run_jobs(jobs, work, "transcribe", progress=form != "json")


def cmd_send(args: argparse.Namespace) -> int:
    """Every file on one connection, each sent as soon as it is encoded, without waiting for answers
    (docs/transfer.md: a round trip per file was most of the time); results print in input order."""
    import threading

    from ...client import Client

    options = codec_arguments(args)
    jobs = jobs_for(args.inputs, INPUT_SUFFIXES)
    if args.window < 1:
        raise AmserError(f"--window must be at least 1, got {args.window}")
    done = threading.Condition()
    outcome: dict[int, _Sent | Exception] = {}  # job position -> the file, or why it failed
    sent: list[int] = []  # the connection's file index -> job position

    def settle(i: int, value: _Sent | Exception) -> None:
        with done:
            if not isinstance(outcome.get(i), Exception):  # a failed connection has settled it already
                outcome[i] = value
            done.notify_all()

    def waiting(i: int) -> bool:
        value = outcome.get(i)
        return value is None or (isinstance(value, _Sent) and value.answer is None)

    with Client(args.url, api_key=args.api_key, window=args.window) as client:

        def containers() -> Iterator[bytes]:  # runs in the client's sending thread
            for i, job in enumerate(jobs):
                try:
                    if job.refused:
                        raise AmserError(job.refused)
                    blob, seconds = container_from(
                        job.src, lambda audio: client.encode(audio, chunk_seconds=args.chunk_seconds, **options),
                        options, args.chunk_seconds,
                    )  # fmt: skip
                except (AmserError, OSError) as exc:
                    settle(i, exc)
                    continue
                sent.append(i)
                settle(i, _Sent(blob, seconds))
                yield blob

        def receive() -> None:
            failure: Exception = AmserError("the service sent no answer for it")
            try:
                for answer in client.transcribe_many(containers()):
                    i = sent[answer["index"]]
                    file = outcome[i]
                    if isinstance(file, _Sent):
                        settle(i, file._replace(answer=answer))
            except (AmserError, OSError) as exc:  # the connection failed: every file still open fails with it
                failure = exc
            finally:
                with done:
                    for i in range(len(jobs)):
                        if waiting(i):
                            outcome[i] = failure
                    done.notify_all()

        receiver = threading.Thread(target=receive, name="amser-receive", daemon=True)
        receiver.start()
        position = {id(job): i for i, job in enumerate(jobs)}

        def work(job: Job) -> Done:
            i = position[id(job)]
            with done:
                done.wait_for(lambda: not waiting(i))
                file = outcome[i]
            if isinstance(file, Exception):
                raise file
            answer = file.answer or {}
            if "error" in answer:
                raise AmserError(f"the service refused it: {answer['error']['message']}")
            return _report(job, answer["text"], file.blob, file.seconds, args.json, request_id=answer.get("request_id"))

        status = run_jobs(jobs, work, "send", progress=not args.json)
        receiver.join()
        return status


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from ..http.server import serve
    from ..http.settings import ServiceSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = ServiceSettings.from_env(
        max_body_bytes=args.max_body_bytes,
        max_audio_seconds=args.max_audio_seconds,
        request_timeout=args.timeout,
        queue_size=args.queue,
        workers=args.workers,
        threads=args.threads,
        api_key_file=args.api_key_file,
        beam_size=args.beam,
        model=args.model,
        language=args.language,
        emotion_model=args.emotion_model,
        decoder=args.decoder,
        idle_timeout=args.idle_timeout,
        max_streams=args.max_streams,
        max_stream_seconds=args.max_stream_seconds,
        recognise=False if args.no_recognise else None,
        metrics_public=True if args.metrics_public else None,
        drain_seconds=args.drain_seconds,
        head_timeout=args.head_timeout,
        min_upload_rate=args.min_upload_rate,
        min_stream_rate=args.min_stream_rate,
        trim_idle=args.trim_idle,
    )
    return serve(settings, args.host, args.port)


def _positive(unit: str) -> Callable[[str], float]:
    """An argparse type: a positive number of ``unit``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of {unit}")
        return value

    return parse


_positive_seconds = _positive("seconds")


class LiveLine:
    """The transcript so far on one terminal line: committed words, then the tentative ones dimmed."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.committed = enabled, ""

    def show(self, partial: str = "") -> None:
        if not self.enabled:
            return
        width = max(20, shutil.get_terminal_size().columns - 1)
        tail = partial and (" " if self.committed else "") + partial
        whole = self.committed + tail
        text = whole[-width:]
        done = max(0, len(self.committed) - (len(whole) - len(text)))
        sys.stdout.write(f"\r\x1b[K{text[:done]}\x1b[2m{text[done:]}\x1b[0m")
        sys.stdout.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()


async def _stream_audio(audio: Any, args: argparse.Namespace, line: LiveLine) -> dict[str, Any]:
    """Stream one signal; the live line follows it; return the file's summary (without its path)."""
    import numpy as np

    from ...client import stream_transcript

    latencies: list[float] = []
    counts: dict[str, int] = {}
    end: dict[str, Any] = {}
    line.committed = ""
    try:
        async for message in stream_transcript(
            args.url,
            audio,
            chunk_seconds=args.chunk_seconds,
            realtime=args.realtime,
            api_key=args.api_key,
            codec=args.service_codec,
        ):
            kind = message["type"]
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "final":
                latencies += [x for x in message["latencies"] if x is not None]
                line.committed += message["text"]
                line.show()
            elif kind == "partial":
                line.show(message["text"])
            elif kind == "end":
                end = message
    finally:
        line.clear()

    def pct(q: float) -> float | None:
        return round(float(np.percentile(latencies, q)), 3) if latencies else None

    return {
        "text": end.get("text", ""),
        "gaps": end.get("gaps", []),
        "seconds": round(audio.size / get_preset("whisper").sample_rate, 3),
        "latency": {"p50": pct(50), "p90": pct(90), "max": pct(100), "words": len(latencies)},
        "messages": counts,
        "server": end.get("timings", {}),
    }


def _service_codec(url: str, api_key: str | None) -> dict[str, Any] | None:
    """The codec the service's model asks for (``/v1/info``'s ``default_codec``); None (the library's default)
    when the service does not answer: the stream then reports why, file by file, as it would have."""
    from ...client import Client

    try:
        with Client(url, api_key=api_key, retries=0) as client:
            return dict(client.info()["default_codec"])
    except (AmserError, KeyError, TypeError):
        return None


def cmd_stream(args: argparse.Namespace) -> int:
    import asyncio

    from ...cli import read_input
    from ...codec.stream import chunk_frames

    chunk_frames(get_preset("whisper"), args.chunk_seconds)  # a bad --chunk-seconds is one error, not one per file
    jobs = jobs_for(args.inputs, AUDIO_SUFFIXES)
    line = LiveLine(sys.stdout.isatty() and not args.json)
    args.service_codec = _service_codec(args.url, args.api_key)

    def work(job: Job) -> Done:
        from ... import load_audio

        data = read_input(job.src)
        if is_container(job.src, data):
            raise AmserError(
                "is a container: amser stream takes audio and encodes it as it sends "
                "(amser send FILE.amser sends a container)"
            )
        rate = get_preset("whisper").sample_rate
        audio = load_audio(io.BytesIO(data) if isinstance(data, bytes) else data, sample_rate=rate)
        result = {"path": str(job.src), **asyncio.run(_stream_audio(audio, args, line))}
        return Done(json.dumps(result) if args.json else f"{job.src}: {result['text']}", {"seconds": result["seconds"]})

    # The live line is the progress display: no progress bar beside it.
    return run_jobs(jobs, work, "stream", progress=False)


def cmd_eval_asr(args: argparse.Namespace) -> int:
    from ..evaluation.run import main

    return main(args)


def cmd_train_codec(args: argparse.Namespace) -> int:
    from ...api import features
    from ...codec.kltdct import tables_from_bytes
    from ...codec.train import clip_folds, fit_tables
    from ...config import get_preset
    from ...io import load_audio
    from ..evaluation.modes import read_asr_manifest

    if args.weights_from and (args.model or args.join):
        raise AmserError("--weights-from reuses measured weights; --model and --join measure them: drop one")
    config = get_preset(args.preset)
    clips = read_asr_manifest(args.manifest)
    if args.ids:
        keep = set(args.ids.read_text().split())
        clips = [c for c in clips if c.id in keep]
    if args.exclude_fold:
        try:
            index, n_folds = (int(v) for v in args.exclude_fold.split("/"))
        except ValueError:
            raise AmserError(f"--exclude-fold {args.exclude_fold!r} is not of the form I/K") from None
        folds = clip_folds([{"id": c.id, "speaker": c.speaker} for c in clips], n_folds)
        clips = [c for c in clips if folds[c.id] != index]
    if not clips:
        raise AmserError(f"no clips to train on in {args.manifest}")
    print(f"training {args.name} on {len(clips)} clips ({args.preset} features)", file=sys.stderr)
    feats = [features(load_audio(c.path), config.sample_rate, config) for c in clips]
    weight, encoders, pieces = None, [], None
    meta = {"clips": [c.id for c in clips], "manifest": args.manifest.name, "preset": args.preset}
    if args.weights_from:
        weight = tables_from_bytes(args.weights_from.read_bytes()).weight
    else:
        from ..recognition.whisper import WINDOW_FRAMES, Transcriber

        models = [Transcriber(model=m) for m in args.model or [None]]
        encoders = [m.encoder_outputs for m in models]
        pieces = WINDOW_FRAMES if args.join else None
        if args.model:  # recorded when chosen: the default's tables stay as make tables always made them
            meta["sensitivity"] = [m.name for m in models]
            print(f"sensitivity of {' and '.join(meta['sensitivity'])} (the mean)", file=sys.stderr)
    tables = fit_tables(
        feats,
        name=args.name,
        config_digest=config.digest(),
        block=args.block,
        encoders=encoders,
        weight=weight,
        meta=meta,
        piece_frames=pieces,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(tables.to_bytes())
    print(f"wrote {args.out} sha256 {tables.sha256}", file=sys.stderr)
    return 0


def cmd_train_decoder(args: argparse.Namespace) -> int:
    from ..recognition.decoder_training import main

    return main(args)


def _default(settings_field: str) -> object:
    from ..http.settings import ServiceSettings

    return {f.name: f.default for f in dataclasses.fields(ServiceSettings)}[settings_field]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the server's commands to the ``amser`` parser."""
    p = sub.add_parser("transcribe", help="encode, decode and transcribe audio locally (no server)")
    p.add_argument("inputs", type=Path, nargs="+", help="audio or .amser files, folders, or - (standard input)")
    add_codec_arguments(p)
    p.add_argument("--json", action="store_true", help="one JSON object per file (the same as --format json)")
    p.add_argument(
        "--format",
        choices=TRANSCRIPT_FORMATS,
        help="txt: the text (default); json: text, segments with times, sizes; srt, vtt: subtitles of the segments",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write each transcript to a file (one input) or a folder mirroring an input folder, "
        "named by --format; default: standard output",
    )
    add_model_arguments(p)
    add_decoder_argument(p)
    p.add_argument("--beam", type=int, help=f"beam size (1: greedy; default {_default('beam_size')})")
    p.set_defaults(run=cmd_transcribe)

    p = sub.add_parser("serve", help="run the HTTP service (containers in, transcripts out)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-body-bytes", type=int, help=f"largest request body (default {_default('max_body_bytes')})")
    p.add_argument(
        "--max-audio-seconds", type=float, help=f"longest audio per request (default {_default('max_audio_seconds')})"
    )
    p.add_argument(
        "--timeout", type=float, help=f"seconds per request before 504 (default {_default('request_timeout')})"
    )
    p.add_argument("--queue", type=int, help=f"requests admitted at once before 503 (default {_default('queue_size')})")
    p.add_argument(
        "--workers",
        type=int,
        help=f"recogniser threads, each with its own model replica: batches run at once (default {_default('workers')})",
    )
    p.add_argument("--threads", type=int, help=f"CPU threads of each recogniser call (default {_default('threads')})")
    p.add_argument("--api-key-file", help="file of accepted API keys, one per line (or AMSER_API_KEY)")
    add_model_arguments(p)
    add_decoder_argument(p)
    p.add_argument("--beam", type=int, help=f"beam size (default {_default('beam_size')})")
    p.add_argument(
        "--emotion-model",
        help="emotion checkpoint for /v1/analyze (default: the packaged one, with the emotion extra; none: off)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        help=f"seconds a WebSocket stream may send nothing before it ends (default {_default('idle_timeout')})",
    )
    p.add_argument(
        "--max-streams", type=int, help=f"WebSocket streams open at once (default {_default('max_streams')})"
    )
    p.add_argument(
        "--max-stream-seconds",
        type=float,
        help=f"longest WebSocket stream in seconds of audio (default {_default('max_stream_seconds')})",
    )
    p.add_argument(
        "--no-recognise",
        action="store_true",
        help="benchmark mode: receive, check and decode files but do not transcribe them (answers have empty "
        "texts; /v1/info says so)",
    )
    p.add_argument(
        "--head-timeout",
        type=_positive_seconds,
        help=f"seconds a client may take to send a request's head (default {_default('head_timeout')})",
    )
    p.add_argument(
        "--min-upload-rate",
        type=_positive("bytes per second"),
        metavar="BYTES_PER_S",
        help="average bytes/s a request body must keep up after --head-timeout of grace, else 408 "
        f"(default {_default('min_upload_rate')})",
    )
    p.add_argument(
        "--min-stream-rate",
        type=_positive("seconds of audio per second"),
        metavar="RATE",
        help="seconds of audio a WebSocket stream must send per second it is open, after --idle-timeout of "
        f"grace, else it ends with too_slow (default {_default('min_stream_rate')})",
    )
    p.add_argument(
        "--drain-seconds",
        type=_positive_seconds,
        help="on SIGTERM, how long to finish the requests and live streams under way before stopping "
        f"(default {_default('drain_seconds')}; docs/operations.md)",
    )
    p.add_argument(
        "--metrics-public",
        action="store_true",
        help="GET /metrics answers without an API key (for a scraper on the operator's network; AMSER_METRICS_PUBLIC=1)",
    )
    p.add_argument(
        "--trim-idle",
        type=float,
        help="seconds idle before free allocator memory goes back to the system; 0: never "
        f"(default {_default('trim_idle')}; docs/soak.md)",
    )
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("stream", help="send audio to a service's live endpoint; show the words as they come")
    p.add_argument("inputs", type=Path, nargs="+", help="audio files, folders, or - (standard input)")
    p.add_argument("--url", required=True, help="service URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", help="API key (default: AMSER_API_KEY)")
    p.add_argument(
        "--chunk-seconds", type=_positive_seconds, default=0.5, help="audio per container chunk (default %(default)s)"
    )
    p.add_argument("--realtime", action="store_true", help="send each chunk when it would have been recorded")
    p.add_argument("--json", action="store_true", help="one JSON object per file: path, text, latency statistics")
    p.set_defaults(run=cmd_stream)

    p = sub.add_parser("send", help="encode audio locally and send it (or send .amser containers) to a service")
    p.add_argument("inputs", type=Path, nargs="+", help="audio or .amser files, folders, or - (standard input)")
    p.add_argument("--url", required=True, help="service URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", help="API key (default: AMSER_API_KEY)")
    add_codec_arguments(p)
    p.add_argument("--json", action="store_true", help="one JSON answer per file")
    p.add_argument("--window", type=int, default=16, help="files sent and not yet answered, at most (default 16)")
    p.set_defaults(run=cmd_send)

    p = sub.add_parser("eval-asr", help="WER of every codec mode and of Opus on a manifest (docs/fidelity.md)")
    p.add_argument("--manifest", required=True, help="TSV with id, path, text (../shared/data/asr/manifest.tsv)")
    p.add_argument("--cache", default=".cache/eval", help="transcript cache folder")
    p.add_argument("--limit", type=int, help="first N clips only")
    p.add_argument(
        "--long",
        action="store_true",
        help="the long-form set: the clips joined in manifest order into recordings of 2, 3, 5 and 10 minutes",
    )
    p.add_argument("--modes", help="regular expression selecting modes (reference and uncompressed always run)")
    add_model_arguments(p)
    p.add_argument("--beam", type=int, default=_default("beam_size"), help="beam size (default %(default)s)")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--markdown", help="also write the table and the Opus comparison (markdown) here")
    p.add_argument("--plot", help="also draw the rate-distortion plot (PNG, needs matplotlib) here")
    p.add_argument(
        "--fold-tables",
        nargs="+",
        metavar="NPZ",
        help="kltdct tables trained without fold 0, 1, ... (amser train-codec --exclude-fold I/K): "
        "evaluate the kltdct modes out of fold (default: the shipped, in-sample tables)",
    )
    p.add_argument(
        "--decoders",
        nargs="+",
        metavar="NPZ",
        help="learned decoders trained without fold 0, 1, ... (amser train-decoder --exclude-fold I/K, with the "
        "--fold-tables of the same fold): add each kltdct mode decoded by them, out of fold",
    )
    p.set_defaults(run=cmd_eval_asr)

    p = sub.add_parser("train-codec", help="train kltdct tables on a manifest's clips (Whisper-weighted)")
    p.add_argument("--manifest", type=Path, required=True, help="TSV with id, path, speaker (paths relative to it)")
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--name", default="whisper-kltdct16-v1", help="table name written in containers")
    p.add_argument("--preset", default="whisper")
    p.add_argument("--block", type=int, default=16)
    p.add_argument("--ids", type=Path, help="train only on the clip ids listed in this file")
    p.add_argument(
        "--exclude-fold",
        metavar="I/K",
        help="train on every speaker-disjoint fold but I of K (see clip_folds), for out-of-fold evaluation",
    )
    p.add_argument("--weights-from", type=Path, help="reuse the sensitivity weights of these tables")
    p.add_argument(
        "--model",
        action="append",
        help="Whisper model whose encoder's sensitivity shapes the quantisation noise (a name or a directory); "
        "repeat it for several: the mean of their normalised sensitivities (default: tiny.en)",
    )
    p.add_argument(
        "--join",
        action="store_true",
        help="measure the sensitivity on the clips joined into 30 s pieces, not clip by clip (a quarter of the "
        "encoder time on 7 s clips; the shipped tables were measured clip by clip)",
    )
    p.set_defaults(run=cmd_train_codec)

    p = sub.add_parser(
        "train-decoder", help="train the learned kltdct decoder through Whisper's frozen encoder (needs torch)"
    )
    add_model_arguments(p)
    p.add_argument("--asr-manifest", required=True, help="TSV of transcribed clips (../shared/data/asr/manifest.tsv)")
    p.add_argument("--emotion-manifest", help="also train on these clips' speech (../shared/data/emotion/manifest.tsv)")
    p.add_argument(
        "--emotion-corpora",
        help="only these corpora of --emotion-manifest, comma-separated (emodb: CC0; ravdess is CC BY-NC-SA)",
    )
    p.add_argument("--tables", help="kltdct table file to code with (default: the shipped tables)")
    p.add_argument(
        "--exclude-fold", metavar="I/K", help="leave out speaker-disjoint ASR fold I of K (as train-codec does)"
    )
    p.add_argument("--minutes", type=float, default=12.0, help="wall-time budget of the fitting (default 12)")
    p.add_argument("--min-step", type=int, default=-64, help="finest kltdct step the decoder is used at (default: all)")
    p.add_argument(
        "--no-balance",
        action="store_true",
        help="weigh pieces by their absolute encoder error (default: relative to the plain decoder's, so fine "
        "steps count as much as coarse ones)",
    )
    p.add_argument(
        "--asr-repeat",
        type=int,
        default=1,
        help="draw the --asr-manifest clips this many times as often as the emotion clips (default 1)",
    )
    p.add_argument("--init", help="start from this decoder file (for instance another recogniser's: a fine-tuning)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine to zero; default 0.001)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--cache", default=".cache/decoder", help="feature cache folder ('' for none)")
    p.add_argument("-o", "--output", required=True, help="the decoder file to write (.npz)")
    p.set_defaults(run=cmd_train_decoder)
