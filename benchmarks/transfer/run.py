"""Upload time and bytes on the wire over shaped links: raw audio against containers (root only).

    python -m benchmarks.transfer.run --profile lte-weak --count 200           # transmission (server validates only)
    python -m benchmarks.transfer.run --profile 3g --count 20 --recognise      # end to end, with transcripts

Builds the payloads of every method (``payloads.py``, cached under ``--cache``),
sets up the namespaces of ``netlab.py``, starts a real ``amser serve`` in the
server's namespace and, for each round, uploads the same ``--count`` clips with
every method x transport from the device's namespace (``client_run.py``), in an
order that rotates between rounds.  Per run it records the device interface's
byte and packet counters before and after (headers, ACKs and retransmissions
included), the packets the loss rule dropped, the time from the first byte to
every answer, and the transcripts.  Writes one JSON file per invocation under
``--out``; ``report.py`` turns them into docs/transfer.md.

Without ``--recognise`` the server runs ``--no-recognise``: it receives, checks
and decodes every file (containers: checksums and codec; audio: the audio
decoder) and answers without running Whisper, which is what the paper's Table
III times.  With it, every file is transcribed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import netlab, payloads
from .netlab import PROFILES, SRV_ADDR

REPO = Path(__file__).resolve().parents[2]
TRANSPORTS = ("paper", "keepalive-nagle", "keepalive", "ws", "stream")
PORT = 8000
# One BLAS/OpenMP thread per process, as `make` sets it: the machine has two cores and other work on them.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start_server(lab: netlab.Lab, recognise: bool, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "amser_dsp.cli",
        "serve",
        "--host",
        SRV_ADDR,
        "--port",
        str(PORT),
        "--queue",
        "512",
        "--timeout",
        "900",
        "--max-body-bytes",
        str(16 << 20),
    ]
    if not recognise:
        cmd.append("--no-recognise")
    env = {k: v for k, v in {**os.environ, **ONE_THREAD}.items() if k not in ("AMSER_API_KEY", "AMSER_API_KEY_FILE")}
    proc = lab.popen(lab.srv, cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    probe = (
        "import httpx,time,sys\n"
        "for _ in range(600):\n"
        f"    try:\n        httpx.get('http://{SRV_ADDR}:{PORT}/healthz',timeout=2).raise_for_status(); sys.exit(0)\n"
        "    except httpx.HTTPError: time.sleep(0.2)\n"
        "sys.exit(1)\n"
    )
    if lab.netns_exec(lab.srv, sys.executable, "-c", probe, check=False, timeout=180).returncode:
        raise RuntimeError(f"amser serve did not come up; see {log}")
    return proc


def upload(lab: netlab.Lab, cache: Path, method: str, transport: str, count: int, timeout: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("client_run.py")),
        "--url",
        f"http://{SRV_ADDR}:{PORT}",
        "--payloads",
        str(cache),
        "--method",
        method,
        "--transport",
        transport,
        "--count",
        str(count),
    ]
    if method in payloads.AUDIO_METHODS:
        cmd.append("--audio")
    before, dropped = lab.counters(), lab.dropped()
    out = lab.netns_exec(
        lab.dev, "env", *(f"{k}={v}" for k, v in ONE_THREAD.items()), *cmd, timeout=timeout, check=False
    )
    after = lab.counters()
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    result = json.loads(out.stdout)
    result.pop("start_monotonic", None)
    result["wire"] = {k: after[k] - before[k] for k in after}
    result["dropped_packets"] = lab.dropped() - dropped
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES), help="repeatable; default all")
    parser.add_argument("--dataset", choices=["emotion", "asr"], default="emotion")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--count", type=int, default=200, help="clips per upload")
    parser.add_argument("--rounds", type=int, default=1, help="repetitions, order rotated between them")
    parser.add_argument("--methods", default=",".join(payloads.METHODS))
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--recognise", action="store_true", help="transcribe every file (default: validate only)")
    parser.add_argument("--english-only", action="store_true", help="skip EmoDB (German) clips")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "transfer")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "transfer")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per upload run")
    parser.add_argument("--tag", default="", help="added to the output file name")
    args = parser.parse_args(argv)

    missing = netlab.missing_tools()
    if missing:
        print(
            "the transfer benchmark needs " + ", ".join(missing) + "; run it as root (sudo make transfer)",
            file=sys.stderr,
        )
        return 2
    methods = tuple(m for m in args.methods.split(",") if m)
    transports = tuple(t for t in args.transports.split(",") if t)
    bad = [m for m in methods if m not in payloads.METHODS] + [t for t in transports if t not in TRANSPORTS]
    if bad:
        parser.error(f"unknown methods/transports {bad}")
    manifest = args.data / args.dataset / "manifest.tsv"
    if not manifest.exists():
        parser.error(f"no manifest at {manifest} (the shared speech data)")
    clips = payloads.read_clips(manifest, args.count, english_only=args.english_only)
    if len(clips) < args.count:
        parser.error(f"{manifest} has only {len(clips)} clips")
    suffix = "-en" if args.english_only else ""
    cache = args.cache / f"{args.dataset}{suffix}-{args.count}"
    index_file = cache / "index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {"methods": {}}
    todo = tuple(m for m in methods if m not in index["methods"])
    if todo:
        print(f"encoding {len(clips)} clips with {', '.join(todo)} ...", file=sys.stderr)
        fresh = payloads.prepare(clips, todo, cache)
        index["methods"].update(fresh["methods"])
        index.update({k: v for k, v in fresh.items() if k != "methods"})
        index_file.write_text(json.dumps(index))

    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    combos = [(m, t) for m in methods for t in transports]
    record = {
        "cpu": payloads.cpu_model(),
        "dataset": args.dataset,
        "count": args.count,
        "recognise": args.recognise,
        "english_only": args.english_only,
        "audio_seconds": sum(c.seconds for c in clips),
        "clips": [c.id for c in clips],
        "texts": [c.text for c in clips],
        "payloads": index["methods"],
        "encode_backend": index.get("backend"),
        "profiles": {},
        "runs": runs,
        "command": "python -m benchmarks.transfer.run " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    with netlab.Lab() as lab:
        server = start_server(lab, args.recognise, args.out / "server.log")
        for name in args.profile or list(PROFILES):
            profile = PROFILES[name]
            lab.apply(profile)
            rtt = lab.measure_rtt(PORT)
            record["profiles"][name] = {**profile.__dict__, "measured_rtt_ms": rtt}
            print(f"{name}: RTT configured {profile.rtt_ms:.0f} ms, measured {rtt:.1f} ms", file=sys.stderr)
            for r in range(args.rounds):
                shift = r * len(combos) // max(args.rounds, 1)
                for method, transport in combos[shift:] + combos[:shift]:
                    t = time.perf_counter()
                    res = upload(lab, cache, method, transport, args.count, args.timeout)
                    res.update(profile=name, method=method, transport=transport, round=r)
                    runs.append(res)
                    took = res["answer_s"][-1] if "answer_s" in res else float("nan")
                    print(
                        f"  {method:10s} {transport:16s} {took:8.2f} s  tx {res.get('wire', {}).get('tx_bytes', 0):>10,} B"
                        f"  ({time.perf_counter() - t:.0f} s){'  ' + res['error'] if 'error' in res else ''}",
                        file=sys.stderr,
                    )
        server.terminate()
    mode = "asr" if args.recognise else "tx"
    profiles = "+".join(args.profile or ["all"])
    path = args.out / f"{mode}-{args.dataset}{suffix}-{args.count}-{profiles}{args.tag}.json"
    path.write_text(json.dumps(record, indent=1))
    left = netlab.leftovers()
    print(f"wrote {path}; left over after clean-up: {' '.join(left) or 'nothing'}", file=sys.stderr)
    return 1 if left or any("error" in r for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
