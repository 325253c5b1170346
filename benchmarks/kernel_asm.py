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

``--mca`` models the hot loops instead (``llvm-mca``: Debian's ``llvm-19``, the newest found is used;
Debian 12's default ``llvm`` is LLVM 14, which has no Zen 4 model)::

    python -m benchmarks.kernel_asm --mca znver4,sapphirerapids,sapphirerapids:256

For each LLVM CPU named, a child process compiles the kernels for it
(``NUMBA_CPU_NAME``, this host's features: the code that CPU would run, never
executed here as anything but this host's instructions; ``CPU:256`` keeps
LLVM's preferred vector width, :mod:`amser_dsp.backends._codegen`), for 64-lane
blocks and the ``whisper`` and
``kaldi`` FFT sizes; each stage kernel's hot loop (the loop with the most
vector instructions: the butterflies of one index for 16 to 64 lanes) goes to
``llvm-mca -mcpu=CPU``, whose steady-state cycles per iteration, over the
frames an iteration computes (its vector stores say how many), give cycles
per frame.  Summed over a preset's FFT stages (and the power spectrum) that
is a model of the FFT's cost per frame on that CPU, to set beside what the
planner measures here (docs/benchmarks.md, section 9.4).
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


#: Lane widths modelled: the full blocks of every 64-lane variant.  Narrower blocks (48, 32, 16) are
#: compiled by LLVM with a lane loop left inside the butterfly loop, whose trip count this model
#: would have to read from the code; they are not modelled.
WIDTHS = (64,)
#: Values each kernel stores per lane and butterfly index (real and imaginary parts of its outputs).
#: ``_power_lanes``: the power and, in the same loop body, the magnitude branch's store (``power=1`` configs).
OUTPUTS = {"_stage8_first": 16, "_stage8": 16, "_stage5": 10, "_stage4": 8, "_power_lanes": 2}
#: FFT stages modelled per FFT size: (kernel, butterfly indices per block), in stage order.
FFT_LOOPS = {
    "whisper": (400, (("_stage8_first", 25), ("_stage5", 40), ("_stage5", 40), ("_power_lanes", 201))),
    "kaldi": (512, (("_stage8_first", 32), ("_stage8", 32), ("_stage4", 64), ("_power_lanes", 257))),
}
_JUMP = re.compile(r"^\s*j[a-z]+\s+(\.?L\w+)")


def hot_loop(asm: str) -> list[str]:
    """The instructions of the loop with the most vector instructions (label to its backward jump, inclusive)."""
    lines = asm.splitlines()
    labels = {ln.strip()[:-1]: i for i, ln in enumerate(lines) if re.match(r"^\.?L\w+:$", ln.strip())}
    best: list[str] = []
    for j, ln in enumerate(lines):
        m = _JUMP.match(ln)
        if m and m.group(1) in labels and labels[m.group(1)] < j:
            body = [x for x in lines[labels[m.group(1)] : j + 1] if x.strip() and not x.strip().startswith((".", "#"))]
            if sum("mm" in x for x in body) > sum("mm" in x for x in best):
                best = body
    return best


def lanes_per_iteration(body: list[str], outputs: int) -> float:
    """Frames one pass of the loop computes: its widest vector stores (float32 lanes each) over the outputs per frame.

    LLVM may unroll a 64-lane loop fully or keep a loop of 16 or 32 lanes inside
    the butterfly loop; the stores say which.  Spills (stores to the stack) and
    the narrower stores of a loop's scalar or partial tail are not counted.
    """
    stores: dict[str, int] = {}
    for ln in body:
        m = re.match(r"\s*vmov\w*\s+%([xyz])mm\d+,\s*\S*\(", ln)
        if m and not re.search(r"\(%(rsp|rbp)", ln):
            stores[m.group(1)] = stores.get(m.group(1), 0) + 1
    for reg, lanes in (("z", 16), ("y", 8), ("x", 4)):
        if reg in stores:
            # Whole vectors per output: a store of the loop laid out outside its label-to-jump span is missed.
            return lanes * max(1, round(stores[reg] / outputs))
    return 1.0


def mca(body: list[str], cpu: str, tool: str = "llvm-mca") -> dict[str, float]:
    """``llvm-mca -mcpu=cpu`` on one loop body: cycles per iteration (steady state) and the block's reciprocal throughput."""
    import subprocess

    out = subprocess.run(
        [tool, f"-mcpu={cpu}", "-iterations=200", "-mtriple=x86_64-unknown-linux-gnu"],
        input="\n".join(body) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    field = {k: float(v) for k, v in re.findall(r"^(Iterations|Total Cycles|Block RThroughput):\s+([\d.]+)", out, re.M)}
    return {"cycles": field["Total Cycles"] / field["Iterations"], "rthroughput": field["Block RThroughput"]}


def dump(folder: str) -> None:
    """Child of ``--mca``: compile every width for both FFT sizes and write each hot kernel's assembly to ``folder``."""
    from amser_dsp import get_preset
    from amser_dsp.backends import _numba_kernels as K  # before Numba: it settles the code generation
    from amser_dsp.backends.numba_backend import NumbaBackend

    x = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
    for preset in FFT_LOOPS:
        NumbaBackend(variant="lanes64p").log_mel(x, get_preset(preset))
    for kernel in {k for _, loops in FFT_LOOPS.values() for k, _ in loops}:
        for sig, asm in getattr(K, kernel).inspect_asm().items():
            lanes = getattr(sig[-1], "literal_value", None)
            if str(getattr(sig[0], "dtype", "")) == "float32" and lanes in WIDTHS:
                with open(os.path.join(folder, f"{kernel}-{lanes}.s"), "w") as f:
                    f.write(asm)


def model(cpus: list[str]) -> int:
    """``--mca``: the hot loops of every width through ``llvm-mca`` for each CPU; prints two Markdown tables."""
    import shutil
    import subprocess

    # The newest installed: LLVM 14 (Debian 12's default ``llvm``) has no Zen 4 model; ``llvm-19`` has.
    tool = next((p for v in range(25, 13, -1) if (p := shutil.which(f"llvm-mca-{v}"))), None) or shutil.which(
        "llvm-mca"
    )
    if tool is None:
        print("llvm-mca not found (Debian: apt-get install llvm)", file=sys.stderr)
        return 2
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"LLVM version ([\d.]+)", version)
    print(f"llvm-mca: {tool} (LLVM {found.group(1) if found else '?'})")
    cycles: dict[tuple[str, str, int], dict[str, float]] = {}
    for cpu in cpus:
        with tempfile.TemporaryDirectory(prefix="amser-mca-") as folder:
            name, _, width = cpu.partition(":")  # "sapphirerapids:256": LLVM's own vector width for it
            env = {**os.environ, "NUMBA_CPU_NAME": name, "NUMBA_CACHE_DIR": os.path.join(folder, "cache")}
            env.pop("NUMBA_CPU_FEATURES", None)
            env["AMSER_DSP_NUMBA_WIDE"] = "0" if width == "256" else "1"
            subprocess.run([sys.executable, "-m", "benchmarks.kernel_asm", "--dump", folder], env=env, check=True)
            for path in sorted(os.listdir(folder)):
                if path.endswith(".s"):
                    kernel, lanes = path[:-2].rsplit("-", 1)
                    with open(os.path.join(folder, path)) as f:
                        body = hot_loop(f.read())
                    cycles[(cpu, kernel, int(lanes))] = {
                        **mca(body, name, tool),
                        **counts("\n".join(body)),
                        "frames": lanes_per_iteration(body, OUTPUTS[kernel]),
                    }
    print(
        "\nHot loop of each kernel, 64-lane blocks: cycles per frame and butterfly index (llvm-mca steady-state cycles"
        " per iteration / frames per iteration); the iteration's frames, instructions, zmm / ymm"
    )
    print("| kernel | " + " | ".join(cpus) + " |")
    print("|---|" + "---:|" * len(cpus))
    for kernel in sorted({k for _, k, _ in cycles}):
        cells = []
        for cpu in cpus:
            c = cycles.get((cpu, kernel, 64))
            cells.append(
                f"{c['cycles'] / c['frames']:.2f} ({c['frames']:g} frames: {c['cycles']:.1f} cycles, {c['instr']} instr, "
                f"{c['zmm']} zmm / {c['ymm']} ymm)"
                if c
                else "-"
            )
        print(f"| {kernel} | " + " | ".join(cells) + " |")
    print("\nFFT and power spectrum, modelled cycles per frame (butterfly indices per block times cycles per frame)")
    print(
        "| lanes | " + " | ".join(f"{p} (n_fft {n}), {cpu}" for p, (n, _) in FFT_LOOPS.items() for cpu in cpus) + " |"
    )
    print("|---:|" + "---:|" * (len(FFT_LOOPS) * len(cpus)))
    for lanes in WIDTHS:
        cells = []
        for _, loops in FFT_LOOPS.values():
            for cpu in cpus:
                parts = [cycles.get((cpu, k, lanes)) for k, _ in loops]
                total = sum(n * c["cycles"] / c["frames"] for (_, n), c in zip(loops, parts, strict=True) if c)
                cells.append(f"{total:.0f}" if all(parts) else "-")
        print(f"| {lanes} | " + " | ".join(cells) + " |")
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--dump":
        dump(sys.argv[2])
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--mca":
        return model(sys.argv[2].split(","))
    if len(sys.argv) > 1:
        print("usage: python -m benchmarks.kernel_asm [--mca CPU[,CPU...]]", file=sys.stderr)
        return 2
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
