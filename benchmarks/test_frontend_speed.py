"""Front-end speed: every back end x preset, and the anchor libraries with matched parameters.

Run ``make bench`` (or ``pytest benchmarks --benchmark-json=out/bench.json``
then ``python benchmarks/report.py out/bench.json``).  Every benchmark first
checks its output (shape, finite values, agreement with our reference where
the parameters match), then times the call alone: medians of several rounds,
one thread unless the name says otherwise.  Anchors skip when their package is
not installed, so the suite runs on boards without torch or asrfront.

``extra_info`` of each benchmark carries ``seconds`` (of audio), ``kind``
(``ours``/``anchor``), ``what`` and ``threads``; report.py reads them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from amser_dsp import backends, get_preset
from amser_dsp.frontend.extract import log_mel as reference_log_mel

from .conftest import rounds_for

PRESETS = ("amser", "whisper", "kaldi")


def run(benchmark, fn: Callable[[], object], seconds: int, *, kind: str, what: str, threads: int = 1) -> None:
    """Time ``fn`` (already checked and warmed up by the caller) over enough rounds."""
    benchmark.extra_info.update(seconds=seconds, kind=kind, what=what, threads=threads)
    benchmark.pedantic(fn, rounds=rounds_for(seconds), iterations=1, warmup_rounds=1)


def as_whisper_sees(x: np.ndarray) -> np.ndarray:
    """``x`` followed by the ``whisper`` preset's trailing silence, as ``whisper.transcribe`` pads it.

    Whisper-recipe anchors get this (built outside the timed part), so they
    compute the same frames as our ``whisper`` preset: like with like.
    """
    silence = get_preset("whisper").trailing_silence
    return np.concatenate([x, np.zeros(silence, x.dtype)])


def check_against(ours: np.ndarray, ref: np.ndarray, *, atol: float, fraction: float = 1.0) -> None:
    """Same shape, finite, and ``|ours - ref| <= atol * max(1, |ref|)`` on at least ``fraction`` of entries."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert np.isfinite(ours).all()
    within = np.abs(ours - ref) <= atol * np.maximum(1.0, np.abs(ref))
    assert within.mean() >= fraction, f"only {within.mean():.4%} within {atol}"


# ------------------------------------------------------------- our back ends
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", backends.available())
def test_backend(benchmark, speech, name: str, preset: str) -> None:
    seconds, x = speech
    config = get_preset(preset)
    be = backends.get(name)
    out = be.log_mel(x, config)  # also compiles/loads Numba kernels, outside the timed part
    # float32 agreement with the reference (see tests/test_backends.py for why not all entries).
    check_against(out, reference_log_mel(x, config), atol=1e-4, fraction=0.99)
    run(benchmark, lambda: be.log_mel(x, config), seconds, kind="ours", what=f"{name} {preset}")


@pytest.mark.parametrize("preset", ("whisper", "kaldi"))
def test_numba_two_threads(benchmark, speech, preset: str) -> None:
    pytest.importorskip("numba")
    seconds, x = speech
    if seconds < 60:
        pytest.skip("threads only pay on long audio")
    from amser_dsp.backends.numba_backend import NumbaBackend

    be = NumbaBackend(workers=2)
    config = get_preset(preset)
    out = be.log_mel(x, config)
    np.testing.assert_array_equal(out, backends.get("numba").log_mel(x, config))
    run(benchmark, lambda: be.log_mel(x, config), seconds, kind="ours", what=f"numba {preset} 2 threads", threads=2)


# ------------------------------------------------------------------ anchors
def test_asrfront_whisper(benchmark, speech) -> None:
    asrfront = pytest.importorskip("asrfront")
    seconds, x = speech
    xp = as_whisper_sees(x)
    out = asrfront.whisper.log_mel(xp, pad_or_trim=False)
    check_against(out, reference_log_mel(x, get_preset("whisper")), atol=1e-3)
    run(
        benchmark, lambda: asrfront.whisper.log_mel(xp, pad_or_trim=False), seconds,
        kind="anchor", what="asrfront.whisper.log_mel (whisper)",
    )  # fmt: skip


def test_asrfront_fbank(benchmark, speech) -> None:
    asrfront = pytest.importorskip("asrfront")
    seconds, x = speech
    out = asrfront.sensevoice.fbank_raw(x).T
    # asrfront's Kaldi recipe uses a Hamming window; otherwise our kaldi preset.
    matched = get_preset("kaldi").replace(window="hamming")
    check_against(out, reference_log_mel(x, matched), atol=1e-3, fraction=0.99)
    run(benchmark, lambda: asrfront.sensevoice.fbank_raw(x), seconds, kind="anchor", what="asrfront fbank_raw (kaldi)")


def knf_fbank(knf, x: np.ndarray) -> Callable[[], np.ndarray]:
    """kaldi-native-fbank's ``OnlineFbank`` on ``x`` as the ``kaldi`` preset computes it (dither 0, 80 bins)."""
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80

    def compute() -> np.ndarray:
        fbank = knf.OnlineFbank(opts)
        fbank.accept_waveform(16000, x * 32768)
        fbank.input_finished()
        return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])

    check_against(compute().T, reference_log_mel(x, get_preset("kaldi")), atol=1e-3, fraction=0.99)
    return compute


def test_kaldi_native_fbank(benchmark, speech) -> None:
    knf = pytest.importorskip("kaldi_native_fbank")
    seconds, x = speech
    run(benchmark, knf_fbank(knf, x), seconds, kind="anchor", what="kaldi-native-fbank OnlineFbank (kaldi)")


def test_openai_whisper(benchmark, speech) -> None:
    pytest.importorskip("whisper")
    from .conftest import single_thread_torch

    torch = single_thread_torch()
    import whisper.audio

    seconds, x = speech
    xt = torch.from_numpy(as_whisper_sees(x))
    out = whisper.audio.log_mel_spectrogram(xt).numpy()
    check_against(out, reference_log_mel(x, get_preset("whisper")), atol=1e-3)
    run(
        benchmark,
        lambda: whisper.audio.log_mel_spectrogram(xt),
        seconds,
        kind="anchor",
        what="openai-whisper (whisper)",
    )


def test_faster_whisper(benchmark, speech) -> None:
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    seconds, x = speech
    extractor = fw.FeatureExtractor()
    out = extractor(x)
    ref = reference_log_mel(x, get_preset("whisper"))
    # It appends 160 zeros and keeps the last frame: compare all but the last two frames.
    check_against(out[:, : ref.shape[1] - 2], ref[:, :-2], atol=1e-3)
    run(benchmark, lambda: extractor(x), seconds, kind="anchor", what="faster-whisper FeatureExtractor (whisper)")


def librosa_whisper(librosa, x: np.ndarray) -> Callable[[], np.ndarray]:
    """The Whisper recipe in librosa on ``x``: centred reflect-padded Hann STFT, Slaney Mel, log10, 8-decade clamp."""
    xp = as_whisper_sees(x)

    def compute() -> np.ndarray:
        mel = librosa.feature.melspectrogram(
            y=xp, sr=16000, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect",
            power=2.0, n_mels=80, htk=False, norm="slaney",
        )  # fmt: skip
        logs = np.log10(np.maximum(mel, 1e-10))
        return (np.maximum(logs, logs.max() - 8.0) + 4.0) / 4.0

    check_against(compute()[:, :-1], reference_log_mel(x, get_preset("whisper")), atol=1e-3)
    return compute


def test_librosa(benchmark, speech) -> None:
    librosa = pytest.importorskip("librosa")
    seconds, x = speech
    run(benchmark, librosa_whisper(librosa, x), seconds, kind="anchor", what="librosa melspectrogram + log (whisper)")


def test_python_speech_features(benchmark, speech) -> None:
    psf = pytest.importorskip("python_speech_features")
    seconds, x = speech
    out = psf.logfbank(x, 16000, nfilt=80, nfft=512)
    # Its own filter bank (bin-rounded triangles) and a rectangular window: shape and finiteness only.
    assert out.shape == (get_preset("amser").num_frames(x.size) + 1, 80)
    assert np.isfinite(out).all()
    run(
        benchmark, lambda: psf.logfbank(x, 16000, nfilt=80, nfft=512), seconds,
        kind="anchor", what="python_speech_features logfbank (amser-like)",
    )  # fmt: skip


def test_torch_stft_mel(benchmark, speech) -> None:
    from amser_dsp.frontend import mel_filterbank_for

    from .conftest import single_thread_torch

    torch = single_thread_torch()
    seconds, x = speech
    config = get_preset("whisper")
    bank = torch.from_numpy(np.array(mel_filterbank_for(config)))
    window = torch.hann_window(400)
    xt = torch.from_numpy(as_whisper_sees(x))

    def compute():
        spec = torch.stft(xt, 400, 160, window=window, center=True, pad_mode="reflect", return_complex=True)
        power = spec[:, :-1].abs() ** 2
        logs = torch.clamp(bank @ power, min=1e-10).log10()
        return (torch.maximum(logs, logs.max() - 8.0) + 4.0) / 4.0

    check_against(compute().numpy(), reference_log_mel(x, config), atol=1e-3)
    run(benchmark, compute, seconds, kind="anchor", what="torch.stft + Mel (whisper)")
