"""Start-up cost of the Numba back end in a new process.

Usage: ``python benchmarks/startup.py [--runs 7] [--cold 2]``.

Warm: wall time of ``python -c "import amser_dsp; features(1 s, whisper, numba)"``
with the kernels already in Numba's on-disk cache (interpreter start
included), and the split inside the process (``import amser_dsp``, ``import
numba``, first call, and the first call's CPU time: on a loaded machine the
wall time of a compile is mostly waiting).  Cold: the same with an empty
``NUMBA_CACHE_DIR``, so the kernels compile from scratch (first-call compile
time; no planner plan either, so the default variant compiles).  Targets: warm
<= 0.8 s wall, cold < 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

_CHILD = """
import json, time
t0 = time.perf_counter()
import numpy as np
import amser_dsp
t1 = time.perf_counter()
import numba
t2 = time.perf_counter()
c2 = time.process_time()
x = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
amser_dsp.features(x, 16000, "whisper", backend="numba")
t3 = time.perf_counter()
print(json.dumps({"import_amser_dsp": t1 - t0, "import_numba": t2 - t1, "first_call": t3 - t2, "in_process": t3 - t0,
                  "first_call_cpu": time.process_time() - c2}))
"""


def run_once(cache_dir: str | None = None) -> dict[str, float]:
    """One fresh interpreter; returns its timings plus ``wall`` (seconds)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, env=env)
    wall = time.perf_counter() - start
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall": wall}


def summarise(label: str, runs: list[dict[str, float]]) -> None:
    keys = ("wall", "in_process", "import_amser_dsp", "import_numba", "first_call", "first_call_cpu")
    medians = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(f"{label} ({len(runs)} runs, medians, s): " + ", ".join(f"{k} {v:.3f}" for k, v in medians.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="warm runs")
    parser.add_argument("--cold", type=int, default=1, help="cold runs (each compiles from scratch)")
    args = parser.parse_args(argv)
    run_once()  # make sure the default cache is warm
    summarise("warm cache", [run_once() for _ in range(args.runs)])
    cold = []
    for _ in range(args.cold):
        with tempfile.TemporaryDirectory() as tmp:
            cold.append(run_once(tmp))
    if cold:
        summarise("cold cache", cold)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
