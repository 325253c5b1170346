"""Numba kernel variants and the one chosen for this CPU.

The fused kernel (:mod:`._numba_kernels`) processes frames in blocks of
``lanes`` frames stored lane-major; every lane loop is one SIMD loop over
``lanes`` contiguous values.  The best block width depends on the vector unit:
64 lanes share each butterfly's index and twiddle work among four 512-bit
vectors, but on a narrower unit the same loop is 8 or 16 vectors long and the
block's buffers (about 400 KB) compete with the L2 of a small core.  Every
variant computes the same features (tested against the NumPy reference, one by
one, in ``tests/test_variants.py``); they differ only in speed.

The choice reads the features LLVM compiles for (``llvmlite``'s view of the
host, which is what the machine code targets) and can be overridden with
``AMSER_DSP_NUMBA_VARIANT`` or ``NumbaBackend(variant=...)``.
``python -m amser_dsp.backends.variants`` prints the CPU, its vector features
and the variant chosen.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnknownBackendError

__all__ = ["ENV_VAR", "VARIANTS", "Variant", "cpu_features", "cpu_model", "describe", "get", "select"]

ENV_VAR = "AMSER_DSP_NUMBA_VARIANT"


@dataclass(frozen=True)
class Variant:
    """A compiled shape of the fused kernel."""

    name: str
    lanes: int  # frames per full block (tails use 32 and 16)
    when: str  # the CPUs it is chosen for


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("lanes64", 64, "512-bit vectors (AVX-512F)"),
        Variant("lanes32", 32, "256-bit vectors (AVX2 without AVX-512)"),
        Variant("lanes16", 16, "128-bit vectors (NEON/ASIMD, SSE)"),
    )
}


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


def select(features: frozenset[str] | None = None) -> Variant:
    """The variant for this CPU (or for ``features``): ``AMSER_DSP_NUMBA_VARIANT`` if set, else by vector width."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        return get(chosen)
    feats = cpu_features() if features is None else features
    if "avx512f" in feats:
        return VARIANTS["lanes64"]
    if "avx2" in feats:
        return VARIANTS["lanes32"]
    if feats:
        return VARIANTS["lanes16"]
    return VARIANTS["lanes64"]  # unknown host: the variant measured best on the machines we have


def describe() -> str:
    """CPU model, its vector features and the chosen variant, for benchmark reports."""
    feats = cpu_features()
    vector = sorted(f for f in feats if f.startswith(("avx", "sse4", "fma", "neon", "sve", "asimd")))
    try:
        import llvmlite.binding as llvm

        target = llvm.get_host_cpu_name()
    except Exception:
        target = "?"
    variant = select()
    return (
        f"CPU: {cpu_model()}; machine {platform.machine()}; LLVM target {target}\n"
        f"vector features: {' '.join(vector) or 'unknown'}\n"
        f"Numba kernel variant: {variant.name} ({variant.lanes} lanes; for {variant.when})"
        + (f" [from {ENV_VAR}]" if os.environ.get(ENV_VAR) else "")
    )


if __name__ == "__main__":
    print(describe())
    for v in VARIANTS.values():
        print(f"  {v.name}: {v.lanes} lanes, for {v.when}")
