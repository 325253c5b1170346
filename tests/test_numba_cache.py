"""A warm Numba cache is used: a new process loads the kernels instead of compiling them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import amser_dsp
from amser_dsp.backends import variants

pytest.importorskip("numba")

# One second of features with every preset in a fresh process, then the
# compile statistics of every kernel dispatcher the back end defines.
_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import amser_dsp
x = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
for preset in ("amser", "whisper", "kaldi"):
    amser_dsp.features(x, 16000, preset, backend="numba")
elapsed = time.perf_counter() - t0
from numba.core.registry import CPUDispatcher
from amser_dsp.backends import _numba_kernels as K
stats = {name: (sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values()))
         for name, d in vars(K).items() if isinstance(d, CPUDispatcher)}
print(json.dumps({"elapsed": elapsed, "stats": stats}))
"""


def _run() -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_warm_cache_does_not_recompile() -> None:
    _run()  # populates the cache if this checkout has never compiled the kernels
    second = _run()
    stats = second["stats"]
    from amser_dsp.backends import _numba_kernels as K

    entry = K.MEL_BLOCK[variants.choose().short.shape].py_func.__name__  # the 1 s clips' variant on this CPU
    assert stats[entry][0] >= 1, stats  # the fused kernel came from the cache ...
    misses = {name: m for name, (_, m) in stats.items() if m}
    assert not misses, f"recompiled with a warm cache: {misses}"  # ... and nothing was compiled


# A cold start: an empty cache, one 1 s whisper call, then every stage kernel Numba compiled and its lane width.
_COLD = """
import json
import numpy as np
import amser_dsp
from numba.core.registry import CPUDispatcher
from amser_dsp.backends import _numba_kernels as K
amser_dsp.features(np.zeros(16000, np.float32), 16000, "whisper", backend="numba")
lanes = {"_fft_power": 13}  # the width's argument where it is not the last
print(json.dumps({name: [str(sig[lanes.get(name, -1)]) for sig in d.signatures] for name, d in vars(K).items()
                  if isinstance(d, CPUDispatcher) and d.signatures}))
"""


def test_cold_start_compiles_only_what_the_config_uses(tmp_path: Path) -> None:
    from amser_dsp.backends import _numba_kernels as K

    env = {
        **os.environ,
        "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1]),
        "NUMBA_CACHE_DIR": str(tmp_path),  # empty: everything compiles
        variants.ENV_VAR: "lanes64p",  # one block width
    }
    out = subprocess.run([sys.executable, "-c", _COLD], capture_output=True, text=True, check=True, env=env)
    compiled = json.loads(out.stdout.strip().splitlines()[-1])
    stages = {name for name in compiled if name.startswith("_stage")}
    # whisper's FFT (n_fft 400: radices 8, 5, 5) needs two of the seven stage kernels, and frames
    # no farther apart than they are long never take the gathered framing.
    assert stages == {"_stage8_first", "_stage5"}, compiled
    assert "_fill_gathered" not in compiled and "_tails" not in compiled, compiled
    # Each compiled once, for the literal width: a width lost on the way would compile runtime-length lane loops.
    for name in (*stages, "_power_lanes", "_pack", "_mel_lanes", "_fft_power"):
        assert compiled[name] == ["Literal[int](64)"], (name, compiled)
    assert K.stage_kinds([8, 5, 5], 160, 400) == (0, None, None, None, 0, None, None, None)
