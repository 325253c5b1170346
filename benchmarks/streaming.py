"""Live transcription measured: WER against offline, word commit latency, partial churn, streams sustained.

    python benchmarks/streaming.py [--chunks 0.16 0.5 1 2] [--limit N] [--utterance-end S] [--json out/streaming.json]
    python benchmarks/streaming.py --capacity 1 2 4 8 [--chunk 0.5] [--seconds 40] [--threads T] [--workers W]

The first form runs every clip of ``../shared/data/asr`` through the live policy
(:mod:`amser_dsp.server.recognition.live`) with the service's recogniser, paced in real
time on a simulated clock: chunk k of a clip arrives when its audio has been
recorded, a decode starts when the recogniser is free and covers every chunk
that has arrived by then, and it takes as long as it really took here (each
decode is timed).  That is what one real-time stream on an otherwise idle
server sees, without waiting through the idle time between chunks.

- ``wer``: final transcript against the reference text, Whisper's English normaliser;
  ``offline``: the same container's features transcribed whole (the HTTP path),
  ``vs offline``: final transcript scored against the offline transcript.
- commit latency: for each committed word, the time from the moment the chunk
  holding the word's end (by its aligned end time) was sent to the moment the
  word was committed (p50, p90 over all words).
- offline words lost: offline's words the final transcript has nothing for (deletions of the
  word alignment); clips losing words: final transcripts with fewer than 90% of offline's words;
  gaps: stretches of speech reported without words.
- churn: words taken back from the displayed text (committed + partial) per final word.
- ``rtf``: recogniser time per second of audio.

The second form (``--capacity``) starts ``amser serve`` on 127.0.0.1 and runs N
WebSocket clients at once, each sending clips in real time (each in its own order
of the clips) for ``--seconds``, and reports per N: commit latency p50/p90 measured
by the clients, lag and gap messages, and every streamed clip's final transcript
against the same server's offline transcript of it (WER, offline words lost, clips
losing words).  The streams one server sustains are those within the latency
targets (p50 <= 2 s, p90 <= 3.5 s) with no lag.

Timings depend on the machine's load: run under ``flock /work/.bench.lock`` and
note the load average (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import amser_dsp
from amser_dsp.server.evaluation.modes import read_asr_manifest
from amser_dsp.server.evaluation.scoring import edit_counts, normaliser, word_errors
from amser_dsp.server.recognition.live import FRAMES_PER_SECOND, LiveTranscript, StreamingSettings
from amser_dsp.server.recognition.whisper import Transcriber, WhisperRecogniser

MANIFEST = Path(__file__).resolve().parents[1] / "../shared/data/asr/manifest.tsv"


def chunked(audio: np.ndarray, chunk_seconds: float) -> list[np.ndarray]:
    """The feature chunks a StreamEncoder sends (through the container and back, as the server sees them)."""
    blob = amser_dsp.encode_audio(audio, "whisper", chunk_seconds=chunk_seconds)
    decoder = amser_dsp.StreamDecoder()
    return decoder.feed(blob)


def erased(before: list[str], after: list[str]) -> int:
    """Words of ``before`` that ``after`` does not keep (everything past their common prefix)."""
    n = 0
    while n < min(len(before), len(after)) and before[n] == after[n]:
        n += 1
    return len(before) - n


def simulate(recogniser, chunks: list[np.ndarray], settings: StreamingSettings) -> dict:  # type: ignore[no-untyped-def]
    """One clip through the live policy on a simulated real-time clock."""
    arrivals = np.cumsum([c.shape[1] for c in chunks]) / FRAMES_PER_SECOND  # when each chunk has been recorded
    live = LiveTranscript(settings)
    clock, k, busy = 0.0, 0, 0.0
    latencies, churn, shown = [], 0, []
    while not live.done:
        while k < len(chunks) and arrivals[k] <= clock + 1e-9:
            live.add(chunks[k])
            k += 1
        if k == len(chunks) and not live.finished:
            live.finish()
        request = live.request()
        if request is None:
            if k < len(chunks):
                clock = max(clock, arrivals[k])
                continue
            if live.done:
                break
            raise AssertionError("the policy neither finished nor asked for a decode")
        t0 = time.perf_counter()
        (hypothesis,) = recogniser.hypotheses([request])
        spent = time.perf_counter() - t0
        busy += spent
        clock += spent
        update = live.apply(hypothesis)
        for word in update.final:
            sent = arrivals[min(np.searchsorted(arrivals, word.end - 1e-6), len(arrivals) - 1)]
            latencies.append(clock - sent)
        display = [w.text for w in live.committed] + [w.text for w in update.partial]
        churn += erased(shown, display)
        shown = display
    return {
        "text": live.text,
        "gaps": len(live.gaps),
        "latencies": latencies,
        "churn": churn,
        "busy": busy,
        "seconds": float(arrivals[-1]),
        "decodes": live.decodes,
    }


def joined(clips, pause: float):  # type: ignore[no-untyped-def]
    """Clips in pairs, ``pause`` seconds of digital silence between them: utterances a pause apart."""
    from amser_dsp.server.evaluation.modes import Clip

    out = []
    for a, b in zip(clips[::2], clips[1::2], strict=False):
        audio = np.concatenate(
            [amser_dsp.load_audio(a.path), np.zeros(round(pause * 16000), np.float32), amser_dsp.load_audio(b.path)]
        )
        out.append((Clip(f"{a.id}+{b.id}", a.path, f"{a.text} {b.text}", a.speaker), audio))
    return out


def run_chunk_size(transcriber, recogniser, clips, chunk_seconds, settings, offline_cache, pause=None):  # type: ignore[no-untyped-def]
    norm, _ = normaliser()
    rows = []
    streams = joined(clips, pause) if pause is not None else [(c, amser_dsp.load_audio(c.path)) for c in clips]
    for clip, audio in streams:
        chunks = chunked(audio, chunk_seconds)
        key = (clip.id, chunk_seconds)
        if key not in offline_cache:
            offline_cache[key] = transcriber.transcribe(np.concatenate(chunks, axis=1))
        result = simulate(recogniser, chunks, settings)
        result["offline"] = offline_cache[key]
        result["reference"] = clip.text
        result["id"] = clip.id
        rows.append(result)
        print(f"  {clip.id}: {result['text']}", file=sys.stderr)
    vs_offline = np.array([word_errors(norm(r["offline"]), norm(r["text"])) for r in rows])
    latencies = np.concatenate([r["latencies"] for r in rows]) if rows else np.zeros(0)
    finals = sum(len(r["text"].split()) for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    return {
        "chunk_seconds": chunk_seconds,
        "clips": len(rows),
        **compare([(r["reference"], r["offline"], r["text"]) for r in rows]),
        "vs_offline": 100 * vs_offline[:, 0].sum() / max(1, vs_offline[:, 1].sum()),
        "latency_p50": float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
        "latency_p90": float(np.percentile(latencies, 90)) if latencies.size else float("nan"),
        "churn": sum(r["churn"] for r in rows) / max(1, finals),
        "rtf": sum(r["busy"] for r in rows) / seconds,
        "gaps": sum(r["gaps"] for r in rows),
        "decodes_per_second": sum(r["decodes"] for r in rows) / seconds,
        "rows": rows,
    }


async def _client(url: str, order: list[int], audios: list[np.ndarray], chunk_seconds: float, deadline: float) -> dict:
    """One real-time client: streams clips (in ``order``, round and round) until ``deadline``."""
    from amser_dsp.client import StreamFailedError, stream_transcript

    latencies, lags, gaps, texts, failures = [], 0, 0, [], []
    i = 0
    while time.monotonic() < deadline:
        clip = order[i % len(order)]
        i += 1
        try:
            async for message in stream_transcript(url, audios[clip], chunk_seconds=chunk_seconds, realtime=True):
                if message["type"] == "final":
                    latencies += message["latencies"]
                elif message["type"] == "lag":
                    lags += 1
                elif message["type"] == "gap":
                    gaps += 1
                elif message["type"] == "end":
                    texts.append((clip, message["text"]))
        except StreamFailedError as exc:
            failures.append(f"clip {clip}: {exc}")
    return {"latencies": latencies, "lags": lags, "gaps": gaps, "texts": texts, "failures": failures}


def offline_texts(url: str, audios: list[np.ndarray], chunk_seconds: float) -> list[str]:
    """Each clip's streamed features transcribed whole by the same server (``/v1/transcribe``)."""
    from amser_dsp.client import Client

    blobs = [amser_dsp.encode_audio(a, "whisper", chunk_seconds=chunk_seconds) for a in audios]
    with Client(url, timeout=600) as client:
        return [a["text"] for a in sorted(client.transcribe_many(blobs), key=lambda a: a["index"])]


def compare(pairs: list[tuple[str, str, str]]) -> dict:
    """WER of streamed and offline transcripts (against the references), offline words lost by the streams.

    ``pairs``: (reference, offline, streamed) per stream.  A stream "loses words" when it has fewer
    than 90% of offline's words; ``words_lost`` counts offline words the streamed transcript has
    nothing for (deletions of the alignment).
    """
    norm, _ = normaliser()
    live = offline = n = lost = losing = 0
    for reference, off, text in pairs:
        ref, off, text = norm(reference), norm(off), norm(text)
        errors, words = word_errors(ref, text)
        live, n, offline = live + errors, n + words, offline + word_errors(ref, off)[0]
        lost += edit_counts(off, text)[1]
        if len(text.split()) < 0.9 * len(off.split()):
            losing += 1
            print(f"  fewer words than offline: {text!r} (offline {off!r})", file=sys.stderr)
    return {
        "wer": 100 * live / max(n, 1),
        "offline_wer": 100 * offline / max(n, 1),
        "words_lost": lost,
        "offline_words": sum(len(norm(o).split()) for _, o, _ in pairs),
        "streams_losing_words": losing,
    }


def capacity(clips, counts: list[int], chunk_seconds: float, seconds: float, serve_args: list[str]) -> list[dict]:  # type: ignore[no-untyped-def]
    """N real-time WebSocket streams at once against one local server, for each N."""
    import asyncio

    from amser_dsp.server.http.local import LocalServer

    audios = [amser_dsp.load_audio(c.path) for c in clips]
    rows = []
    with LocalServer(serve_args) as url:
        offline = offline_texts(url, audios, chunk_seconds)
        for n in counts:
            deadline = time.monotonic() + seconds

            async def crowd(n: int = n, deadline: float = deadline) -> list[dict]:
                # Each client starts on a different clip (and goes through them in its own order), so
                # that the streams differ in speech, in length and in when their chunks arrive.
                orders = [list(np.random.default_rng(k).permutation(len(audios))) for k in range(n)]
                return await asyncio.gather(*(_client(url, o, audios, chunk_seconds, deadline) for o in orders))

            results = asyncio.run(crowd())
            latencies = np.array([x for r in results for x in r["latencies"] if x is not None])
            pairs = [(clips[c].text, offline[c], text) for r in results for c, text in r["texts"]]
            row = {
                "streams": n,
                "latency_p50": float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
                "latency_p90": float(np.percentile(latencies, 90)) if latencies.size else float("nan"),
                "lag_messages": sum(r["lags"] for r in results),
                "gap_messages": sum(r["gaps"] for r in results),
                "clips": len(pairs),
                "failures": [f for r in results for f in r["failures"]],
                **compare(pairs),
                "load": os.getloadavg()[0],
            }
            print({k: v for k, v in row.items()}, file=sys.stderr)
            rows.append(row)
    return rows


def capacity_table(rows: list[dict]) -> str:
    lines = ["| real-time streams | latency p50 (s) | p90 (s) | lag messages | clips | WER % | offline WER % | "
             "offline words lost | clips losing words | gaps | failed | load (1 min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['streams']} | {r['latency_p50']:.2f} | {r['latency_p90']:.2f} | {r['lag_messages']} | "
            f"{r['clips']} | {r['wer']:.2f} | {r['offline_wer']:.2f} | {r['words_lost']} of {r['offline_words']} | "
            f"{r['streams_losing_words']} | {r['gap_messages']} | {len(r['failures'])} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


def noise_table(recogniser, settings: StreamingSettings, chunk_seconds: float) -> str:  # type: ignore[no-untyped-def]
    """10 s of silence and of noises at low levels through the policy: the text each gives (should be none)."""
    rng = np.random.default_rng(1)
    n = 160_000
    white = rng.standard_normal(n)
    brown = np.cumsum(rng.standard_normal(n))
    brown -= np.convolve(brown, np.ones(400) / 400, "same")  # no drift
    hum = np.sin(2 * np.pi * 50 * np.arange(n) / 16000)
    signals = [("digital silence", np.zeros(n))]
    for kind, sig in (("white noise", white), ("brown noise", brown), ("50 Hz hum", hum)):
        signals += [(f"{kind} {db} dBFS", sig / np.sqrt(np.mean(sig**2)) * 10 ** (db / 20)) for db in (-60, -50, -40)]
    lines = ["| 10 s of | decodes | decodes skipped (no speech energy) | text |", "|---|---|---|---|"]
    for name, sig in signals:
        chunks = chunked(sig.astype(np.float32), chunk_seconds)
        live = LiveTranscript(settings)
        for c in chunks:
            live.add(c)
            if (r := live.request()) is not None:
                live.apply(recogniser.hypotheses([r])[0])
        live.finish()
        while (r := live.request()) is not None:
            live.apply(recogniser.hypotheses([r])[0])
        lines.append(f"| {name} | {live.decodes} | {live.skipped} | {live.text!r} |")
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    lines = [
        "| chunk (s) | clips | WER % | offline WER % | WER - offline | vs offline % | offline words lost | "
        "clips losing words | gaps | latency p50 (s) | p90 (s) | churn | decodes/s | RTF |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['chunk_seconds']:g} | {r['clips']} | {r['wer']:.2f} | {r['offline_wer']:.2f} | "
            f"{r['wer'] - r['offline_wer']:+.2f} | {r['vs_offline']:.2f} | {r['words_lost']} of {r['offline_words']} | "
            f"{r['streams_losing_words']} | {r['gaps']} | {r['latency_p50']:.2f} | {r['latency_p90']:.2f} | "
            f"{r['churn']:.3f} | {r['decodes_per_second']:.2f} | {r['rtf']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--chunks", type=float, nargs="+", default=[0.16, 0.5, 1.0, 2.0])
    parser.add_argument("--limit", type=int, help="first N clips only")
    parser.add_argument("--beam", type=int, default=5, help="beam of the interim decodes")
    parser.add_argument("--final-beam", type=int, default=5, help="beam of the last decode and of offline")
    parser.add_argument("--min-window", type=int, default=1000, help="encoder frames at least (3000: as offline)")
    parser.add_argument(
        "--final-window", type=int, default=2000, help="encoder frames at least of a stream's last decode"
    )
    parser.add_argument("--trim", type=float, default=StreamingSettings.trim_seconds)
    parser.add_argument(
        "--utterance-end",
        type=float,
        default=StreamingSettings.utterance_end_seconds,
        help="seconds of pause that end an utterance (0: never)",
    )
    parser.add_argument("--threads", type=int, default=1, help="recogniser CPU threads")
    parser.add_argument(
        "--workers", type=int, default=1, help="recogniser threads of the capacity run's server (its model replicas)"
    )
    parser.add_argument(
        "--pause", type=float, help="stream the clips in pairs, this many seconds of silence between them"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--capacity", type=int, nargs="+", metavar="N", help="measure N concurrent streams instead")
    parser.add_argument("--chunk", type=float, default=0.5, help="chunk seconds of the capacity run")
    parser.add_argument("--seconds", type=float, default=40.0, help="duration of each capacity step")
    parser.add_argument("--noise", action="store_true", help="also run silence and low-level noises (no text expected)")
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        print(f"no manifest at {args.manifest}: the shared speech data is needed", file=sys.stderr)
        return 2
    clips = read_asr_manifest(args.manifest, args.limit)
    alone = args.pause is not None or args.utterance_end != StreamingSettings.utterance_end_seconds
    if args.capacity and (alone or args.final_window != 2000 or args.min_window != 1000):
        parser.error(
            "--pause, --utterance-end, --min-window and --final-window measure the policy alone: not with --capacity"
        )
    if args.workers != 1 and not args.capacity:
        parser.error("--workers sets the capacity run's server: only with --capacity")
    if args.capacity:
        print(f"load average before: {os.getloadavg()}", file=sys.stderr)
        serve = [
            "--beam",
            str(args.final_beam),
            "--max-streams",
            str(max(args.capacity)),
            "--threads",
            str(args.threads),
            "--workers",
            str(args.workers),
        ]
        rows = capacity(clips, args.capacity, args.chunk, args.seconds, serve)
        print(capacity_table(rows))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows))
        return 0
    transcriber = Transcriber(beam_size=args.final_beam, threads=args.threads)
    recogniser = WhisperRecogniser(
        transcriber,
        beam_size=args.beam,
        final_beam_size=args.final_beam,
        min_window_frames=args.min_window,
        final_window_frames=args.final_window,
    )
    settings = StreamingSettings(trim_seconds=args.trim, utterance_end_seconds=args.utterance_end)
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    cache: dict = {}
    results = [run_chunk_size(transcriber, recogniser, clips, c, settings, cache, args.pause) for c in args.chunks]
    print(f"load average after: {os.getloadavg()}", file=sys.stderr)
    print(table(results))
    if args.noise:
        print()
        print(noise_table(recogniser, settings, args.chunks[0]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
