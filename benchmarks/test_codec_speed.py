"""Codec speed: encoding 60 s of speech features costs less than computing them; decoding < 1/10 of that.

Run with ``pytest benchmarks/test_codec_speed.py --benchmark-only``.  Each
function checks its output before it is timed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import amser_dsp

pytest.importorskip("pytest_benchmark")


@pytest.fixture(scope="module")
def speech_60s() -> np.ndarray:
    x = amser_dsp.load_audio(amser_dsp.sample_path())
    reps = int(np.ceil(60 * 16000 / x.size))
    return np.tile(x, reps)[: 60 * 16000]


@pytest.fixture(scope="module")
def feats(speech_60s: np.ndarray) -> np.ndarray:
    return amser_dsp.features(speech_60s, 16000, "whisper", backend="numpy")


def _best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


MODES = {
    "ratio0.125-float16-zlib": {"ratio": 0.125},
    "ratio0.125-int8-zlib": {"ratio": 0.125, "factor_dtype": "int8"},
    "rank20-int8-zstd": {"rank": 20, "factor_dtype": "int8", "entropy": "zstd"},
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_encode_60s(benchmark, speech_60s: np.ndarray, feats: np.ndarray, mode: str) -> None:
    kwargs = MODES[mode]
    blob = amser_dsp.encode(feats, config="whisper", **kwargs)
    assert amser_dsp.decode(blob).shape == feats.shape
    benchmark(amser_dsp.encode, feats, config="whisper", **kwargs)
    t_features = _best(lambda: amser_dsp.features(speech_60s, 16000, "whisper", backend="numpy"))
    t_encode = _best(lambda: amser_dsp.encode(feats, config="whisper", **kwargs))
    benchmark.extra_info.update(features_s=t_features, encode_s=t_encode)
    assert t_encode < t_features, f"encode {t_encode:.4f} s is not faster than features {t_features:.4f} s"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_decode_60s(benchmark, speech_60s: np.ndarray, feats: np.ndarray, mode: str) -> None:
    blob = amser_dsp.encode(feats, config="whisper", **MODES[mode])
    assert amser_dsp.decode(blob).shape == feats.shape
    benchmark(amser_dsp.decode, blob)
    t_features = _best(lambda: amser_dsp.features(speech_60s, 16000, "whisper", backend="numpy"))
    t_decode = _best(lambda: amser_dsp.decode(blob))
    benchmark.extra_info.update(features_s=t_features, decode_s=t_decode)
    assert t_decode < t_features / 10, f"decode {t_decode:.4f} s is not < 1/10 of features {t_features:.4f} s"
