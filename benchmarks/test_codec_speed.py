"""Codec speed: encoding 60 s of features must cost less than computing them (NumPy back end);
decoding the SVD modes less than a tenth of that, decoding kltdct less than encoding it.

The features are checked (decode(encode(x)) close to the rank-r reconstruction)
before timing.  ``extra_info`` carries ``seconds``/``kind``/``what`` for report.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import amser_dsp
from amser_dsp import backends, get_preset

from .conftest import rounds_for, speech_seconds

SECONDS = 60
MODES = {
    "default": {},
    "paper ratio 0.125 float16": {"ratio": 0.125, "factor_dtype": "float16"},
    "ratio 0.125 int8": {"ratio": 0.125, "factor_dtype": "int8"},
    "svd rank 14 int8": {"rank": 14, "factor_dtype": "int8"},
    "kltdct step 0": {"codec": {"codec": "kltdct", "step": 0}},
    "kltdct kbps=4 (rate control)": {"kbps": 4.0},
}


@pytest.fixture(scope="module")
def feats() -> np.ndarray:
    return amser_dsp.features(speech_seconds(SECONDS), 16000, "whisper", backend="numpy")


def _run(benchmark, fn, what: str) -> None:
    benchmark.extra_info.update(seconds=SECONDS, kind="codec", what=what, threads=1)
    benchmark.pedantic(fn, rounds=rounds_for(SECONDS), iterations=1, warmup_rounds=1)


def test_features_numpy_reference_cost(benchmark) -> None:
    x = speech_seconds(SECONDS)
    be = backends.get("numpy")
    config = get_preset("whisper")
    _run(benchmark, lambda: be.log_mel(x, config), "features, numpy back end (the budget)")


@pytest.mark.parametrize("mode", MODES)
def test_encode(benchmark, feats: np.ndarray, mode: str) -> None:
    blob = amser_dsp.encode(feats, config="whisper", **MODES[mode])
    assert np.isfinite(amser_dsp.decode(blob)).all()
    _run(benchmark, lambda: amser_dsp.encode(feats, config="whisper", **MODES[mode]), f"encode {mode}")


@pytest.mark.parametrize("mode", MODES)
def test_decode(benchmark, feats: np.ndarray, mode: str) -> None:
    blob = amser_dsp.encode(feats, config="whisper", **MODES[mode])
    out = amser_dsp.decode(blob)
    assert out.shape == feats.shape
    _run(benchmark, lambda: amser_dsp.decode(blob), f"decode {mode}")
