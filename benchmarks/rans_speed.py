"""ns per symbol of the rANS coder: ``PYTHONPATH=src python benchmarks/rans_speed.py [seconds_of_audio]``.

Stream: 80 coefficients x 100 frames per second; per-coefficient Laplace scales
from 4 steps (low components, low time frequencies) down to 0.05 steps, so most
quantised values are zero, as in the KLT-DCT codec at about 4-6 kbps.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from amser_dsp.codec import rans, rans_tables


def stream(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_frames = int(100 * seconds)
    comp = np.arange(80)[:, None]
    freq = np.arange(n_frames)[None, :] % 8
    scale = 4.0 * 0.93**comp * 0.7**freq
    ctx = np.broadcast_to(rans_tables.scale_to_index(scale), (80, n_frames)).copy()
    q = np.rint(rng.laplace(0.0, 2.0 ** (ctx / 8))).astype(np.int32)
    return q, ctx


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    q, ctx = stream(seconds)
    n = q.size
    print(
        f"{n} symbols ({seconds:g} s of audio), {np.mean(q == 0):.1%} zero, "
        f"{rans.cost_bits(q, ctx) / seconds / 1000:.2f} kbps ideal"
    )
    for engine, repeat, sub in (("numba", 20, n), ("python", 1, min(n, 80_000))):
        if engine == "numba" and not rans.numba_available():
            continue
        qs, cs = q[:, : sub // 80], ctx[:, : sub // 80]
        data = rans.encode(qs, cs, engine=engine)  # warm up (compile or load the cache)
        assert np.array_equal(rans.decode(data, cs, engine=engine), qs)
        enc = best(lambda qs=qs, cs=cs, e=engine: rans.encode(qs, cs, engine=e), repeat)
        dec = best(lambda d=data, cs=cs, e=engine: rans.decode(d, cs, engine=e), repeat)
        print(
            f"{engine:7s} {qs.size:8d} symbols  {len(data) * 8 / (qs.size / 8000) / 1000:.2f} kbps  "
            f"encode {enc / qs.size * 1e9:7.1f} ns/symbol  decode {dec / qs.size * 1e9:7.1f} ns/symbol"
        )
    rng = np.random.default_rng(1)
    ctx = rng.integers(rans.SCALE_INDEX_MIN, rans.SCALE_INDEX_MAX + 1, 1_000_000)
    q = np.rint(rng.laplace(0.0, 2.0 ** (ctx / 8))).astype(np.int32)
    if rans.numba_available():
        data = rans.encode(q, ctx, engine="numba")
        enc = best(lambda: rans.encode(q, ctx, engine="numba"), 5)
        dec = best(lambda: rans.decode(data, ctx, engine="numba"), 5)
        print(
            f"numba   1M symbols, random tables over the whole grid: encode {enc * 1e3:.1f} ns/symbol, "
            f"decode {dec * 1e3:.1f} ns/symbol"
        )


if __name__ == "__main__":
    main()
