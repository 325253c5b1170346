"""Codec time as a fraction of the feature time, interleaved round by round (docs/codec.md).

    OMP_NUM_THREADS=1 python -m benchmarks.codec_ratios [--rounds 41] [--burst 5] [--seconds 60]

pytest-benchmark times each benchmark in its own window; on a shared machine
the feature time (the budget) drifts by 10% between windows, which decides a
target like "decode in under a tenth of the feature time".  Here every round
times a burst of ``--burst`` feature computations and a burst of each codec
operation, back to back (the median of a burst: warm caches, as in a loop over
files), and the ratio is taken within the round; the table gives the median
ratio and its interquartile range over rounds.

Allocator: in a fresh process glibc maps the front end's whole-signal arrays
afresh on every call, and their page faults nearly double the feature time
(docs/benchmarks.md).  ``--steady-malloc`` (the default) raises the mmap and trim
thresholds with ``mallopt`` so both sides are timed in the steady state a
long-running process reaches; ``--no-steady-malloc`` times the fresh-process case.
``--stdlib-inflate`` decodes SVD containers with zlib even when isal is installed.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import time
import zlib

import numpy as np

import amser_dsp
from amser_dsp import backends, get_preset
from amser_dsp.codec import svd

from .conftest import speech_seconds
from .test_codec_speed import MODES


def steady_malloc() -> bool:
    """Keep freed memory in the heap (glibc ``mallopt``); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError, TypeError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--steady-malloc", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--stdlib-inflate", action="store_true", help="decode SVD containers with zlib even if isal is installed"
    )
    args = parser.parse_args(argv)
    if args.stdlib_inflate:
        svd._inflater = lambda: zlib
    steady = args.steady_malloc and steady_malloc()
    audio = speech_seconds(args.seconds)
    config = get_preset("whisper")
    numpy_backend = backends.get("numpy")
    feats = amser_dsp.features(audio, 16000, "whisper", backend="numpy")
    blobs = {name: amser_dsp.encode(feats, config="whisper", **kw) for name, kw in MODES.items()}
    ops = {f"encode {n}": (lambda kw=kw: amser_dsp.encode(feats, config="whisper", **kw)) for n, kw in MODES.items()}
    ops |= {f"decode {n}": (lambda b=b: amser_dsp.decode(b)) for n, b in blobs.items()}
    ratios: dict[str, list[float]] = {name: [] for name in ops}
    budget = []

    def burst(op) -> float:
        times = []
        for _ in range(args.burst):
            t0 = time.perf_counter()
            op()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    for _ in range(args.rounds):
        base = burst(lambda: numpy_backend.log_mel(audio, config))
        budget.append(base)
        for name, op in ops.items():
            ratios[name].append(burst(op) / base)
    print(
        f"{args.seconds} s of speech, {args.rounds} interleaved rounds of bursts of {args.burst}; "
        f"allocator {'steady (mallopt)' if steady else 'default'}; inflate {svd._inflater().__name__}; "
        "features (NumPy back end): "
        f"median {1000 * np.median(budget):.2f} ms\n"
    )
    print("| operation | median ratio to the feature time | interquartile range |")
    print("|---|---:|---:|")
    for name, values in sorted(ratios.items(), key=lambda kv: np.median(kv[1])):
        q1, q2, q3 = np.percentile(values, [25, 50, 75])
        print(f"| {name} | {q2:.3f} | {q1:.3f}-{q3:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
