"""Numba kernel variants and the one chosen for this CPU.

The fused kernel (:mod:`._numba_kernels`) processes frames in blocks of
``lanes`` frames stored lane-major; every lane loop is one SIMD loop over
``lanes`` contiguous values.  Wider blocks share each butterfly's index and
twiddle work among more vectors (64 lanes are four 512-bit or eight 256-bit
vectors), but the block's buffers grow with them: five ``(n_fft / 2, lanes + 4)``
planes plus the transposed samples, about 440 KB at 64 lanes and ``n_fft = 512``.
Measured on Zen 4 (1 MB L2 per core), both with its own 512-bit code and with the
256-bit-only code LLVM builds for Intel Xeons (``NUMBA_CPU_NAME=skylake-avx512``),
64 lanes beat 32 and 16 at 1, 10 and 60 s; on Zen 5, 128 lanes were slower
than 64 once the buffers left L2 (docs/benchmarks.md, sections 5 and 8).  So the choice is the widest block whose buffers fit in
half the per-core L2 (the other half holds the signal, the output and the
filter bank): 64 lanes on most desktop, server and recent ARM cores, 32 or 16
on cores with 256-512 KB of L2 (older Intel clients, small ARM cores).  Every
variant computes the same features (tested against the NumPy reference, one by
one, in ``tests/test_variants.py``); they differ only in speed.

Code generation is the second choice.  For Intel's AVX-512 server and client
cores LLVM's tuning prefers 256-bit vectors (``prefer-256-bit``): compiled for
``skylake-avx512`` or ``icelake-server`` every lane loop of the FFT, power and
Mel stages uses ymm registers only, half the width the same code gets on Zen 4
(``python -m benchmarks.kernel_asm`` counts them).  On those CPUs, and only
when nothing else in the process has set Numba's target yet,
:func:`configure_numba` asks for 512-bit vectors (``-prefer-256-bit``) before
Numba is imported; ``AMSER_DSP_NUMBA_WIDE=0`` keeps LLVM's default.  AMD and ARM
targets are left alone.

``AMSER_DSP_NUMBA_VARIANT`` or ``NumbaBackend(variant=...)`` overrides the
choice; ``python -m benchmarks.cpu_ratios --all-variants`` times them all on
the machine at hand.  ``python -m amser_dsp.backends.variants`` prints the CPU,
its vector features, its L2 and the variant chosen.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnknownBackendError

__all__ = [
    "ENV_VAR",
    "VARIANTS",
    "Variant",
    "buffer_bytes",
    "configure_numba",
    "cpu_features",
    "cpu_model",
    "describe",
    "get",
    "l2_bytes",
    "select",
]

ENV_VAR = "AMSER_DSP_NUMBA_VARIANT"
WIDE_ENV_VAR = "AMSER_DSP_NUMBA_WIDE"

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
    """A compiled shape of the fused kernel."""

    name: str
    lanes: int  # frames per full block (tails use 32 and 16)


VARIANTS: dict[str, Variant] = {
    v.name: v for v in (Variant("lanes64", 64), Variant("lanes32", 32), Variant("lanes16", 16))
}


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
    """The variant for this CPU: ``AMSER_DSP_NUMBA_VARIANT`` if set, else the widest whose buffers fit half the L2.

    ``l2`` is the per-core L2 in bytes (default: :func:`l2_bytes`; ``None``:
    unknown, which chooses 64 lanes, the width measured best where measured).
    """
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        return get(chosen)
    size = l2_bytes() if l2 == -1 else l2
    if size is None:
        return VARIANTS["lanes64"]
    for variant in sorted(VARIANTS.values(), key=lambda v: -v.lanes):
        if buffer_bytes(variant.lanes) <= size // 2:
            return variant
    return VARIANTS["lanes16"]


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
    """CPU model, its vector features and the chosen variant, for benchmark reports."""
    feats = cpu_features()
    vector = sorted(f for f in feats if f.startswith(("avx", "sse4", "fma", "neon", "sve", "asimd")))
    try:
        import llvmlite.binding as llvm

        target = llvm.get_host_cpu_name()
    except Exception:
        target = "?"
    if os.environ.get("NUMBA_CPU_NAME"):  # Numba compiles for that CPU instead of the host
        target = f"{os.environ['NUMBA_CPU_NAME']} (NUMBA_CPU_NAME; host {target})"
    variant = select()
    l2 = l2_bytes()
    return (
        f"CPU: {cpu_model()}; machine {platform.machine()}; LLVM target {target}\n"
        f"vector features: {' '.join(vector) or 'unknown'}; L2 per core: "
        + (f"{l2 // 1024} KiB" if l2 else "unknown")
        + f"\nNumba kernel variant: {variant.name} ({variant.lanes} lanes, buffers "
        f"{buffer_bytes(variant.lanes) // 1024} KiB)"
        + (f" [from {ENV_VAR}]" if os.environ.get(ENV_VAR) else "")
        + f"\nNumba code generation: {_codegen_note}"
    )


if __name__ == "__main__":
    print(describe())
    for v in VARIANTS.values():
        print(f"  {v.name}: {v.lanes} lanes, buffers {buffer_bytes(v.lanes) // 1024} KiB")
