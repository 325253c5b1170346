"""amser batch on this machine: encode scaling (1 vs 2 workers), transcribe against one process, store sizes.

    flock /work/.bench.lock python -m benchmarks.batch_scaling [--files 2000] [--transcribe 200] [--rounds 3]

The corpus is the clips of ../shared/data (asr and emotion) repeated under new
names (symlinks in a temporary folder) up to ``--files``.  Encode: each round
runs ``amser_dsp.batch.encode`` on a new local cluster of 1 worker, then of 2
(order alternating by round), timing the run without the cluster's start; the
ratio is taken within the round and the median over rounds is reported.
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


def time_encode(src: Path, out: Path, workers: int) -> tuple[float, float, object]:
    from amser_dsp import batch

    t0 = time.perf_counter()
    with batch.local_cluster_client(workers) as client:
        start = time.perf_counter()
        summary = batch.encode(src, out, client=client, progress=False)
        wall = time.perf_counter() - start
    assert summary.ok and summary.done == summary.total, summary.table()
    return wall, time.perf_counter() - t0, summary


def _warm_transcriber() -> None:
    from amser_dsp.batch.work import transcriber

    transcriber(None, 5)


def time_transcribe_batch(files: list[Path], out: Path) -> tuple[float, object]:
    from amser_dsp import batch

    with batch.local_cluster_client(2) as client:
        client.run(_warm_transcriber)  # the model loaded, as the one-process baseline has it
        start = time.perf_counter()
        summary = batch.transcribe(files, out, client=client, progress=False)
        wall = time.perf_counter() - start
    assert summary.ok, summary.table()
    return wall, summary


def time_transcribe_one_process(files: list[Path]) -> float:
    """What ``amser transcribe FILES`` does per file (server/commands.py), Whisper on two threads."""
    from amser_dsp import decode, encode_audio, load_audio
    from amser_dsp.server.asr import Transcriber

    transcriber = Transcriber(threads=2)
    start = time.perf_counter()
    for path in files:
        blob = encode_audio(load_audio(path), "whisper")
        transcriber.transcribe(decode(blob))
    return time.perf_counter() - start


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
    ap.add_argument("--json", help="write the numbers here too")
    args = ap.parse_args()
    result: dict[str, object] = {"cpu": cpu_model(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="amser-batch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        files = corpus(tmp / "src", args.files)
        ratios, one, two = [], [], []
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            walls = {}
            for w in order:
                wall, total, summary = time_encode(tmp / "src", tmp / f"enc-{r}-{w}", w)
                walls[w] = wall
                print(f"round {r}: {w} worker(s): {wall:.1f} s ({total:.1f} s with cluster start), "
                      f"{summary.done} files, {summary.seconds / 3600:.2f} h audio", flush=True)  # fmt: skip
            ratios.append(walls[1] / walls[2])
            one.append(walls[1])
            two.append(walls[2])
        result["encode"] = {
            "files": args.files,
            "audio_hours": summary.seconds / 3600,
            "one_worker_s": one,
            "two_workers_s": two,
            "speedup_median": statistics.median(ratios),
            "speedups": ratios,
        }
        print(f"encode speed-up, 2 workers vs 1: median {statistics.median(ratios):.2f} x over {args.rounds} rounds "
              f"({', '.join(f'{x:.2f}' for x in ratios)})", flush=True)  # fmt: skip
        if args.transcribe:
            subset = files[: args.transcribe]
            base = time_transcribe_one_process(subset)
            wall, summary = time_transcribe_batch(subset, tmp / "tr")
            result["transcribe"] = {
                "files": len(subset),
                "audio_hours": summary.seconds / 3600,
                "one_process_two_threads_s": base,
                "batch_two_workers_s": wall,
                "throughput_ratio": base / wall,
            }
            print(f"transcribe {len(subset)} files: one process (2 threads) {base:.1f} s, batch 2 workers "
                  f"{wall:.1f} s: throughput {base / wall:.2f} x", flush=True)  # fmt: skip
        result["store_bytes"] = store_sizes(tmp)
        print(json.dumps(result["store_bytes"], indent=1))
    result["load_after"] = os.getloadavg()
    print(f"CPU: {result['cpu']}; load average before {result['load_before']}, after {result['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
