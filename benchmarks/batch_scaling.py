"""amser batch on this machine: encode scaling (1 vs 2 workers), transcribe against one process, store sizes.

    flock /work/.bench.lock python -m benchmarks.batch_scaling [--files 2000] [--transcribe 200] [--rounds 3]

The corpus is the clips of ../shared/data (asr and emotion) repeated under new
names (symlinks in a temporary folder) up to ``--files``.  Encode: each round
runs ``amser_dsp.batch.encode`` on a new local cluster of 1 worker, then of 2
(order alternating by round), timing the run without the cluster's start and
with its workers warmed up (imports, Numba's cache, codec tables: what a long
run pays once per worker); the ratio is taken within the round and the median
over rounds is reported.
Transcribe: the first ``--transcribe`` files, by ``batch.transcribe`` on 2
workers (one CTranslate2 thread each) against one process doing what ``amser
transcribe`` does per file (encode, decode, Whisper) with two CTranslate2
threads, i.e. using both cores.  Store: the Zarr store of ../shared/data/asr at
the default codec against float16 and blosc-zstd arrays of the same chunks.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def corpus(folder: Path, n: int) -> list[Path]:
    clips = sorted(p for sub in ("asr", "emotion") for p in (DATA / sub).rglob("*.flac"))
    if not clips:
        raise SystemExit(f"no clips under {DATA}")
    out = []
    for i, clip in zip(range(n), itertools.cycle(clips), strict=False):
        dst = folder / f"part{i % 20:02d}" / f"{i:06d}-{clip.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(clip.resolve())
        out.append(dst)
    return out


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_encode(src: Path, out: Path, workers: int) -> tuple[float, float, object, dict[str, float]]:
    """Wall time of the run, with the cluster's start, the summary, and CPU seconds of the driver and the workers.

    The driver's CPU (this process: client and, on a local cluster, the scheduler) against the workers' is
    Dask's cost; the workers' CPU against ``wall * workers`` is how much of their cores they got.
    """
    from amser_dsp import batch

    t0 = time.perf_counter()
    with batch.local_cluster_client(workers) as client:
        client.run(_warm_encoder)  # imports, Numba's cache and the codec tables: a long run pays them once
        before = sum(client.run(_cpu_seconds).values())
        driver = _cpu_seconds()
        start = time.perf_counter()
        summary = batch.encode(src, out, client=client, progress=False)
        wall = time.perf_counter() - start
        cpu = {"driver": _cpu_seconds() - driver, "workers": sum(client.run(_cpu_seconds).values()) - before}
    assert summary.ok and summary.done == summary.total, summary.table()
    return wall, time.perf_counter() - t0, summary, cpu


def _warm_encoder() -> None:
    import numpy as np

    import amser_dsp

    amser_dsp.encode_audio(np.zeros(16000, np.float32))


def _warm_transcriber() -> None:
    from amser_dsp.batch.work import transcriber

    transcriber(None, 5)


def compare_transcribe(files: list[Path], tmp: Path, rounds: int) -> dict[str, object]:
    """Interleaved rounds on slices of ``files``: one process as ``amser transcribe`` (Whisper on 2 threads),
    then ``batch.transcribe`` on a 2-worker cluster kept up (models loaded once, as in a long run).

    Both sides have their model loaded before timing; wall and CPU seconds are recorded per round.
    """
    from amser_dsp import batch, decode, encode_audio, load_audio
    from amser_dsp.server.recognition.whisper import Transcriber

    transcriber = Transcriber(threads=2)
    rows = []
    with batch.local_cluster_client(2) as client:
        client.run(_warm_transcriber)
        size = -(-len(files) // rounds)
        for r in range(rounds):
            part = files[r * size : (r + 1) * size]
            cpu0, t0 = _cpu_seconds(), time.perf_counter()
            for path in part:  # what server/commands.py's cmd_transcribe does per file
                transcriber.transcribe(decode(encode_audio(load_audio(path), "whisper")))
            base_wall, base_cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
            w0, d0, t0 = sum(client.run(_cpu_seconds).values()), _cpu_seconds(), time.perf_counter()
            summary = batch.transcribe(part, tmp / f"tr-{r}", client=client, progress=False)
            wall = time.perf_counter() - t0
            cpu = sum(client.run(_cpu_seconds).values()) - w0 + _cpu_seconds() - d0
            assert summary.ok and summary.done == len(part), summary.table()
            rows.append({"files": len(part), "one_process_s": base_wall, "one_process_cpu_s": base_cpu,
                         "batch_s": wall, "batch_cpu_s": cpu, "ratio": base_wall / wall,
                         "load": os.getloadavg()[0]})  # fmt: skip
            print(f"transcribe round {r}: {len(part)} files: one process {base_wall:.1f} s ({base_cpu:.1f} CPU s), "
                  f"batch {wall:.1f} s ({cpu:.1f} CPU s): throughput {base_wall / wall:.2f} x; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    ratio = statistics.median(r["ratio"] for r in rows)
    total = sum(r["one_process_s"] for r in rows) / sum(r["batch_s"] for r in rows)
    print(f"transcribe {len(files)} files: throughput of batch (2 workers) / one process (2 threads): "
          f"median {ratio:.2f} x over {rounds} rounds, {total:.2f} x in total", flush=True)  # fmt: skip
    return {"rounds": rows, "ratio_median": ratio, "ratio_total": total}


def store_sizes(tmp: Path) -> dict[str, int]:
    import zarr
    from zarr.codecs import BloscCodec

    import amser_dsp
    from amser_dsp import batch
    from amser_dsp.zarrstore import open_corpus

    store = tmp / "asr.zarr"
    with batch.local_cluster_client(2) as client:
        batch.features(DATA / "asr", store, client=client, progress=False)
    corpus = open_corpus(store)
    feats = [amser_dsp.features(amser_dsp.load_audio(DATA / "asr" / p), 16000) for p in corpus.paths]

    def size(path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    sizes = {"amser (kltdct step -4)": size(store / "features")}
    for name, dtype, comp in [
        ("float16, uncompressed", "float16", None),
        ("float16, blosc-zstd 5 + shuffle", "float16", BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")),
        ("float32, blosc-zstd 5 + shuffle", "float32", BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")),
    ]:
        path = tmp / f"{name.split(',')[0]}-{bool(comp)}.zarr"
        arr = zarr.create_array(path, shape=corpus.features.shape, chunks=corpus.features.chunks, dtype=dtype,
                                compressors=comp)  # fmt: skip
        for i, f in enumerate(feats):
            arr[:, corpus.start[i] : corpus.start[i] + corpus.length[i]] = f
        sizes[name] = size(path)
    sizes["audio seconds"] = round(float(corpus.seconds.sum()))
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--transcribe", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--transcribe-rounds", type=int, default=2)
    ap.add_argument("--no-encode", action="store_true", help="skip the encode scaling")
    ap.add_argument("--no-store", action="store_true", help="skip the store sizes")
    ap.add_argument("--json", help="write the numbers here too")
    args = ap.parse_args()
    result: dict[str, object] = {"cpu": cpu_model(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="amser-batch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        files = corpus(tmp / "src", args.files)
        ratios, one, two, cpus = [], [], [], []
        for r in range(0 if args.no_encode else args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            walls = {}
            for w in order:
                wall, total, summary, cpu = time_encode(tmp / "src", tmp / f"enc-{r}-{w}", w)
                walls[w] = wall
                cpus.append({"workers": w, "wall": wall, **cpu})
                print(f"round {r}: {w} worker(s): {wall:.1f} s ({total:.1f} s with cluster start), "
                      f"{summary.done} files, {summary.seconds / 3600:.2f} h audio; CPU s: driver {cpu['driver']:.1f}, "
                      f"workers {cpu['workers']:.1f} ({cpu['workers'] / (wall * w):.0%} of their cores); "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            ratios.append(walls[1] / walls[2])
            one.append(walls[1])
            two.append(walls[2])
        if ratios:
            result["encode"] = {
                "files": args.files,
                "audio_hours": summary.seconds / 3600,
                "one_worker_s": one,
                "two_workers_s": two,
                "speedup_median": statistics.median(ratios),
                "speedups": ratios,
                "cpu": cpus,
            }
            print(f"encode speed-up, 2 workers vs 1: median {statistics.median(ratios):.2f} x over {args.rounds} rounds "
                  f"({', '.join(f'{x:.2f}' for x in ratios)})", flush=True)  # fmt: skip
        if args.transcribe:
            result["transcribe"] = compare_transcribe(files[: args.transcribe], tmp, args.transcribe_rounds)
        if not args.no_store:
            result["store_bytes"] = store_sizes(tmp)
            print(json.dumps(result["store_bytes"], indent=1))
    result["load_after"] = os.getloadavg()
    print(f"CPU: {result['cpu']}; load average before {result['load_before']}, after {result['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
