"""Numba's code generation for this CPU, settled before Numba is imported (the kernels' module calls it first).

Apart from the variants (:mod:`.variants`) so that the kernels can import it without importing the planner.
"""

from __future__ import annotations

import os
import sys

__all__ = ["PREFER_256", "WIDE_ENV_VAR", "configure_numba", "note", "wide_vectors_wanted"]

#: ``AMSER_DSP_NUMBA_WIDE=0``: leave LLVM's own vector width.
WIDE_ENV_VAR = "AMSER_DSP_NUMBA_WIDE"

#: LLVM CPU names with AVX-512 whose tuning prefers 256-bit vectors (X86.td's ``TuningPrefer256Bit``).
PREFER_256 = frozenset(
    {
        "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client", "icelake-server",
        "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d",
        "diamondrapids",
    }
)  # fmt: skip

#: What :func:`configure_numba` did in this process (for :func:`note`).
_codegen_note = "LLVM defaults"


def note() -> str:
    """What :func:`configure_numba` did in this process."""
    return _codegen_note


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
