"""Run the board benchmark and print its table (what ``make bench-board`` runs).

    python benchmarks/board.py [--json out/board.json] [--quick] [-- PYTEST-ARGS...]

Runs ``pytest benchmarks/test_board.py`` with one thread, writes the
pytest-benchmark JSON (compare two boards with ``pytest-benchmark compare
a.json b.json``), then prints the CPU (model, vector features, Numba kernel
variant), the load average, and per clip length and streaming block size the
median and 99th percentile latency per call and the real-time factor.
``--quick`` runs three rounds per benchmark (for emulated machines, where
timings mean nothing but the run proves everything works).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

HERE = Path(__file__).resolve().parent


def table(data: dict) -> str:
    """Markdown: one row per benchmark, clips by length then streams by block size, fastest first."""
    rows = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "p50_ms" not in info:
            continue
        rows.append(info)
    order = {"ours": 0, "anchor": 1, "stream": 2}
    rows.sort(key=lambda r: (r["kind"] == "stream", r["seconds"], r["p50_ms"], order.get(r["kind"], 3)))
    lines = [
        "| call | what | kind | p50 ms per call | p99 ms | real-time factor |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        call = f"{r['seconds'] * 1000:g} ms block" if r["kind"] == "stream" else f"{r['seconds']:g} s clip"
        lines.append(f"| {call} | {r['what']} | {r['kind']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['rtf']:.2e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("out/board.json"))
    parser.add_argument("--quick", action="store_true", help="three rounds per benchmark (emulation)")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest after --")
    args = parser.parse_args(argv)
    if args.quick:
        os.environ["AMSER_BENCH_QUICK"] = "1"
    import pytest

    from amser_dsp.backends import variants

    args.json.parent.mkdir(parents=True, exist_ok=True)
    print(variants.describe())
    status = pytest.main(
        [str(HERE / "test_board.py"), "-q", "-ra", "-p", "no:cacheprovider", f"--benchmark-json={args.json}",
         "--benchmark-columns=median,iqr,rounds", *args.pytest_args],
    )  # fmt: skip
    if args.json.exists():
        data = json.loads(args.json.read_text(encoding="utf-8"))
        info = data.get("machine_info", {}).get("amser_dsp", {})
        load = info.get("load_average")
        print(f"\n{data.get('datetime', '')}; load average during the run: {load}")
        print(table(data))
        print(f"\nJSON: {args.json} (pytest-benchmark compare {args.json} OTHER.json)")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
