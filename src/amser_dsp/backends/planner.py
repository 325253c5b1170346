"""The planner: time the kernel variants on this CPU and keep the fastest per input length (the plan).

``python -m amser_dsp.backends.variants --measure`` (or ``--warm``: measure only if no valid plan, then
compile) runs :func:`main`.  The plan is read by :func:`amser_dsp.backends.variants.choose`; measuring never
happens inside a request or a timed benchmark unless asked.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import BackendError, UnknownBackendError
from .variants import (
    CLASSES,
    PLAN_FORMAT,
    VARIANTS,
    buffer_bytes,
    decide,
    describe,
    get,
    load_plan,
    plan_key,
    reference,
    save_plan,
)

__all__ = ["Maker", "main", "measure", "warm"]

Maker = Callable[[str], Callable[[np.ndarray, Any], Any]]


def _default_maker(name: str) -> Callable[[np.ndarray, Any], Any]:
    from .numba_backend import NumbaBackend

    return NumbaBackend(variant=name).log_mel


def measure(
    candidates: Sequence[str] | None = None,
    *,
    budget: float = 3.0,
    make: Maker | None = None,
    rounds: tuple[int, int] = (5, 41),
) -> dict[str, Any]:
    """Time the candidates on this CPU and return the plan (not saved: see :func:`save_plan`).

    Each candidate is called once on every signal first (compiling or loading
    it, outside the timing).  Then rounds: in each, every candidate computes the
    ``whisper`` and ``kaldi`` features of a 1 s and a 60 s synthetic signal (a
    burst of calls for 1 s), back to back, so load from other work hits all of
    them alike.  Rounds continue until ``budget`` seconds of timing are spent
    (at least ``rounds[0]``, at most ``rounds[1]``).  Per class the plan keeps
    the reference (:func:`~.variants.reference`) unless a candidate's median per-round ratio to
    it, and the ratio of the best rounds, are both below ``1 - MARGIN``, and it
    was faster in three rounds of four (:func:`decide`).

    Parameters
    ----------
    candidates : sequence of str, optional
        Variant names (default: all of :data:`VARIANTS`); the default variant is always added.
    budget : float
        Seconds of timing (compilation not included).
    make : callable, optional
        ``make(name)`` gives the function timed for a candidate (default: its
        ``NumbaBackend.log_mel``); tests inject a slowed one.
    """
    from ..config import get_preset

    default = reference().name  # the override, if set, is not a candidate's rival
    names = list(dict.fromkeys([default, *(candidates if candidates is not None else VARIANTS)]))
    for name in names:
        get(name)
    if budget <= 0 or rounds[0] < 1 or rounds[1] < rounds[0]:
        raise BackendError(f"the planner needs budget > 0 and 1 <= min rounds <= max rounds, got {budget}, {rounds}")
    make = _default_maker if make is None else make
    rng = np.random.default_rng(0)
    configs = [get_preset(p) for p in ("whisper", "kaldi")]
    signals = {c: (0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for c, s in CLASSES.items()}
    calls = {c: max(1, round(20 / s)) for c, s in CLASSES.items()}  # 1 s: a burst of 20 calls
    fns = {name: make(name) for name in names}
    started = time.perf_counter()
    for fn in fns.values():
        for x in signals.values():
            for config in configs:
                fn(x, config)  # compile or load, outside the timing
    compile_seconds = time.perf_counter() - started
    times: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in CLASSES}
    started = time.perf_counter()
    done = 0
    while done < rounds[1] and (done < rounds[0] or time.perf_counter() - started < budget):
        for c, x in signals.items():
            for name in names[done % len(names) :] + names[: done % len(names)]:  # rotate who goes first
                fn = fns[name]
                t0 = time.perf_counter()
                for _ in range(calls[c]):
                    for config in configs:
                        fn(x, config)
                times[c][name].append((time.perf_counter() - t0) / calls[c])
        done += 1
    timed = time.perf_counter() - started
    choice, table = {}, {}
    for c, per in times.items():
        choice[c], stats = decide(per, default)
        table[c] = {
            n: {"us_per_audio_s": 1e6 * statistics.median(per[n]) / CLASSES[c] / len(configs), **r}
            for n, r in stats.items()
        }
    return {
        "format": PLAN_FORMAT,
        "key": plan_key(),
        "choice": choice,
        "default": default,
        "timings": table,
        "rounds": done,
        "seconds": {"timing": round(timed, 3), "compile_or_load": round(compile_seconds, 3)},
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def warm(budget: float = 3.0) -> dict[str, Any]:
    """Measure if this CPU has no valid plan (saving it), then compile the chosen variants into Numba's cache.

    For installs and ``make demo``: afterwards no first request compiles
    (float32, the features' default dtype; float64 compiles on its first use).
    """
    plan = load_plan()
    if plan is None:
        plan = measure(budget=budget)
        save_plan(plan)
    from ..config import get_preset

    x = np.zeros(16000, np.float32)
    for name in sorted(set(plan["choice"].values())):
        fn = _default_maker(name)
        for preset in ("whisper", "kaldi"):
            fn(x, get_preset(preset))
    return plan


def _plan_table(plan: dict[str, Any]) -> str:
    rows = [
        "| class | variant | us per audio-s (whisper and kaldi, mean of medians) | ratio to default: median, best |",
        "|---|---|---:|---:|",
    ]
    for c, per in plan["timings"].items():
        for name, t in sorted(per.items(), key=lambda kv: kv[1]["ratio"]):
            mark = " (chosen)" if plan["choice"][c] == name else ""
            rows.append(
                f"| {c} ({CLASSES[c]:g} s) | {name}{mark} | {t['us_per_audio_s']:.1f} | "
                f"{t['ratio']:.3f}, {t.get('best_ratio', t['ratio']):.3f} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m amser_dsp.backends.variants [--measure | --warm] [--budget S]``."""
    parser = argparse.ArgumentParser(description="The Numba kernel variants chosen for this CPU, and the planner.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--measure", action="store_true", help="time the candidates now and save the plan")
    group.add_argument("--warm", action="store_true", help="measure if no valid plan, then compile the chosen variants")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing for --measure/--warm (default 3)")
    parser.add_argument("--candidates", help="comma-separated variant names for --measure (default: all)")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget}")
    if args.candidates and not args.measure:
        parser.error("--candidates goes with --measure")
    try:
        if args.measure:
            names = args.candidates.split(",") if args.candidates else None
            print(f"plan written to {save_plan(measure(names, budget=args.budget))}")
        elif args.warm:
            warm(args.budget)
        from . import _numba_kernels  # noqa: F401  (settles the code generation described below)
    except (UnknownBackendError, BackendError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe())
    plan = load_plan()
    if plan is not None:
        print(
            f"\nmeasured {plan['measured']}: {plan['rounds']} rounds, {plan['seconds']['timing']:.1f} s of timing "
            f"({plan['seconds']['compile_or_load']:.1f} s compiling or loading first)\n" + _plan_table(plan)
        )
    print()
    for v in VARIANTS.values():
        print(
            f"  {v.name}: {v.lanes} lanes, tails {'/'.join(map(str, v.tails))}, {v.widths} compiled "
            f"width{'s' if v.widths > 1 else ''}, buffers {buffer_bytes(v.lanes) // 1024} KiB"
        )
    return 0
