"""What each Whisper model costs on this machine: load time, memory, real-time factor, service throughput.

    flock /work/.bench.lock python benchmarks/models.py [--models tiny.en base] [--clips 8] [--rounds 3]

For every model that is installed (the others are named and skipped):

- **load**: ``Transcriber(model=NAME)`` in a new process, ``--loads`` times, the models interleaved: median
  seconds, and the process's resident memory after the load and its peak after one transcription (MiB);
- **real-time factor** of transcription from features (beam 5, one thread, the ``--clips`` first clips of the
  shared ASR set, else the bundled clip): compute seconds per audio second, median over ``--rounds`` rounds
  that alternate the models; and, for a model other than tiny.en, the emotion branch's extra cost when the
  service analyses (tiny.en's encoder run beside it for the emotion model's states);
- **service throughput**: ``amser serve --model NAME --workers 2``, every clip posted to ``/v1/transcribe``
  with 4 in flight: audio seconds transcribed per wall second.

Prints one Markdown table with the CPU's model name.  Only loopback traffic; bounded in count.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

import amser_dsp
from analyze_cost import cpu_model  # run as a script: benchmarks/ is on the path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "asr" / "manifest.tsv"

LOAD_PROBE = """
import json, resource, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
from amser_dsp.server.recognition.whisper import Transcriber
import amser_dsp
before = rss()
t = time.perf_counter()
asr = Transcriber(model=sys.argv[1])
load = time.perf_counter() - t
after = rss()
asr.transcribe(amser_dsp.features(amser_dsp.load_audio(amser_dsp.sample_path()), 16000, "whisper"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"load_s": load, "rss_mib": after, "model_mib": after - before, "peak_mib": peak}))
"""


def clips(n: int) -> list[np.ndarray]:
    """Audio of the first ``n`` shared ASR clips, or the bundled clip if the shared data is not here."""
    if SHARED.is_file():
        with SHARED.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))[:n]
        return [amser_dsp.load_audio(SHARED.parent / r["path"]) for r in rows]
    return [amser_dsp.load_audio(amser_dsp.sample_path())]


def installed(names: list[str]) -> list[str]:
    from amser_dsp.errors import ModelError
    from amser_dsp.server.recognition.models import resolve_model

    out = []
    for name in names:
        try:
            resolve_model(name)  # assembles a named model into the cache now, not inside a timing
            out.append(name)
        except ModelError as exc:
            print(f"skipped {name}: {exc}", file=sys.stderr)
    return out


def load_costs(names: list[str], loads: int) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for _ in range(loads):
        for name in names:
            out = subprocess.run([sys.executable, "-c", LOAD_PROBE, name], capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}


def real_time_factors(names: list[str], audio: list[np.ndarray], rounds: int) -> dict[str, dict[str, float]]:
    from amser_dsp.server.recognition.whisper import Transcriber, encoder_states

    feats = [amser_dsp.features(a, 16000, "whisper") for a in audio]
    seconds = sum(a.size for a in audio) / 16000
    models = {n: Transcriber(model=n, beam_size=5, threads=1) for n in names}
    tiny = models.get("tiny.en") or Transcriber(model="tiny.en", threads=1)
    asr: dict[str, list[float]] = {n: [] for n in names}
    beside: list[float] = []
    windows = sum(-(-f.shape[1] // 3000) for f in feats)
    for _ in range(rounds):
        for name, model in models.items():
            t = time.perf_counter()
            for f in feats:
                model.transcribe(f)
            asr[name].append((time.perf_counter() - t) / seconds)
        t = time.perf_counter()
        encoder_states(tiny, feats)
        beside.append((time.perf_counter() - t) / seconds)
    out = {n: {"rtf": statistics.median(v)} for n, v in asr.items()}
    for name in names:
        if name != "tiny.en":
            out[name]["emotion_beside_rtf"] = statistics.median(beside)
            out[name]["emotion_beside_ms_per_window"] = 1000 * statistics.median(beside) * seconds / windows
    return out


def throughput(name: str, audio: list[np.ndarray]) -> float:
    import httpx

    from amser_dsp.server.http.local import LocalServer

    blobs = [amser_dsp.encode_audio(a, "whisper") for a in audio]
    seconds = sum(a.size for a in audio) / 16000
    server = LocalServer(["--model", name, "--workers", "2", "--queue", "8"], startup_timeout=240)
    with server as url, httpx.Client(base_url=url, timeout=600) as http:
        http.post("/v1/transcribe", content=blobs[0]).raise_for_status()  # warm up
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for r in pool.map(lambda b: http.post("/v1/transcribe", content=b), blobs):
                r.raise_for_status()
        return seconds / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base", "small"])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--no-service", action="store_true", help="skip the service throughput")
    parser.add_argument("--json", help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    names = installed(args.models)
    audio = clips(args.clips)
    seconds = sum(a.size for a in audio) / 16000
    rows = {n: {} for n in names}
    for name, found in load_costs(names, args.loads).items():
        rows[name].update(found)
    for name, found in real_time_factors(names, audio, args.rounds).items():
        rows[name].update(found)
    if not args.no_service:
        for name in names:
            rows[name]["service_audio_s_per_s"] = throughput(name, audio)
    print(f"{cpu_model()}, {os.cpu_count()} CPUs; {len(audio)} clips, {seconds:.0f} s of speech; beam 5, int8")
    print()
    print(
        "| model | load s | RSS after load MiB | of it the model MiB | peak MiB | RTF (1 thread) "
        "| + tiny.en encoder for emotion (RTF) | service audio-s per s (2 workers) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        beside = (
            f"{r['emotion_beside_rtf']:.3f} ({r['emotion_beside_ms_per_window']:.0f} ms per 30 s window)"
            if "emotion_beside_rtf" in r
            else "- (its own states)"
        )
        service = f"{r['service_audio_s_per_s']:.1f}" if "service_audio_s_per_s" in r else "-"
        print(
            f"| {name} | {r['load_s']:.2f} | {r['rss_mib']:.0f} | {r['model_mib']:.0f} | {r['peak_mib']:.0f} "
            f"| {r['rtf']:.3f} | {beside} | {service} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_model(), "seconds": seconds, "models": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
