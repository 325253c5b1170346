"""Numba back end against asrfront's C front end, interleaved round by round (docs/benchmarks.md).

    OMP_NUM_THREADS=1 python -m benchmarks.cpu_ratios [--seconds 1 --seconds 60] [--rounds 21]

Every round times a burst of each contender on the same audio, back to back, so
load from other work on a shared machine hits all of them alike; the ratio is
taken within the round.  Prints the CPU (model, SIMD features, the Numba
kernel variant chosen for it), the machine's load average, and per duration and
preset: the median microseconds per second of audio of each contender and the
median and interquartile range of the per-round ratio Numba / asrfront.

``--variant NAME`` times a kernel variant other than the ones chosen for this CPU
(``python -m amser_dsp.backends.variants`` lists them); ``--all-variants`` times
every variant in the same rounds.  ``--json`` prints the report on stderr and one
JSON object on stdout: the CPU, the variants, the ratios and ``row``, the line for
the per-CPU table of docs/benchmarks.md (section 9)::

    OMP_NUM_THREADS=1 python -m benchmarks.cpu_ratios --json > row.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from amser_dsp import get_preset  # noqa: E402
from amser_dsp.backends import variants  # noqa: E402

from .codec_ratios import steady_malloc  # noqa: E402
from .conftest import speech_seconds  # noqa: E402

#: The anchor for each preset: asrfront's call computing the same recipe.
ANCHORS = {
    "whisper": ("asrfront.whisper.log_mel", lambda m, x: m.whisper.log_mel(x, pad_or_trim=False)),
    "kaldi": ("asrfront.sensevoice.fbank_raw", lambda m, x: m.sensevoice.fbank_raw(x)),
}


def burst_time(fn, calls: int) -> float:
    """Median seconds of ``calls`` back-to-back calls."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, action="append", help="audio lengths (default 1 and 60)")
    parser.add_argument("--preset", action="append", choices=sorted(ANCHORS), help="default: both")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--variant", action="append", help="kernel variant(s) to time (default: the chosen one)")
    parser.add_argument("--all-variants", action="store_true")
    parser.add_argument(
        "--json", action="store_true", help="report on stderr, a JSON row for docs/benchmarks.md on stdout"
    )
    parser.add_argument(
        "--steady-malloc",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep freed memory in the heap (both sides then time their arithmetic, not fresh page faults)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if any(s <= 0 for s in args.seconds or []):
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    if args.json and (args.variant or args.all_variants):
        parser.error("--json reports the variants this CPU uses: not with --variant or --all-variants")
    out = sys.stderr if args.json else sys.stdout
    with contextlib.redirect_stdout(out):
        ratios, choice = _run(args)
    if args.json:
        print(json.dumps(json_row(ratios, choice)))
    return 0


def json_row(ratios: dict[str, float], choice) -> dict:
    """The per-CPU table's row: what ran where, and the median ratios Numba / asrfront."""
    from amser_dsp.backends.variants import cpu_model, describe

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    target = describe().splitlines()[0].rpartition("LLVM target ")[2]
    cells = [
        f"{cpu_model()}; LLVM `{target}`; {os.cpu_count()} CPUs",
        f"`{choice.short.name}` / `{choice.long.name}` ({choice.source.split()[0]})",
        *(
            f"{ratios[k]:.2f}" if k in ratios else "-"
            for k in ("whisper 1 s", "whisper 60 s", "kaldi 1 s", "kaldi 60 s")
        ),
        f"{datetime.date.today().isoformat()}, load {os.getloadavg()[0]:.1f}",
        f"amser-dsp {version('amser-dsp')}, Numba {version('numba')}, asrfront {version('asrfront')}",
    ]
    return {
        "cpu": cpu_model(),
        "llvm_target": target,
        "variants": {"short": choice.short.name, "long": choice.long.name, "source": choice.source},
        "ratios": ratios,
        "row": "| " + " | ".join(cells) + " |",
    }


def _run(args: argparse.Namespace):
    """The interleaved rounds; returns the median ratio per ``"preset N s"`` and the back end's choice."""
    steady = args.steady_malloc and steady_malloc()
    try:
        import asrfront
    except ImportError:
        asrfront = None
        print("asrfront is not installed (pip install asrfront): timing the Numba back end alone")
    from amser_dsp.backends.numba_backend import NumbaBackend

    if args.all_variants or args.variant:
        names = list(variants.VARIANTS) if args.all_variants else args.variant
        contenders = {name: NumbaBackend(variant=name) for name in names}
    else:  # the variants this CPU uses (its plan, or the default)
        chosen = NumbaBackend()
        contenders = {f"{chosen.choice.short.name}/{chosen.choice.long.name}": chosen}
    ratios: dict[str, float] = {}
    print(variants.describe())
    print(f"allocator: {'steady (mallopt)' if steady else 'default'}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print("| audio | preset | contender | median us per audio-s | ratio to asrfront (median) | IQR |")
    print("|---:|---|---|---:|---:|---:|")
    for seconds in args.seconds or [1.0, 60.0]:
        x = speech_seconds(seconds)
        calls = max(3, min(200, round(20 / seconds)))
        for preset in args.preset or sorted(ANCHORS):
            config = get_preset(preset)
            fns = {f"numba {n}": (lambda be=be, x=x, c=config: be.log_mel(x, c)) for n, be in contenders.items()}
            if asrfront is not None:
                label, call = ANCHORS[preset]
                fns[label] = lambda call=call, x=x: call(asrfront, x)
            for fn in fns.values():
                fn()  # compile / load and warm up outside the timed rounds
            per_round = {k: [] for k in fns}
            for _ in range(args.rounds):
                for k, fn in fns.items():
                    per_round[k].append(burst_time(fn, calls) / seconds * 1e6)
            anchor = per_round.get(ANCHORS[preset][0]) if asrfront is not None else None
            for k, values in per_round.items():
                if anchor is not None and k != ANCHORS[preset][0]:
                    r = np.array(values) / np.array(anchor)
                    q1, q2, q3 = np.percentile(r, [25, 50, 75])
                    ratio, iqr = f"**{q2:.2f}**", f"{q1:.2f}-{q3:.2f}"
                    ratios.setdefault(f"{preset} {seconds:g} s", float(q2))
                else:
                    ratio, iqr = "1", "-"
                print(f"| {seconds:g} s | {preset} | {k} | {np.median(values):.1f} | {ratio} | {iqr} |")
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return ratios, next(iter(contenders.values())).choice


if __name__ == "__main__":
    raise SystemExit(main())
