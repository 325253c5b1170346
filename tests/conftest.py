"""Shared fixtures: every available back end, a seeded RNG, real speech, hypothesis profiles."""

from __future__ import annotations

import os

# One BLAS/OpenMP thread, set before NumPy loads: the matrices here are small, and
# threaded BLAS on a busy 2-core machine spin-waits (an 80 x 80 eigh took 100x longer).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import csv  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import amser_dsp  # noqa: E402
from amser_dsp import backends  # noqa: E402

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
# A developer's run is CI's with fresh random examples (and the example database, which replays a failure
# until it is fixed): as many examples under the same checks, so what CI's fixed examples pass is searched as hard.
settings.register_profile("dev", parent=settings.get_profile("ci"), derandomize=False)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

#: ../shared/data beside the repository, where the real speech lives.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(params=backends.names())
def backend(request: pytest.FixtureRequest) -> str:
    """Name of each registered back end in turn; one whose dependency is missing is skipped, visibly."""
    if request.param not in backends.available():
        entry = backends._entries[request.param]
        pytest.skip(f"back end {request.param!r} needs {', '.join(entry.requires)} (amser-dsp[{entry.extra}])")
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture(scope="session")
def sample_audio() -> np.ndarray:
    """The bundled clip, float32 16 kHz."""
    return amser_dsp.load_audio(amser_dsp.sample_path())


def asr_manifest() -> list[dict[str, str]]:
    """Rows of ../shared/data/asr/manifest.tsv (empty if the data is absent)."""
    path = SHARED_DATA / "asr" / "manifest.tsv"
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def speech_clips(n: int) -> list[Path]:
    """Up to ``n`` real speech files from the shared data, spread over speakers."""
    rows = asr_manifest()
    rows = rows[:: max(1, len(rows) // n)][:n]
    return [SHARED_DATA / "asr" / r["path"] for r in rows]


@pytest.fixture(scope="session")
def speech() -> list[np.ndarray]:
    """Six real utterances from ../shared/data/asr (the test is skipped, with the reason, if the data is absent)."""
    clips = speech_clips(6)
    if len(clips) < 6:
        pytest.skip(f"real speech is absent: {SHARED_DATA / 'asr' / 'manifest.tsv'} (see ../shared/data/README.md)")
    return [amser_dsp.load_audio(p) for p in clips]
