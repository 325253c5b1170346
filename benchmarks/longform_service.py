"""The service on long recordings: throughput and latency of ``POST /v1/transcribe`` for files of minutes.

    flock /work/.bench.lock python benchmarks/longform_service.py [--recordings 0 1 2] [--clients 1 2]
        [--layouts 1x2 2x1] [--json out.json]

The recordings are the long-form set of ``amser eval-asr --long`` (2, 3, 5 and 10 minutes of the shared
clips, :mod:`amser_dsp.server.evaluation.recordings`), each encoded with the default codec as a device
would send it.  First, for reference, the recogniser in this process (the
:class:`~amser_dsp.server.recognition.whisper.Transcriber` every path uses, 2 threads) transcribes the
containers one after another.  Then, for each server layout ``WxT`` (``--workers W --threads T``: W
requests recognised at once, T threads each) and each number of clients N, one ``amser serve`` on
127.0.0.1 answers N clients that share the recordings between them, each posting its files one after
another.  Reported per run: audio seconds transcribed per wall second (x real time), each request's latency
(median and maximum), and the service's throughput against the in-process recogniser's.  Every answer must
be 200 with the same text as in-process recognition gives, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import amser_dsp
from amser_dsp.backends.variants import cpu_model
from amser_dsp.server.evaluation.modes import read_asr_manifest
from amser_dsp.server.evaluation.recordings import long_recordings
from amser_dsp.server.recognition.whisper import Transcriber

MANIFEST = Path(__file__).resolve().parents[1] / "../shared/data/asr/manifest.tsv"


def serve_and_post(layout: str, clients: int, blobs: list[bytes], beam: int) -> tuple[float, list[float], list[str]]:
    """Wall seconds for ``clients`` clients to have every blob transcribed; each request's latency; the texts."""
    import httpx

    from amser_dsp.server.http.local import LocalServer

    workers, threads = layout.split("x")
    longest = max(amser_dsp.inspect(b).seconds or 0.0 for b in blobs)
    args = ["--workers", workers, "--threads", threads, "--beam", str(beam), "--emotion-model", "none"]
    args += ["--max-audio-seconds", str(int(longest) + 10), "--timeout", "3600", "--queue", str(len(blobs))]
    texts: list[str] = [""] * len(blobs)
    latencies: list[float] = [0.0] * len(blobs)
    failures: list[str] = []
    with LocalServer(args) as url:

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=3600) as http:
                for i in range(k, len(blobs), clients):
                    t0 = time.perf_counter()
                    r = http.post("/v1/transcribe", content=blobs[i])
                    latencies[i] = time.perf_counter() - t0
                    if r.status_code != 200:
                        failures.append(f"recording {i}: {r.status_code} {r.text[:200]}")
                    else:
                        texts[i] = r.json()["text"]

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        wall = time.perf_counter() - start
    if failures:
        raise SystemExit("failed: " + "; ".join(failures))
    return wall, latencies, texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--recordings", type=int, nargs="+", default=[0, 1, 2], help="indices into the long-form set")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="server WORKERSxTHREADS")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for layout in args.layouts:
        parts = layout.split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            parser.error(f"--layouts {layout!r}: expected WORKERSxTHREADS, such as 2x1")

    recordings = [long_recordings(read_asr_manifest(args.manifest))[i] for i in args.recordings]
    cache: dict[str, np.ndarray] = {}
    blobs = [amser_dsp.encode_audio(r.audio(cache), "whisper") for r in recordings]
    seconds = sum(amser_dsp.inspect(b).seconds or 0.0 for b in blobs)

    transcriber = Transcriber(threads=2, beam_size=args.beam)
    start = time.perf_counter()
    reference = [transcriber.transcribe(amser_dsp.decode(b)) for b in blobs]
    in_process = time.perf_counter() - start
    del transcriber
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} CPUs visible; Whisper tiny.en (CTranslate2 int8), beam {args.beam}; "
        f"{len(blobs)} recordings ({', '.join(r.id for r in recordings)}), {seconds / 60:.1f} min, default codec",
        file=sys.stderr,
    )
    rows = [{"run": "in process, one after another, 2 threads", "wall": in_process, "x_realtime": seconds / in_process}]
    print("| run | wall s | x real time | request latency median / max (s) | vs in process | load (1 min) |")
    print("|---|---:|---:|---|---:|---:|")
    print(f"| {rows[0]['run']} | {in_process:.1f} | {seconds / in_process:.1f} | - | 1.00 | {os.getloadavg()[0]:.1f} |")
    for layout in args.layouts:
        for clients in args.clients:
            wall, latencies, texts = serve_and_post(layout, clients, blobs, args.beam)
            if texts != reference:
                raise SystemExit(f"{layout}, {clients} clients: the service's texts differ from in-process recognition")
            name = f"service --workers {layout.split('x')[0]} --threads {layout.split('x')[1]}, {clients} client(s)"
            rows.append({"run": name, "wall": wall, "x_realtime": seconds / wall, "latencies": latencies})
            print(
                f"| {name} | {wall:.1f} | {seconds / wall:.1f} | {np.median(latencies):.1f} / {max(latencies):.1f} | "
                f"{in_process / wall:.2f} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_model(), "audio_seconds": seconds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
