"""Bounded load test of the service on loopback: N concurrent clients for T seconds, then it stops.

    python benchmarks/load_test.py [--clients 16] [--seconds 60] [--queue 16] [--workers 2]

Starts one ``amser serve`` process on 127.0.0.1 (a free port), then N client
threads, each on its own kept-alive connection, POST the bundled clip's
container in a loop until the time is up.  Reports requests per second, p50
and p99 latency of successful requests, and every status seen; exits non-zero
if any request failed with anything but 503 (the bounded queue saying "busy").
Only loopback traffic; bounded in count and time.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time

import numpy as np

import amser_dsp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--queue", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--beam", type=int, default=5)
    args = parser.parse_args(argv)
    import httpx

    from amser_dsp.server.http.local import LocalServer

    serve_args = ["--queue", str(args.queue), "--workers", str(args.workers), "--beam", str(args.beam)]
    with LocalServer(serve_args) as url:
        blob = amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper")
        statuses: collections.Counter[str] = collections.Counter()
        latencies: list[float] = []
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def client() -> None:
            with httpx.Client(base_url=url, timeout=120) as http:
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    try:
                        status = str(http.post("/v1/transcribe", content=blob).status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    elapsed = time.perf_counter() - t0
                    with lock:
                        statuses[status] += 1
                        if status == "200":
                            latencies.append(elapsed)
                    if status == "503":
                        time.sleep(0.05)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    ok = statuses.get("200", 0)
    failed = {k: v for k, v in statuses.items() if k not in ("200", "503")}
    p50, p99 = (np.percentile(latencies, [50, 99]) * 1000).tolist() if latencies else (float("nan"),) * 2
    print(
        f"{args.clients} clients, {wall:.0f} s, queue {args.queue}, {args.workers} recogniser threads, "
        f"beam {args.beam}; clip {len(blob)} bytes, 3.3 s of audio"
    )
    print("| requests | 200 | 503 | other failures | req/s (200) | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {sum(statuses.values())} | {ok} | {statuses.get('503', 0)} | {sum(failed.values())} {failed or ''} | "
        f"{ok / wall:.2f} | {p50:.0f} | {p99:.0f} |"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
