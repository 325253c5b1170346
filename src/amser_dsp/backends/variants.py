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
is ``lanes64p``, the one that compiles a single width: with nothing measured
yet (no plan, so most likely an empty cache too) the first call compiles the
kernel, and one width is about 60% of two (a cold start of 8.5 s of CPU
against 14.4 s for ``lanes64t48`` on Zen 4).  It pays a whole 64-lane block for
every tail: measured on Zen 4 about 6% slower than ``lanes64t48`` at 1 s, the
same at 60 s.  The planner measures against ``lanes64t48`` (:func:`reference`),
so that a plan made under load, where no candidate is clearly faster, keeps
the variant that is best at both lengths, not the one chosen for compiling fast.

**What a cold start compiles.**  Each variant's entry point is one compiled
function with the block pipeline inlined (one compiled level instead of seven:
each level re-optimised and re-emitted the machine code of everything below
it); the leaves (sample transpose, packing, FFT stages, power, Mel) are
compiled once per width, and of the seven FFT stage kernels only those the
config's FFT size uses (:func:`._numba_kernels.stage_kinds`: two for
``whisper``, three for ``kaldi``).

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

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnknownBackendError
from . import _codegen
from ._codegen import configure_numba

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
    "plan_key",
    "plan_path",
    "reference",
    "save_plan",
    "select",
]

ENV_VAR = "AMSER_DSP_NUMBA_VARIANT"
PLAN_DIR_ENV_VAR = "AMSER_DSP_NUMBA_PLAN_DIR"

#: Signals of at most this many frames (5 s at a 10 ms hop) use the plan's short-input variant.
SHORT_FRAMES = 500
#: The length classes and the signal each is measured on, in seconds.
CLASSES = {"short": 1.0, "long": 60.0}
#: A candidate replaces the default only if its median per-round and best-round time ratios to it are below ``1 - MARGIN``.
MARGIN = 0.02
PLAN_FORMAT = 1


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
    """The default variant: ``AMSER_DSP_NUMBA_VARIANT`` if set, else one width of the lanes that fit half the L2.

    The rule used where nothing was measured (:func:`choose` prefers a plan).
    ``l2`` is the per-core L2 in bytes (default: :func:`l2_bytes`; ``None``:
    unknown, which chooses 64 lanes, the width measured best where measured).
    Of the variants with that main width, the one that compiles a single block
    width (``lanes64p`` for the planner's :func:`reference` ``lanes64t48``):
    without a plan nothing was measured, most likely in an empty cache, and a
    cold start compiles one width instead of two.
    """
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        return get(chosen)
    ref = reference(l2)
    return VARIANTS["lanes64p"] if ref.lanes == 64 else ref


def reference(l2: int | None = -1) -> Variant:
    """The variant the planner measures the others against: the widest block whose buffers fit half the L2.

    A candidate replaces it only if faster by more than the noise, so a plan
    made on a loaded machine keeps it: ``lanes64t48`` for 64 lanes, the best
    measured for both short and long inputs on Zen 4.
    """
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
    return Choice(
        v, v, "default (no plan measured for this CPU: the widest block that fits half the L2, one compiled width)"
    )


def decide(rounds: Mapping[str, Sequence[float]], default: str) -> tuple[str, dict[str, dict[str, float]]]:
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
    lines.append(f"Numba code generation: {_codegen.note()}")
    return "\n".join(lines)


if __name__ == "__main__":  # the planner's command (it needs the back end, which needs this module)
    from .planner import main

    raise SystemExit(main())
