"""Shared set-up for the benchmarks: one thread everywhere, N seconds of real speech.

Thread counts are fixed before NumPy, SciPy, torch or Numba are imported (the
variables are read once, at import), so every front end runs on one core
unless a benchmark asks for more.  Codec benchmarks (test_codec_speed.py) use
the same helpers: :func:`speech_seconds` and the ``speech`` fixture.
"""

from __future__ import annotations

import os

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("AMSER_DSP_NUMBA_WORKERS", "1")

import csv  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import amser_dsp  # noqa: E402

#: ../shared/data beside the repository, where the real speech lives.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE_RATE = 16_000
DURATIONS = (1, 10, 60, 600)


def _clips() -> list[Path]:
    manifest = SHARED_DATA / "asr" / "manifest.tsv"
    if not manifest.exists():
        return []
    with manifest.open(newline="", encoding="utf-8") as fh:
        return [SHARED_DATA / "asr" / row["path"] for row in csv.DictReader(fh, delimiter="\t")]


@functools.lru_cache(maxsize=1)
def _speech_pool() -> np.ndarray:
    """All clips of ../shared/data/asr concatenated (the bundled clip if absent), float32 16 kHz."""
    paths = _clips() or [amser_dsp.sample_path()]
    pool = np.concatenate([amser_dsp.load_audio(p, sample_rate=SAMPLE_RATE) for p in paths])
    pool.flags.writeable = False
    return pool


def speech_seconds(seconds: float) -> np.ndarray:
    """``seconds`` of real speech: the clips concatenated, repeated if the pool is shorter."""
    pool = _speech_pool()
    n = round(seconds * SAMPLE_RATE)
    reps = -(-n // pool.size)
    x = np.tile(pool, reps)[:n] if reps > 1 else pool[:n]
    return np.array(x, dtype=np.float32)  # a private, writable copy (torch.from_numpy warns on read-only)


#: With ``--benchmark-disable`` (the output checks only, as ``make test`` runs them): one short length.
QUICK_DURATIONS = (1,)


def quick(config: pytest.Config) -> bool:
    """Whether this run checks outputs only (``--benchmark-disable``) instead of timing."""
    return bool(config.getoption("benchmark_disable", default=False))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "speech" in metafunc.fixturenames:
        durations = QUICK_DURATIONS if quick(metafunc.config) else DURATIONS
        metafunc.parametrize("speech", durations, ids=[f"{d}s" for d in durations], indirect=True, scope="session")


@pytest.fixture(scope="session")
def speech(request: pytest.FixtureRequest) -> tuple[int, np.ndarray]:
    """(seconds, audio) for each benchmark duration (parametrised by :func:`pytest_generate_tests`)."""
    return request.param, speech_seconds(request.param)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """CPU model, vector features and the Numba kernel variant, in every benchmark JSON."""
    from amser_dsp.backends import variants

    machine_info["amser_dsp"] = {
        "cpu_model": variants.cpu_model(),
        "cpu_features": sorted(variants.cpu_features()),
        "numba_variant": _numba_variants(variants) if importlib.util.find_spec("numba") else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _numba_variants(variants) -> str:
    """The Numba kernel variants in use, short and long signals, and where the choice came from."""
    choice = variants.choose()
    return f"{choice.short.name}/{choice.long.name} ({choice.source.split()[0]})"


def rounds_for(seconds: float) -> int:
    """Enough rounds for a stable median without spending minutes on 600 s anchors."""
    return {1: 50, 10: 15, 60: 7}.get(int(seconds), 3)


def single_thread_torch():
    """Import torch (skipping if absent) pinned to one thread."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch
