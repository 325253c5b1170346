"""Measure this machine's lower bounds for log-Mel features (one thread).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/floor.py [--preset kaldi]``.

Measures the throughput of the best building blocks NumPy/SciPy have (batched
``scipy.fft.rfft`` of float32 frames, a large float32 matrix product, ``np.log``
on float32, a large memory copy) and multiplies each by the work one second of
audio needs (100 frames for a 10 ms hop).  Prints three floors, in microseconds
per second of audio:

* memory: read the samples once and write the features once, at copy bandwidth;
* arithmetic at matrix-multiply peak: every floating-point operation of the
  pipeline (real FFT ``2.5 N log2 N``, window, power, band-limited Mel, log
  counted as 10 flops) at the sgemm rate;
* best kernels: batched scipy.fft per frame + band-limited Mel at sgemm rate +
  ``np.log`` + windowing at copy bandwidth; what a pipeline built from the
  fastest available pieces, with nothing wasted between them, would take.
"""

from __future__ import annotations

import argparse
import math
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402

from amser_dsp import get_preset  # noqa: E402
from amser_dsp.frontend import mel_filterbank_for  # noqa: E402


def best_time(fn, repeat: int = 30) -> float:
    """Minimum wall time of ``fn()`` over ``repeat`` calls (the machine is shared: minima are the bound)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(preset: str) -> dict[str, float]:
    config = get_preset(preset)
    rng = np.random.default_rng(0)
    frames_per_s = config.sample_rate / config.hop_length
    batch = 1000
    frames = rng.standard_normal((batch, config.n_fft)).astype(np.float32)
    fft_s = best_time(lambda: scipy.fft.rfft(frames, axis=-1)) / batch  # per frame
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    gemm_flops = 2 * 1024**3 / best_time(lambda: a @ a, 10)
    big = rng.standard_normal(8_000_000).astype(np.float32)
    dst = np.empty_like(big)
    copy_bytes_s = 2 * big.nbytes / best_time(lambda: np.copyto(dst, big), 10)
    logs = np.abs(rng.standard_normal(1_000_000)).astype(np.float32) + 0.1
    log_s = best_time(lambda: np.log(logs, out=dst[: logs.size])) / logs.size  # per value
    bank = mel_filterbank_for(config)
    mel_macs = int(np.count_nonzero(bank))  # band-limited Mel: one multiply-add per nonzero weight
    n = config.n_fft
    flops_frame = 2.5 * n * math.log2(n) + config.frame_length + 3 * config.n_bins + 2 * mel_macs + 10 * config.n_mels
    bytes_per_s = 4 * config.sample_rate + 4 * config.n_mels * frames_per_s
    return {
        "rfft_us_per_frame": fft_s * 1e6,
        "sgemm_gflops": gemm_flops / 1e9,
        "copy_gb_s": copy_bytes_s / 1e9,
        "log_ns_per_value": log_s * 1e9,
        "mel_macs_per_frame": mel_macs,
        "flops_per_frame": flops_frame,
        "floor_memory_us": bytes_per_s / copy_bytes_s * 1e6,
        "floor_arithmetic_us": flops_frame * frames_per_s / gemm_flops * 1e6,
        "floor_kernels_us": (
            fft_s * frames_per_s
            + 2 * mel_macs * frames_per_s / gemm_flops
            + log_s * config.n_mels * frames_per_s
            + 8 * config.frame_length * frames_per_s / copy_bytes_s
        )
        * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="preset(s) to derive floors for (default: all)")
    args = parser.parse_args(argv)
    for preset in args.preset or ["whisper", "kaldi", "amser"]:
        m = measure(preset)
        print(f"[{preset}] " + ", ".join(f"{k} {v:,.3g}" for k, v in m.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
