"""The board benchmark: per-call latency of short clips and of streaming blocks, light enough for an ARM board.

Needs only the project, Numba (optional: the NumPy back end is timed either
way), pytest and pytest-benchmark (the ``bench-board`` extra); asrfront,
kaldi-native-fbank and librosa are timed when installed and skipped with the
reason otherwise.  ``make bench-board`` (or ``python benchmarks/board.py``) runs
it and prints the table; the JSON (``--benchmark-json``) carries the CPU model,
its vector features and the Numba kernel variant in ``machine_info``, so
``pytest-benchmark compare board-a.json board-b.json`` puts two boards side by side.

Each benchmark checks its output first (against the NumPy reference, or the
offline features for streaming), then times the call alone.  ``extra_info``:
``seconds`` (audio per call), ``kind``, ``what``, ``p50_ms``/``p99_ms`` (per
call or per block) and ``rtf`` (median time / audio time).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from amser_dsp import backends, get_preset
from amser_dsp.frontend.extract import log_mel as reference_log_mel

from .conftest import quick, speech_seconds
from .test_frontend_speed import as_whisper_sees, check_against, knf_fbank, librosa_whisper

CLIPS = (0.5, 1, 3, 10)
BLOCKS_MS = (10, 20, 40, 160)
PRESETS = ("whisper", "kaldi")
STREAM_SECONDS = 10


def rounds(seconds: float) -> int:
    """Rounds per benchmark: enough for a p99 on short calls; a few under ``AMSER_BENCH_QUICK`` (emulation)."""
    if os.environ.get("AMSER_BENCH_QUICK"):
        return 3
    return max(10, min(400, round(40 / seconds)))


def time_it(benchmark, fn, seconds: float, *, kind: str, what: str, setup=None, n_rounds: int | None = None) -> None:
    """Time ``fn`` one call per round; record p50/p99 per call and the real-time factor."""
    benchmark.extra_info.update(seconds=seconds, kind=kind, what=what)
    n_rounds = n_rounds or rounds(seconds)
    if setup is None:
        benchmark.pedantic(fn, rounds=n_rounds, iterations=1, warmup_rounds=1)
    else:
        benchmark.pedantic(fn, setup=setup, rounds=n_rounds, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    data = getattr(getattr(stats, "stats", None), "data", None)
    if data:  # absent under --benchmark-disable
        p50, p99 = np.percentile(np.asarray(data) * 1e3, [50, 99])
        benchmark.extra_info.update(p50_ms=float(p50), p99_ms=float(p99), rtf=float(p50 / 1e3 / seconds))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # --benchmark-disable (make test): the output checks on one clip length and one block size.
    clips, blocks = ((1,), BLOCKS_MS[:1]) if quick(metafunc.config) else (CLIPS, BLOCKS_MS)
    if "clip" in metafunc.fixturenames:
        metafunc.parametrize("clip", clips, ids=[f"{c:g}s" for c in clips], indirect=True, scope="module")
    if "block_ms" in metafunc.fixturenames:
        metafunc.parametrize("block_ms", blocks)


@pytest.fixture(scope="module")
def clip(request: pytest.FixtureRequest) -> tuple[float, np.ndarray]:
    """(seconds, audio) for each clip length."""
    return request.param, speech_seconds(request.param)


# ---------------------------------------------------------------- clips
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", backends.available())
def test_clip(benchmark, clip, name: str, preset: str) -> None:
    seconds, x = clip
    config = get_preset(preset)
    be = backends.get(name)
    out = be.log_mel(x, config)  # compiles or loads the Numba kernels outside the timed part
    check_against(out, reference_log_mel(x, config), atol=1e-4, fraction=0.99)
    time_it(benchmark, lambda: be.log_mel(x, config), seconds, kind="ours", what=f"{name} {preset}")


def test_clip_asrfront_whisper(benchmark, clip) -> None:
    asrfront = pytest.importorskip("asrfront", reason="asrfront is not installed (no wheel for this platform?)")
    seconds, x = clip
    xp = as_whisper_sees(x)
    check_against(
        asrfront.whisper.log_mel(xp, pad_or_trim=False), reference_log_mel(x, get_preset("whisper")), atol=1e-3
    )
    time_it(
        benchmark, lambda: asrfront.whisper.log_mel(xp, pad_or_trim=False), seconds,
        kind="anchor", what="asrfront.whisper.log_mel (whisper)",
    )  # fmt: skip


def test_clip_asrfront_fbank(benchmark, clip) -> None:
    asrfront = pytest.importorskip("asrfront", reason="asrfront is not installed (no wheel for this platform?)")
    seconds, x = clip
    matched = get_preset("kaldi").replace(window="hamming")  # asrfront's Kaldi recipe uses Hamming
    check_against(asrfront.sensevoice.fbank_raw(x).T, reference_log_mel(x, matched), atol=1e-3, fraction=0.99)
    time_it(
        benchmark, lambda: asrfront.sensevoice.fbank_raw(x), seconds,
        kind="anchor", what="asrfront fbank_raw (kaldi)",
    )  # fmt: skip


def test_clip_kaldi_native_fbank(benchmark, clip) -> None:
    knf = pytest.importorskip("kaldi_native_fbank", reason="kaldi-native-fbank is not installed")
    seconds, x = clip
    time_it(benchmark, knf_fbank(knf, x), seconds, kind="anchor", what="kaldi-native-fbank OnlineFbank (kaldi)")


def test_clip_librosa(benchmark, clip) -> None:
    librosa = pytest.importorskip("librosa", reason="librosa is not installed")
    seconds, x = clip
    time_it(
        benchmark, librosa_whisper(librosa, x), seconds, kind="anchor", what="librosa melspectrogram + log (whisper)"
    )


# ------------------------------------------------------------ streaming
class BlockStream:
    """A device's streaming loop: samples arrive in blocks, each block's completed frames are computed at once.

    Keeps the samples that later frames still need and calls the back end's
    fused ``log_mel`` on the frames each block completes, so its cost per block
    is the back end's fixed per-call cost plus a few frames of work.  The
    config frames without centre padding, trailing silence or utterance
    clamp (none is known before the end of a stream); for presets without
    signal-scope pre-emphasis the frames equal the offline ones exactly.
    """

    def __init__(self, backend, config) -> None:
        self.backend = backend
        self.config = config
        self.keep = np.empty(0, np.float32)

    def accept(self, block: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self.keep, block]) if self.keep.size else block
        n_frames = self.config.num_frames(buf.size)
        self.keep = buf[n_frames * self.config.hop_length :]
        if n_frames == 0:
            return np.empty((self.config.n_mels, 0), np.float32)
        return self.backend.log_mel(buf, self.config)


def streaming_config(preset: str):
    """``preset`` framed for streaming: no centre padding, trailing silence or utterance clamp."""
    return get_preset(preset).replace(padding="snip", trailing_silence=0, dynamic_range=None)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", backends.available())
def test_stream(benchmark, name: str, preset: str, block_ms: int) -> None:
    x = speech_seconds(STREAM_SECONDS)
    config = streaming_config(preset)
    be = backends.get(name)
    step = 16 * block_ms
    blocks = [x[i : i + step] for i in range(0, x.size - step + 1, step)]
    stream = BlockStream(be, config)
    streamed = np.concatenate([stream.accept(b) for b in blocks], axis=1)
    offline = reference_log_mel(x[: len(blocks) * step], config)
    check_against(streamed, offline, atol=1e-4, fraction=0.99)

    state = {"i": 0, "stream": BlockStream(be, config)}

    def setup():
        if state["i"] == len(blocks):  # start the audio again, as a new stream (untimed)
            state["i"], state["stream"] = 0, BlockStream(be, config)
        block = blocks[state["i"]]
        state["i"] += 1
        return (state["stream"], block), {}

    n_rounds = 3 if os.environ.get("AMSER_BENCH_QUICK") else min(len(blocks), 2000)
    time_it(
        benchmark, lambda s, b: s.accept(b), block_ms / 1000, setup=setup, n_rounds=n_rounds,
        kind="stream", what=f"{name} {preset} stream {block_ms} ms blocks",
    )  # fmt: skip
