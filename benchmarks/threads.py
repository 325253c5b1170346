"""Thread scaling of the Numba back end: a thread pool over nogil frame ranges vs ``numba.prange``.

Usage: ``NUMBA_NUM_THREADS=2 python benchmarks/threads.py [--seconds 600] [--preset whisper]``.

Runs the three variants interleaved in rounds (the machine may be shared) and
prints medians in microseconds per second of audio and the speed-up over one
thread.  Run it on an idle machine: on a busy 2-core machine a second thread
mostly competes with other people's work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numba
import numpy as np

from amser_dsp import get_preset
from amser_dsp.backends import _numba_kernels as K
from amser_dsp.backends import numba_backend as NB
from amser_dsp.backends import variants
from conftest import speech_seconds

# The kernel variant the back end uses on this CPU for long signals (this benchmark's).
_MEL_BLOCK = K.MEL_BLOCK[variants.choose().long.shape]


@numba.njit(parallel=True, nogil=True)
def _prange_blocks(x, out, peaks, bounds, floats, ints, params, kinds, works):
    for i in numba.prange(bounds.shape[0] - 1):
        _MEL_BLOCK(x, out, peaks[i], bounds[i], bounds[i + 1], floats, ints, params, kinds, False, works[i])


def prange_log_mel(x: np.ndarray, config, threads: int) -> np.ndarray:
    """Same kernel and frame ranges as ``NumbaBackend(workers=threads)``, scheduled by ``prange``."""
    call = NB.NumbaBackend()._call_for(config, x.dtype)
    n_frames = config.num_frames(x.size)
    out = np.empty((1, config.n_mels, n_frames), x.dtype)
    chunk = -(-n_frames // (2 * threads))
    chunk = -(-chunk // K.LANES) * K.LANES
    bounds = np.array([*range(0, n_frames, chunk), n_frames], dtype=np.int64)
    peaks = np.empty((bounds.size - 1, 1), x.dtype)
    works = np.zeros((bounds.size - 1, call.workspace), x.dtype)
    _prange_blocks(x.reshape(1, -1), out, peaks, bounds, *call.plan, works)
    NB.finish_ranges(call.plan, out, peaks)
    return out[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--preset", default="whisper")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    x = speech_seconds(args.seconds)
    config = get_preset(args.preset)
    one, two = NB.NumbaBackend(workers=1), NB.NumbaBackend(workers=2)
    variants = {
        "1 thread": lambda: one.log_mel(x, config),
        "pool, 2 threads": lambda: two.log_mel(x, config),
        "prange, 2 threads": lambda: prange_log_mel(x, config, 2),
    }
    reference = variants["1 thread"]()
    for name, fn in variants.items():
        np.testing.assert_array_equal(fn(), reference, err_msg=name)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["1 thread"])
    print(f"{args.seconds} s, {args.preset}, load average {os.getloadavg()[0]:.2f}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:>18}: {med / args.seconds * 1e6:6.1f} us per audio-s, speed-up {base / med:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
