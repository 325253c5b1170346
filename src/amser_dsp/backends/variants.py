"""Numba kernel variants, and the planner that measures which is fastest on this CPU.

The fused kernel (:mod:`._numba_kernels`) processes frames in blocks of
``lanes`` frames stored lane-major; every lane loop is one SIMD loop over
``lanes`` contiguous values.  Wider blocks share each butterfly's index and
twiddle work among more vectors (64 lanes are four 512-bit or eight 256-bit
vectors), but the block's buffers grow with them: five ``(n_fft / 2, lanes + 4)``
planes plus the transposed samples, about 440 KB at 64 lanes and ``n_fft = 512``.
A variant is a main width and the widths of the blocks that take the tail of
33-48, 17-32 and 1-16 frames (``lanes64``: 48, 32, 16, so a 1 s clip is 64 + 48
lanes; ``lanes64p``: the tail in one more 64-lane block).  Every distinct width
is a compiled copy of the whole block pipeline, so the variant also sets what a
cold start compiles: ``lanes64p`` and ``lanes16`` one copy, ``lanes64t48`` and
``lanes32`` two, ``lanes64`` four.  Every variant computes the same features
(tested against the NumPy reference, one by one, in ``tests/test_variants.py``);
they differ only in speed.

**The planner** (FFTW's "wisdom", for this kernel).  ``python -m
amser_dsp.backends.variants --measure`` times every candidate on this CPU on
short (1 s) and long (60 s) synthetic signals with the ``whisper`` and ``kaldi``
presets, interleaved round by round within a time budget (a few seconds once
the candidates are compiled), and keeps the fastest per input-length class
(:data:`SHORT_FRAMES`) in a small JSON file next to Numba's cache (or in
``AMSER_DSP_NUMBA_PLAN_DIR``), keyed by the CPU (model, LLVM target and
features, Numba's code generation settings) and the package and Numba
versions.  A candidate replaces the default only if it is faster by more than
the noise (:data:`MARGIN`).  Later processes read the file; a corrupt file, or
one made for another CPU or version, is ignored (the default is used) and
rewritten by the next ``--measure`` or ``--warm``.  Nothing measures unless
asked: not a request, not a benchmark.  ``--warm`` (run by ``make demo``)
measures if there is no valid plan, then compiles the chosen variants into
Numba's cache so that no first request compiles.
``AMSER_DSP_NUMBA_VARIANT`` or ``NumbaBackend(variant=...)`` overrides the plan.

**The default** (no plan): the widest block whose buffers fit in half the
per-core L2 (the other half holds the signal, the output and the filter bank):
64 lanes on most desktop, server and recent ARM cores, 32 or 16 on cores with
256-512 KB of L2.  Measured on Zen 4 (1 MB L2 per core) 64 lanes beat 32 and 16
at 1, 10 and 60 s; on Zen 5, 128 lanes were slower than 64 once the buffers left
L2 (docs/benchmarks.md, sections 5 and 8).  Of the 64-lane variants the default
is ``lanes64t48``: the same blocks as ``lanes64`` for 1 s (64 + 48) and long
signals, half its compiled widths (a cold start compiles half as much), 48 lanes
for tails of 32 frames or fewer; ``lanes64p`` compiles one width but pays a
whole 64-lane block for every tail (measured about 5% slower at 1 s on Zen 4).

**Code generation.**  For Intel's AVX-512 server and client cores LLVM's tuning
prefers 256-bit vectors (``prefer-256-bit``): compiled for ``skylake-avx512`` or
``icelake-server`` every lane loop of the FFT, power and Mel stages uses ymm
registers only, half the width the same code gets on Zen 4 (``python -m
benchmarks.kernel_asm`` counts them).  On those CPUs, and only when nothing else
in the process has set Numba's target yet, :func:`configure_numba` asks for
512-bit vectors (``-prefer-256-bit``) before Numba is imported;
``AMSER_DSP_NUMBA_WIDE=0`` keeps LLVM's default.  AMD and ARM targets are left
alone.  The code generation is a per-process setting (Numba reads it once), so
it is part of the plan's key rather than a candidate timed in one process.

``python -m amser_dsp.backends.variants`` prints the CPU, its vector features,
its L2, the variants chosen and where the choice came from.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, UnknownBackendError

__all__ = [
    "ENV_VAR",
    "PLAN_DIR_ENV_VAR",
    "SHORT_FRAMES",
    "VARIANTS",
    "Choice",
    "Variant",
    "buffer_bytes",
    "choose",
    "configure_numba",
    "cpu_features",
    "cpu_model",
    "decide",
    "describe",
    "get",
    "l2_bytes",
    "load_plan",
    "measure",
    "plan_key",
    "plan_path",
    "save_plan",
    "select",
    "warm",
]

ENV_VAR = "AMSER_DSP_NUMBA_VARIANT"
WIDE_ENV_VAR = "AMSER_DSP_NUMBA_WIDE"
PLAN_DIR_ENV_VAR = "AMSER_DSP_NUMBA_PLAN_DIR"

#: Signals of at most this many frames (5 s at a 10 ms hop) use the plan's short-input variant.
SHORT_FRAMES = 500
#: The length classes and the signal each is measured on, in seconds.
CLASSES = {"short": 1.0, "long": 60.0}
#: A candidate replaces the default only if its median per-round and best-round time ratios to it are below ``1 - MARGIN``.
MARGIN = 0.02
PLAN_FORMAT = 1

#: LLVM CPU names with AVX-512 whose tuning prefers 256-bit vectors (X86.td's ``TuningPrefer256Bit``).
PREFER_256 = frozenset(
    {
        "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client", "icelake-server",
        "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d",
        "diamondrapids",
    }
)  # fmt: skip

#: What :func:`configure_numba` did in this process (for :func:`describe`).
_codegen_note = "LLVM defaults"


@dataclass(frozen=True)
class Variant:
    """A compiled shape of the fused kernel: its main block width and its tail blocks' widths."""

    name: str
    lanes: int  # frames per full block
    tails: tuple[int, int, int] = (48, 32, 16)  # block widths for tails of 33-48, 17-32, 1-16 frames

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The key of the variant's entry point in ``_numba_kernels.MEL_BLOCK``."""
        return (self.lanes, *self.tails)

    @property
    def widths(self) -> int:
        """How many copies of the block pipeline the variant compiles (one per distinct width)."""
        return len({self.lanes, *self.tails})


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("lanes64", 64, (48, 32, 16)),
        Variant("lanes64t48", 64, (48, 48, 48)),
        Variant("lanes64p", 64, (64, 64, 64)),
        Variant("lanes32", 32, (32, 32, 16)),
        Variant("lanes16", 16, (16, 16, 16)),
    )
}


@dataclass(frozen=True)
class Choice:
    """The variant for each input-length class, and where the choice came from."""

    short: Variant  # signals of at most SHORT_FRAMES frames
    long: Variant
    source: str  # "AMSER_DSP_NUMBA_VARIANT", "plan <path>" or "default (...)"

    def for_frames(self, n_frames: int) -> Variant:
        """The variant for a signal of ``n_frames`` frames."""
        return self.short if n_frames <= SHORT_FRAMES else self.long


def buffer_bytes(lanes: int, n_fft: int = 512, hop: int = 160, itemsize: int = 4) -> int:
    """Bytes of one block's working buffers (FFT ping-pong planes, power, transposed samples)."""
    planes = 5 * (n_fft // 2 + 1) * (lanes + 16 // itemsize) * itemsize
    samples = 2 * hop * (lanes + 16) * itemsize
    return planes + samples


def l2_bytes() -> int | None:
    """Per-core L2 cache size from sysfs (Linux), or ``None`` where it is not reported."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(base.glob("index*")):
            if (index / "level").read_text().strip() == "2" and (index / "type").read_text().strip() != "Instruction":
                text = (index / "size").read_text().strip().upper()
                scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
                return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return None


def cpu_features() -> frozenset[str]:
    """CPU features LLVM targets on this host (``avx512f``, ``avx2``, ``neon``, ...); empty if unknown."""
    try:
        import llvmlite.binding as llvm

        raw = llvm.get_host_cpu_features()
    except Exception:  # llvmlite missing or the host query unsupported
        return frozenset()
    return frozenset(name for name, on in raw.items() if on)


def cpu_model() -> str:
    """A human-readable CPU model: ``/proc/cpuinfo``'s model name (vendor/family/model ids added), else platform."""
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key and key not in info:
            info[key] = value.strip()
    if "model name" in info:
        ids = ", ".join(f"{k} {info[k]}" for k in ("vendor_id", "cpu family", "model", "stepping") if k in info)
        return f"{info['model name']} ({ids})" if ids else info["model name"]
    if "CPU part" in info:  # ARM: implementer and part numbers identify the core
        return f"{platform.machine()} CPU implementer {info.get('CPU implementer', '?')} part {info['CPU part']}"
    return platform.processor() or platform.machine() or "unknown CPU"


def get(name: str) -> Variant:
    """The variant called ``name``.

    Raises
    ------
    UnknownBackendError
        If there is no such variant (a ``LookupError``).
    """
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownBackendError(f"unknown Numba kernel variant {name!r}; variants: {sorted(VARIANTS)}") from None


def select(l2: int | None = -1) -> Variant:
    """The default variant: ``AMSER_DSP_NUMBA_VARIANT`` if set, else the widest whose buffers fit half the L2.

    The rule used where nothing was measured (:func:`choose` prefers a plan).
    ``l2`` is the per-core L2 in bytes (default: :func:`l2_bytes`; ``None``:
    unknown, which chooses 64 lanes, the width measured best where measured).
    """
    chosen = os.environ.get(ENV_VAR)
    return get(chosen) if chosen else _by_l2(l2)


def _by_l2(l2: int | None = -1) -> Variant:
    size = l2_bytes() if l2 == -1 else l2
    if size is None:
        return VARIANTS["lanes64t48"]
    for name in ("lanes64t48", "lanes32"):
        if buffer_bytes(VARIANTS[name].lanes) <= size // 2:
            return VARIANTS[name]
    return VARIANTS["lanes16"]


# ------------------------------------------------------------------ the plan
def plan_key() -> dict[str, str]:
    """What a plan is valid for: this CPU, the code Numba generates for it, and the versions.

    Imports the kernels' module (without compiling): that settles Numba's code
    generation (:func:`configure_numba`), which the key records.
    """
    from importlib.metadata import PackageNotFoundError, version

    from . import _numba_kernels  # noqa: F401

    try:
        import llvmlite.binding as llvm

        host, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    except Exception:
        host, features = "?", ""

    def _version(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "?"

    return {
        "cpu": cpu_model(),
        "llvm_cpu": host,
        "features": hashlib.sha256(features.encode()).hexdigest()[:16],
        "numba_cpu_name": os.environ.get("NUMBA_CPU_NAME", ""),
        "numba_cpu_features": os.environ.get("NUMBA_CPU_FEATURES", ""),
        "amser_dsp": _version("amser-dsp"),
        "numba": _version("numba"),
    }


def _numba_cache_dir() -> Path:
    """Where Numba caches the kernels (its own locator's answer), else ``NUMBA_CACHE_DIR`` or beside them."""
    from . import _numba_kernels as K

    try:
        return Path(K.mel_block_64._cache._cache_path)
    except AttributeError:  # Numba's private layout moved: the same rule by hand
        return Path(os.environ.get("NUMBA_CACHE_DIR") or Path(K.__file__).parent / "__pycache__")


def plan_path(key: dict[str, str] | None = None) -> Path:
    """The plan file for ``key`` (default :func:`plan_key`): next to Numba's cache or in ``AMSER_DSP_NUMBA_PLAN_DIR``."""
    key = plan_key() if key is None else key
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = os.environ.get(PLAN_DIR_ENV_VAR)
    return (Path(folder) if folder else _numba_cache_dir()) / f"amser_dsp-plan-{digest}.json"


def load_plan(path: Path | None = None) -> dict[str, Any] | None:
    """The plan made on this CPU with these versions, or ``None`` (missing, corrupt, or for another key)."""
    key = plan_key()
    path = plan_path(key) if path is None else path
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT or plan.get("key") != key:
        return None
    choice = plan.get("choice")
    if not isinstance(choice, dict) or any(choice.get(c) not in VARIANTS for c in CLASSES):
        return None
    return plan


def save_plan(plan: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``plan`` atomically (a temporary file in the same folder, then renamed over the old one)."""
    path = plan_path(plan["key"]) if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(plan, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def choose() -> Choice:
    """The variants to use: ``AMSER_DSP_NUMBA_VARIANT``, else this CPU's plan, else the default (:func:`select`).

    Reads the plan file at most (a small JSON); never measures.
    """
    if os.environ.get(ENV_VAR):
        v = select()
        return Choice(v, v, ENV_VAR)
    try:
        path = plan_path()
    except ImportError:  # no Numba: nothing can have been measured
        v = select()
        return Choice(v, v, "default (Numba is not installed)")
    plan = load_plan(path)
    if plan is not None:
        return Choice(VARIANTS[plan["choice"]["short"]], VARIANTS[plan["choice"]["long"]], f"plan {path}")
    v = select()
    return Choice(v, v, "default (no plan measured for this CPU: the widest block that fits half the L2)")


def decide(rounds: dict[str, Sequence[float]], default: str) -> tuple[str, dict[str, dict[str, float]]]:
    """The winner of one length class from each candidate's per-round times, and its ratios to ``default``.

    Paired (same round) and best-of ratios: load from other work only adds
    time, so a candidate replaces the default only if its median and its best
    ratio are both below ``1 - MARGIN`` and it was faster in three rounds of
    four; among such, the lowest median ratio wins.
    """
    base = np.asarray(rounds[default], float)
    paired = {n: np.asarray(v, float) / base for n, v in rounds.items()}
    stats = {
        n: {"ratio": float(np.median(r)), "best_ratio": float(min(rounds[n]) / base.min())} for n, r in paired.items()
    }
    winners = [
        n
        for n, r in paired.items()
        if max(stats[n]["ratio"], stats[n]["best_ratio"]) < 1 - MARGIN and np.percentile(r, 75) < 1
    ]
    return (min(winners, key=lambda n: stats[n]["ratio"]) if winners else default), stats


#: Makes the call timed for a candidate: ``make(name)`` returns ``f(samples, config)``.
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
    the default (:func:`select`) unless a candidate's median per-round ratio to
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

    default = _by_l2().name  # what runs without a plan (the override, if set, is not a candidate's rival)
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


def wide_vectors_wanted(cpu_name: str, features: frozenset[str]) -> bool:
    """Whether to ask LLVM for 512-bit vectors: an AVX-512 CPU whose tuning would prefer 256-bit ones."""
    return cpu_name in PREFER_256 and "avx512f" in features


def configure_numba() -> str:
    """Set Numba's target features for this CPU before Numba is imported; return what was done.

    On Intel AVX-512 CPUs (:data:`PREFER_256`) the host's features plus
    ``-prefer-256-bit`` go to ``NUMBA_CPU_FEATURES``, so the lane loops compile
    to 512-bit vectors (the variable stays set: Numba re-reads its environment
    before compiling; child processes inherit it, which on the same machine is
    what they want).  Does nothing if
    Numba is already imported, if ``NUMBA_CPU_FEATURES`` is set, if
    ``AMSER_DSP_NUMBA_WIDE=0``, or on any other CPU.  The kernels' disk cache
    is keyed by the features, so both code generations can be cached side by side.
    """
    global _codegen_note
    if "numba" in sys.modules:
        return _codegen_note
    if os.environ.get("NUMBA_CPU_FEATURES") or os.environ.get(WIDE_ENV_VAR, "1") == "0":
        _codegen_note = "LLVM defaults (NUMBA_CPU_FEATURES or AMSER_DSP_NUMBA_WIDE=0 set)"
        return _codegen_note
    try:
        import llvmlite.binding as llvm

        name = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
        raw = llvm.get_host_cpu_features()
    except Exception:
        return _codegen_note
    if not wide_vectors_wanted(name, frozenset(f for f, on in raw.items() if on)):
        return _codegen_note
    # Left set: Numba re-reads its environment before compiling, and child processes
    # on this machine want the same code.
    os.environ["NUMBA_CPU_FEATURES"] = raw.flatten() + ",-prefer-256-bit"
    _codegen_note = f"512-bit vectors preferred (-prefer-256-bit; {name} would prefer 256)"
    return _codegen_note


def describe() -> str:
    """CPU model, its vector features and the chosen variants (and why), for benchmark reports."""
    feats = cpu_features()
    vector = sorted(f for f in feats if f.startswith(("avx", "sse4", "fma", "neon", "sve", "asimd")))
    try:
        import llvmlite.binding as llvm

        target = llvm.get_host_cpu_name()
    except Exception:
        target = "?"
    if os.environ.get("NUMBA_CPU_NAME"):  # Numba compiles for that CPU instead of the host
        target = f"{os.environ['NUMBA_CPU_NAME']} (NUMBA_CPU_NAME; host {target})"
    choice = choose()
    l2 = l2_bytes()
    lines = [
        f"CPU: {cpu_model()}; machine {platform.machine()}; LLVM target {target}",
        f"vector features: {' '.join(vector) or 'unknown'}; L2 per core: " + (f"{l2 // 1024} KiB" if l2 else "unknown"),
    ]
    for label, v in ((f"up to {SHORT_FRAMES} frames", choice.short), ("longer", choice.long)):
        lines.append(
            f"Numba kernel variant, {label}: {v.name} ({v.lanes} lanes, tails {'/'.join(map(str, v.tails))}, "
            f"buffers {buffer_bytes(v.lanes) // 1024} KiB)"
        )
    lines.append(f"chosen by: {choice.source}")
    lines.append(f"Numba code generation: {_codegen_note}")
    return "\n".join(lines)


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


if __name__ == "__main__":
    raise SystemExit(main())
