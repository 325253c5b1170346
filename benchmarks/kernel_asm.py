"""What the Numba kernel's hot loops compile to, for this CPU or any LLVM target (docs/benchmarks.md).

    python -m benchmarks.kernel_asm                       # this CPU
    NUMBA_CPU_NAME=skylake-avx512 python -m benchmarks.kernel_asm

Compiles the stage kernels of the selected variant's lane count for float32
and counts, in each kernel's machine code: instructions, those on 512-bit
(zmm), 256-bit (ymm) and 128-bit (xmm) registers, FMAs, shuffles/permutes,
gathers, and stack traffic (loads and stores addressed off ``rsp``/``rbp``,
i.e. spills).  Static counts, not a profile: they show the vector width LLVM
chose for a target and whether a loop spills, which a timing on another CPU
cannot.  x86-64 only (AT&T or Intel syntax both parse).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

import numpy as np


def counts(asm: str) -> dict[str, int]:
    """Instruction statistics of one function's assembly text."""
    lines = [ln.strip() for ln in asm.splitlines()]
    ins = [ln for ln in lines if ln and not ln.endswith(":") and not ln.startswith((".", "#", "//"))]
    return {
        "instr": len(ins),
        "zmm": sum("zmm" in ln for ln in ins),
        "ymm": sum("ymm" in ln for ln in ins),
        "xmm": sum("xmm" in ln for ln in ins),
        "fma": sum(ln.startswith("vfmadd") or ln.startswith("vfmsub") or ln.startswith("vfnmadd") for ln in ins),
        "shuffle": sum(
            bool(re.match(r"v?(perm|shuf|unpck|vperm|valign|vinsert|vextract|vpermt2|vpermi2)", ln)) for ln in ins
        ),
        "gather": sum("gather" in ln for ln in ins),
        "stack": sum(bool(re.search(r"\((%rsp|%rbp)\)|\[(rsp|rbp)", ln)) and ("mm" in ln) for ln in ins),
    }


def main() -> int:
    if not os.environ.get("NUMBA_CACHE_DIR"):
        # Machine code loaded from the cache cannot be inspected: compile afresh, in a throw-away cache.
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="amser-asm-")
    from amser_dsp import get_preset
    from amser_dsp.backends import _numba_kernels as K
    from amser_dsp.backends import variants
    from amser_dsp.backends.numba_backend import NumbaBackend

    be = NumbaBackend()
    lanes = be.variant.lanes
    dt = np.dtype(np.float32)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(dt)
    for preset in ("whisper", "kaldi"):
        be.log_mel(x, get_preset(preset))  # compiles every kernel specialisation the fused path uses
    print(variants.describe())
    rows = []
    for name in (
        "_stage8_first",
        "_stage8",
        "_stage5",
        "_stage4_first",
        "_stage4",
        "_power_lanes",
        "_pack",
        "_mel_lanes",
    ):
        for sig, asm in getattr(K, name).inspect_asm().items():
            # The float32 specialisation for the variant's full blocks (lanes is the last argument).
            if getattr(sig[-1], "literal_value", None) == lanes and str(getattr(sig[0], "dtype", "")) == "float32":
                rows.append((name, counts(asm)))
                break
    print("| kernel | instructions | zmm | ymm | xmm | FMA | shuffles | gathers | stack (spills) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, c in rows:
        print(
            f"| {name} | {c['instr']} | {c['zmm']} | {c['ymm']} | {c['xmm']} | {c['fma']} | {c['shuffle']} | "
            f"{c['gather']} | {c['stack']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
