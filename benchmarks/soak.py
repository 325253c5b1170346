"""Memory soak of the service on loopback: N clients for M minutes, idle RSS sampled at regular pauses.

    python benchmarks/soak.py [--clients 8] [--minutes 30] [--invalid 0.2] [--json out/soak.json]

Starts one ``amser serve`` on 127.0.0.1 (:class:`~amser_dsp.server.http.local.LocalServer`),
then N client threads, each on its own kept-alive connection, post to
``/v1/transcribe`` or ``/v1/analyze`` (``--routes``; the second adds the emotion model) containers of
real speech (the clips of ../shared/data/asr, or the bundled clip, in several codec
settings) and, with probability ``--invalid``, a hostile body (damaged, another
preset, truncated, garbage, an oversize body, too much audio).  At regular idle
points every client finishes its request and waits; the server's ``VmRSS`` (and
``VmHWM``, the interval's peak, reset after each sample) is read from
``/proc/PID/status``.  The first idle point comes after a warm-up (``--warmup``, a
fraction of the run); the verdict is whether idle RSS stays within ``--tolerance``
(5 %) of it at every later idle point.

A valid request must get 200 and an invalid one a 4xx; anything else is a failure.
Exit status: 1 if a request failed, 2 if idle RSS grew past the tolerance, 130 if interrupted, else 0.
Loopback only, bounded in time; the server is stopped on exit, Ctrl-C or SIGTERM.
``--env MALLOC_ARENA_MAX=2`` or ``--env LD_PRELOAD=...libjemalloc.so.2`` change the
server's allocator; ``--debug-memory`` turns on the server's memory probe
(``AMSER_DEBUG_MEMORY=1``: tracemalloc and ``malloc_trim`` at each idle point).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import random
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import amser_dsp

ASR_MANIFEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "asr" / "manifest.tsv"

#: Codec settings of valid requests: (name, weight, encode keywords).  The default codec is half the traffic.
SETTINGS: tuple[tuple[str, float, dict[str, Any]], ...] = (
    ("kltdct default", 0.5, {}),
    ("kltdct 2.5 kbps", 0.1, {"kbps": 2.5}),
    ("kltdct step 4, 1 s chunks", 0.1, {"step": 4, "chunk_frames": 100}),
    ("svd ratio 0.125 float16", 0.1, {"ratio": 0.125, "factor_dtype": "float16"}),
    ("svd rank 20 int8", 0.1, {"rank": 20, "factor_dtype": "int8"}),
    ("raw float16", 0.1, {"codec": "raw"}),
)
INVALID_KINDS = ("damaged", "wrong_preset", "truncated", "garbage", "oversize", "too_long")


# ------------------------------------------------------------------ requests
@dataclasses.dataclass
class Corpus:
    """Every body the clients send: valid containers per setting, and the material of invalid ones."""

    valid: dict[str, list[bytes]]
    wrong_preset: list[bytes]
    oversize: bytes
    too_long: bytes
    clips: int
    audio_seconds: float


def load_corpus(manifest: Path | None, max_clips: int | None, max_body_bytes: int, max_audio_seconds: float) -> Corpus:
    """Encode the speech clips once in every setting (the clients only pick and damage)."""
    if manifest is not None and manifest.exists():
        with manifest.open(newline="", encoding="utf-8") as fh:
            paths = [manifest.parent / row["path"] for row in csv.DictReader(fh, delimiter="\t")]
    else:
        paths = [amser_dsp.sample_path()]
    paths = paths[:max_clips] if max_clips else paths
    valid: dict[str, list[bytes]] = {name: [] for name, _, _ in SETTINGS}
    wrong: list[bytes] = []
    feats_all, seconds = [], 0.0
    for path in paths:
        audio = amser_dsp.load_audio(path)
        seconds += audio.size / 16000
        feats = amser_dsp.features(audio, 16000, preset="whisper")
        feats_all.append(feats)
        for name, _, options in SETTINGS:
            valid[name].append(amser_dsp.encode(feats, config="whisper", **options))
        wrong.append(amser_dsp.encode_audio(audio, "amser", codec="raw"))
    # Audio past the service's limit: the clips' features repeated, one container in the default codec.
    pooled = np.concatenate(feats_all, axis=1)
    frames = int(max_audio_seconds * 100) + 200
    long_feats = np.tile(pooled, (1, -(-frames // pooled.shape[1])))[:, :frames]
    return Corpus(
        valid=valid,
        wrong_preset=wrong,
        oversize=random.Random(1).randbytes(max_body_bytes + 1),
        too_long=amser_dsp.encode(long_feats, config="whisper"),
        clips=len(paths),
        audio_seconds=seconds,
    )


def invalid_body(kind: str, corpus: Corpus, rng: random.Random) -> bytes:
    """A hostile body of one kind, made from a random valid container."""
    blob = rng.choice(rng.choice(list(corpus.valid.values())))
    if kind == "damaged":  # bytes changed past the header's first bytes: a checksum or a parse fails
        out = bytearray(blob)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(16, len(out))] ^= rng.randint(1, 255)
        return bytes(out)
    if kind == "wrong_preset":
        return rng.choice(corpus.wrong_preset)
    if kind == "truncated":
        return blob[: rng.randrange(1, len(blob))]
    if kind == "garbage":
        return rng.randbytes(rng.randint(1, 65536))
    if kind == "oversize":
        return corpus.oversize
    if kind == "too_long":
        return corpus.too_long
    raise ValueError(kind)


# --------------------------------------------------------------------- probes
def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0), so each interval has its own peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Gate:
    """Idle points: the main thread pauses the clients, each stops after its current request."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.paused = False
        self.waiting = 0
        self.stopped = False

    def checkpoint(self) -> None:
        with self.cond:
            if not self.paused:
                return
            self.waiting += 1
            self.cond.notify_all()
            while self.paused and not self.stopped:
                self.cond.wait()
            self.waiting -= 1

    def pause(self, clients: list[threading.Thread], timeout: float) -> bool:
        """Pause every live client; False if they did not all stop within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self.cond:
            self.paused = True
            while self.waiting < sum(t.is_alive() for t in clients):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
        return True

    def resume(self, stop: bool = False) -> None:
        with self.cond:
            self.paused = False
            self.stopped = self.stopped or stop
            self.cond.notify_all()


@dataclasses.dataclass
class Result:
    route: str
    kind: str  # a codec setting's name, or an invalid kind
    valid: bool
    status: str
    seconds: float
    interval: int


def is_failure(r: Result) -> bool:
    return r.status != "200" if r.valid else not (r.status.isdigit() and 400 <= int(r.status) < 500)


# ------------------------------------------------------------------ the run
def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p = np.percentile(np.asarray(values) * 1000, [50, 90, 99])
    return {"p50_ms": float(p[0]), "p90_ms": float(p[1]), "p99_ms": float(p[2]), "max_ms": 1000 * max(values)}


def slope(x: list[float], y: list[float]) -> float | None:
    """Least-squares slope of y on x (None with fewer than two distinct x)."""
    if len(set(x)) < 2:
        return None
    return float(np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)[0])


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from amser_dsp.server.http.local import LocalServer
    from amser_dsp.server.http.memory import process_memory, rss_by_mapping

    env = dict(kv.split("=", 1) for kv in args.env)
    if args.debug_memory:
        env["AMSER_DEBUG_MEMORY"] = "1"
    serve_args = ["--workers", str(args.workers), "--queue", str(args.queue), "--beam", str(args.beam)]
    serve_args += ["--timeout", str(args.timeout), "--max-body-bytes", str(args.max_body_bytes)]
    serve_args += ["--max-audio-seconds", str(args.max_audio_seconds)]
    if args.trim_idle is not None:
        serve_args += ["--trim-idle", str(args.trim_idle)]
    t_load = time.perf_counter()
    corpus = load_corpus(args.manifest, args.max_clips, args.max_body_bytes, args.max_audio_seconds)
    print(
        f"soak: {corpus.clips} clips ({corpus.audio_seconds / 60:.1f} min of speech) in {len(SETTINGS)} settings "
        f"encoded in {time.perf_counter() - t_load:.0f} s",
        file=sys.stderr,
    )
    routes = args.routes.split(",")
    settings = [name for name, _, _ in SETTINGS]
    weights = [w for _, w, _ in SETTINGS]
    results: list[Result] = []
    lock = threading.Lock()
    gate = Gate()
    interval = [0]  # index of the idle point the running requests will count towards
    errors: list[str] = []
    busy: list[tuple[int, int]] = []  # (interval, VmRSS kB) sampled under load
    done = threading.Event()

    interrupted = False
    server = LocalServer(serve_args, env=env, startup_timeout=args.startup_timeout)
    with server as url:
        assert url.startswith("http://127.0.0.1:") and server.process is not None  # loopback only
        pid = server.process.pid
        samples: list[dict[str, Any]] = []

        def sample(label: str) -> dict[str, Any]:
            time.sleep(args.settle)  # let the last responses leave and the pools go quiet
            status = process_memory(pid)
            loaded = [rss for i, rss in busy if i == interval[0]]
            point = {
                "label": label,
                "interval": interval[0],
                "load_minutes": (time.monotonic() - t0 - paused[0]) / 60,
                "requests": len(results),
                "loadavg": os.getloadavg()[0],
                "busy_rss_median_kb": statistics.median(loaded) if loaded else None,
                "busy_rss_max_kb": max(loaded, default=None),
                **{k.lower(): v for k, v in status.items()},
                "mappings_kb": rss_by_mapping(pid),
            }
            if args.debug_memory:
                with httpx.Client(base_url=url, timeout=120) as http:
                    point["probe"] = http.get("/debug/memory").json()
                point["vmrss_after_probe"] = process_memory(pid)["VmRSS"]
            point["peak_reset"] = reset_peak(pid)
            samples.append(point)
            print(
                f"soak: {label:>10}  {point['requests']:6d} requests  {point['load_minutes']:6.1f} min  "
                f"RSS {status['VmRSS'] / 1024:7.1f} MB  interval peak {status['VmHWM'] / 1024:7.1f} MB  "
                f"threads {status['Threads']}  load {point['loadavg']:.1f}",
                file=sys.stderr,
            )
            return point

        def client(seed: int) -> None:
            rng = random.Random(seed)
            try:
                with httpx.Client(base_url=url, timeout=args.timeout + 60) as http:
                    while not gate.stopped:
                        gate.checkpoint()
                        if gate.stopped:
                            break
                        if rng.random() < args.invalid:
                            kind = rng.choice(INVALID_KINDS)
                            body, valid = invalid_body(kind, corpus, rng), False
                        else:
                            kind = rng.choices(settings, weights)[0]
                            body, valid = rng.choice(corpus.valid[kind]), True
                        route = rng.choice(routes)
                        t = time.perf_counter()
                        try:
                            status = str(http.post(route, content=body).status_code)
                        except httpx.HTTPError as exc:
                            status = type(exc).__name__
                        with lock:
                            results.append(Result(route, kind, valid, status, time.perf_counter() - t, interval[0]))
            except Exception as exc:  # a bug in the client must not hang the run: report it
                errors.append(f"client {seed}: {type(exc).__name__}: {exc}")

        def sampler() -> None:
            while not done.wait(args.sample_every):
                if not gate.paused:
                    busy.append((interval[0], process_memory(pid).get("VmRSS", 0)))

        started = {k.lower(): v for k, v in process_memory(pid).items()}
        samples.append({"label": "started", "requests": 0, **started, "mappings_kb": rss_by_mapping(pid)})
        reset_peak(pid)
        threads = [threading.Thread(target=client, args=(args.seed + i,), daemon=True) for i in range(args.clients)]
        t0, paused = time.monotonic(), [0.0]
        for t in [*threads, threading.Thread(target=sampler, daemon=True)]:
            t.start()
        run_seconds = args.minutes * 60
        boundaries = [run_seconds * args.warmup]
        boundaries += [
            boundaries[0] + (run_seconds - boundaries[0]) * (i + 1) / args.idle_points for i in range(args.idle_points)
        ]
        print(f"soak: server pid {pid} at {url}, {args.clients} clients running", file=sys.stderr)
        try:
            for i, boundary in enumerate(boundaries):
                while time.monotonic() - t0 - paused[0] < boundary:
                    time.sleep(0.2)
                p0 = time.monotonic()
                if not gate.pause(threads, args.timeout + 120):
                    errors.append(f"idle point {i}: clients did not stop within {args.timeout + 120} s")
                    break
                sample("warm-up" if i == 0 else f"idle {i}")
                interval[0] = i + 1
                if i < len(boundaries) - 1:
                    gate.resume()
                paused[0] += time.monotonic() - p0
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: report what was measured, stop the server now
            interrupted = True
            errors.append("interrupted")
        finally:
            done.set()
            gate.resume(stop=True)
            if not interrupted:
                for t in threads:
                    t.join(timeout=args.timeout + 60)
            with lock:
                results = list(results)  # requests cut short by the server's stop are not counted
        wall = time.monotonic() - t0
    rep = report(args, corpus, results, samples, errors, wall)
    rep["interrupted"] = interrupted
    return rep


def report(
    args: argparse.Namespace,
    corpus: Corpus,
    results: list[Result],
    samples: list[dict[str, Any]],
    errors: list[str],
    wall: float,
) -> dict[str, Any]:
    statuses = Counter(f"{'valid' if r.valid else 'invalid'} {r.status}" for r in results)
    by_route = Counter(f"{r.route} {r.status}" for r in results)
    failures = Counter(f"{r.route} {r.kind} {r.status}" for r in results if is_failure(r))
    idle = [s for s in samples if s["label"] != "started"]
    base = idle[0]["vmrss"] if idle else None
    later = idle[1:]
    growth = [(s["vmrss"] - base) / base for s in later] if base else []
    after_warmup = [r for r in results if r.interval >= 1]
    x_req = [s["requests"] for s in idle]
    x_min = [s["load_minutes"] for s in idle]
    y = [s["vmrss"] for s in idle]
    per_request = slope(x_req, y)
    per_minute = slope(x_min, y)
    verdict = {
        "tolerance": args.tolerance,
        "baseline_rss_mb": base / 1024 if base else None,
        "final_rss_mb": idle[-1]["vmrss"] / 1024 if idle else None,
        "max_growth": max(growth) if growth else None,
        "final_growth": growth[-1] if growth else None,
        "memory_holds": bool(growth) and max(growth) <= args.tolerance,
        "failures": sum(failures.values()),
        "requests_hold": not failures and not errors,
    }
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() - wall)),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "corpus": {"clips": corpus.clips, "audio_minutes": corpus.audio_seconds / 60},
        "wall_minutes": wall / 60,
        "requests": len(results),
        "requests_after_warmup": len(after_warmup),
        "statuses": dict(sorted(statuses.items())),
        "statuses_by_route": dict(sorted(by_route.items())),
        "failures": dict(failures),
        "errors": errors,
        "latency": {
            "valid": percentiles([r.seconds for r in results if r.valid and r.status == "200"]),
            "invalid": percentiles([r.seconds for r in results if not r.valid]),
        },
        "samples": samples,
        "trend": {
            "kb_per_request": per_request,
            "mb_per_minute": per_minute / 1024 if per_minute is not None else None,
        },
        "verdict": verdict,
        "loadavg": {
            "min": min((s["loadavg"] for s in idle), default=None),
            "max": max((s["loadavg"] for s in idle), default=None),
        },
    }


def cpu_model() -> str:
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return f"{info.get('model name', '?')}, family {info.get('cpu family', '?')} model {info.get('model', '?')}"


def table(rep: dict[str, Any]) -> str:
    v = rep["verdict"]
    lines = [
        f"{rep['settings']['clients']} clients, {rep['wall_minutes']:.1f} min, {rep['requests']} requests "
        f"({rep['settings']['invalid']:.0%} invalid), {rep['machine']['cpu']}, load average "
        f"{_num(rep['loadavg']['min'])}-{_num(rep['loadavg']['max'])}{' (INTERRUPTED)' if rep['interrupted'] else ''}",
        "",
        "| idle point | requests | load min | idle RSS MB | vs warm-up | busy RSS median MB | interval peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = v["baseline_rss_mb"]
    for s in rep["samples"]:
        rss = s["vmrss"] / 1024
        rel = f"{100 * (rss - base) / base:+.1f}%" if base and s["label"] != "started" else ""
        minutes = f"{s['load_minutes']:.1f}" if "load_minutes" in s else "0"
        busy = f"{s['busy_rss_median_kb'] / 1024:.1f}" if s.get("busy_rss_median_kb") else ""
        lines.append(
            f"| {s['label']} | {s['requests']} | {minutes} | {rss:.1f} | {rel} | {busy} | {s['vmhwm'] / 1024:.1f} |"
        )
    lat = rep["latency"]
    trend = rep["trend"]
    lines += [
        "",
        f"statuses: {rep['statuses']}",
        f"by route: {rep['statuses_by_route']}",
        f"failures: {rep['failures'] or 'none'}{'; errors: ' + '; '.join(rep['errors']) if rep['errors'] else ''}",
        "latency of 200s: " + ", ".join(f"{k} {v:.0f}" for k, v in lat["valid"].items()),
        "latency of invalid: " + ", ".join(f"{k} {v:.0f}" for k, v in lat["invalid"].items()),
        f"trend after warm-up: {_fmt(trend['kb_per_request'], 'kB/request')}, {_fmt(trend['mb_per_minute'], 'MB/min')}",
        f"verdict: idle RSS {'within' if v['memory_holds'] else 'NOT within'} {v['tolerance']:.0%} of warm-up "
        f"(max growth {_pct(v['max_growth'])}, final {_pct(v['final_growth'])}); "
        f"requests {'all as expected' if v['requests_hold'] else 'FAILED'}",
    ]
    return "\n".join(lines)


def _fmt(value: float | None, unit: str) -> str:
    return f"{value:+.2f} {unit}" if value is not None else f"n/a {unit}"


def _num(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "n/a"


def _pct(value: float | None) -> str:
    return f"{100 * value:+.1f}%" if value is not None else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30.0, help="load time, pauses excluded (default 30)")
    parser.add_argument("--invalid", type=float, default=0.2, help="share of invalid requests (default 0.2)")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the run before the baseline")
    parser.add_argument("--idle-points", type=int, default=10, help="idle points after the warm-up (default 10)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before each RSS sample")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples under load")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed idle RSS growth (default 0.05)")
    parser.add_argument("--workers", type=int, default=2, help="recogniser threads of the server")
    parser.add_argument("--queue", type=int, default=16)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0, help="server request timeout, s (shared CPU)")
    parser.add_argument("--max-body-bytes", type=int, default=4 << 20)
    parser.add_argument("--max-audio-seconds", type=float, default=600.0)
    parser.add_argument("--trim-idle", type=float, help="the server's --trim-idle (0: off; default: the server's)")
    parser.add_argument(
        "--routes", default="/v1/transcribe,/v1/analyze", help="routes posted to, one picked per request"
    )
    parser.add_argument("--manifest", type=Path, default=ASR_MANIFEST)
    parser.add_argument("--max-clips", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="server environment")
    parser.add_argument("--debug-memory", action="store_true", help="server's tracemalloc/malloc_trim probe")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if not 0 <= args.invalid <= 1 or not 0 < args.warmup < 1 or args.idle_points < 1 or args.clients < 1:
        parser.error("--invalid in [0, 1], --warmup in (0, 1), --idle-points and --clients >= 1")
    if any("=" not in kv for kv in args.env):
        parser.error("--env takes KEY=VALUE")

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminated)  # the server is stopped by LocalServer's __exit__ either way
    rep = run(args)
    text = table(rep)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**rep, "table": text}, indent=1) + "\n")
    if rep["interrupted"]:
        return 130
    if not rep["verdict"]["requests_hold"]:
        return 1
    return 0 if rep["verdict"]["memory_holds"] else 2


if __name__ == "__main__":
    raise SystemExit(main())
