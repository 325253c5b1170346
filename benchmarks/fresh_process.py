"""Per-call time and page faults of each back end in a fresh process, with glibc's default malloc settings.

``python benchmarks/fresh_process.py [--seconds 60] [--calls 30]``: every call's minor page faults
(``getrusage``) and wall time, medians over the calls; run it in a new process each time (it is the fresh
allocator state that matters: whole-signal temporaries are mapped afresh by glibc on every call).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time

import numpy as np

import amser_dsp
from amser_dsp.backends import available, get

from .conftest import speech_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--preset", default="whisper")
    args = parser.parse_args(argv)
    x = np.ascontiguousarray(speech_seconds(args.seconds))
    config = amser_dsp.get_preset(args.preset)
    print(
        f"{args.seconds} s, {args.preset}, {platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.1f}"
    )
    for name in available():
        backend = get(name)
        backend.log_mel(x[:16000], config)  # imports and first-call work outside the count
        times, faults = [], []
        for _ in range(args.calls):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            backend.log_mel(x, config)
            times.append(time.perf_counter() - start)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        print(
            f"{name:>6}: {1000 * statistics.median(times):6.2f} ms per call, {statistics.median(faults):6.0f} minor page faults"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
