"""Throughput of two replicas behind HAProxy against one server with two recogniser threads (docs/operations.md).

    python benchmarks/replicas.py [--files 48] [--rounds 3] [--clients 2] [--json out/replicas.json]

On one machine the two set-ups have the same cores, so the point is the proxy's overhead, not a gain.
Each round sends the same files through each set-up in turn (interleaved, so a drift of the machine's
speed hits both alike): ``--clients`` clients, each with its own ``/v1/files`` connection
(``amser send``'s path) carrying ``--files`` containers of shared ASR clips.  Reports files per second per
set-up and round, the median, and the median of the per-round ratios.  Loopback only; needs haproxy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "server"))


def _blobs(n: int, manifest: Path) -> list[bytes]:
    import amser_dsp
    from amser_dsp.server.evaluation.modes import read_asr_manifest

    clips = read_asr_manifest(manifest, n)
    return [amser_dsp.encode_audio(amser_dsp.load_audio(c.path), "whisper") for c in clips]


def _throughput(url: str, blobs: list[bytes], clients: int) -> float:
    from amser_dsp.client import Client

    errors: list[object] = []

    def send() -> None:
        with Client(url, retries=8) as client:
            errors.extend(a for a in client.transcribe_many(blobs) if "error" in a)

    threads = [threading.Thread(target=send) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"errors: {errors[:3]}")
    return clients * len(blobs) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--manifest", type=Path, default=ROOT.parent / "shared" / "data" / "asr" / "manifest.tsv")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if shutil.which("haproxy") is None:
        print("haproxy is missing: apt-get install haproxy", file=sys.stderr)
        return 2
    from test_replicas import Proxy

    from amser_dsp.server.http.local import LocalServer

    common = ["--beam", str(args.beam), "--emotion-model", "none", "--queue", "64", "--timeout", "600"]
    blobs = _blobs(args.files, args.manifest)
    single = LocalServer([*common, "--workers", "2"])
    pair = [LocalServer([*common, "--workers", "1"]) for _ in range(2)]
    rows: dict[str, list[float]] = {"one server, 2 threads": [], "2 replicas behind HAProxy": []}
    with single as single_url, pair[0], pair[1]:
        proxy = Proxy([p.port for p in pair])
        try:
            proxy.wait_ready()
            _throughput(single_url, blobs[:4], 1)  # warm both set-ups' caches
            _throughput(proxy.url, blobs[:4], 1)
            for r in range(args.rounds):
                for name, url in (("one server, 2 threads", single_url), ("2 replicas behind HAProxy", proxy.url)):
                    rows[name].append(_throughput(url, blobs, args.clients))
                    print(f"round {r + 1}: {name}: {rows[name][-1]:.2f} files/s", flush=True)
        finally:
            proxy.stop()
    names = list(rows)
    ratios = [b / a for a, b in zip(rows[names[0]], rows[names[1]], strict=True)]
    summary = {
        "files_per_second_median": {n: statistics.median(v) for n, v in rows.items()},
        "rounds": rows,
        "ratio_replicas_over_single_median": statistics.median(ratios),
        "files": args.files,
        "clients": args.clients,
        "beam": args.beam,
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
