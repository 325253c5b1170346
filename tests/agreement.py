"""Reference-library adapters, and the agreement report of docs/frontend.md.

Run from the repository root: ``python -m tests.agreement`` (needs the
``test`` extra and ../shared/data).  The tests import the adapters from here.
"""

from __future__ import annotations

import argparse

import numpy as np

import amser_dsp
from amser_dsp import PRESETS, backends, features

#: Bands this far below the frame's strongest band are below float32 resolution.
RESOLVABLE_DB = 60.0


def openai_whisper(x: np.ndarray) -> np.ndarray:
    """openai-whisper's ``log_mel_spectrogram`` (torch STFT) with the preset's trailing zeros, as NumPy."""
    import torch
    import whisper.audio

    padding = PRESETS["whisper"].trailing_silence
    return whisper.audio.log_mel_spectrogram(torch.from_numpy(x), padding=padding).numpy()


def kaldi_native_fbank(x: np.ndarray) -> np.ndarray:
    """kaldi-native-fbank ``OnlineFbank`` with Kaldi defaults, dither 0, 80 bins."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, (x * 32768).tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).T


def librosa_amser(x: np.ndarray) -> np.ndarray:
    """The ``amser`` preset composed independently from librosa, SciPy and NumPy (float64)."""
    import librosa
    from scipy.signal import get_window

    cfg = PRESETS["amser"]
    x = x.astype(np.float64)
    y = np.append(x[0], x[1:] - cfg.preemphasis * x[:-1])
    frames = librosa.util.frame(y, frame_length=cfg.frame_length, hop_length=cfg.hop_length, axis=0)
    windowed = frames * get_window("hamming", cfg.frame_length, fftbins=False)
    power = np.abs(np.fft.rfft(windowed, n=cfg.n_fft)) ** 2
    bank = librosa.filters.mel(sr=16000, n_fft=cfg.n_fft, n_mels=80, htk=True, norm=None, dtype=np.float64)
    return np.log(np.maximum(bank @ power.T, cfg.log_floor))


def resolvable(exact_log: np.ndarray) -> np.ndarray:
    """Mask of entries within RESOLVABLE_DB of their frame's strongest band (natural-log energies)."""
    return exact_log >= exact_log.max(axis=0, keepdims=True) - RESOLVABLE_DB / 10 * np.log(10)


def main(argv: list[str] | None = None) -> int:
    from .conftest import SHARED_DATA, asr_manifest

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="use the first N clips only")
    args = parser.parse_args(argv)
    rows = asr_manifest()[: args.limit]
    clips = [amser_dsp.load_audio(SHARED_DATA / "asr" / r["path"]) for r in rows]
    seconds = sum(c.size for c in clips) / 16000
    print(f"{len(clips)} clips, {seconds / 60:.1f} min of ../shared/data/asr\n")
    print("| preset | reference | back end | max abs diff | max rel diff | entries > 1e-3 | max abs diff, resolvable |")
    print("|---|---|---|---:|---:|---:|---:|")
    refs = {
        "whisper": ("openai-whisper log_mel_spectrogram", [openai_whisper(c) for c in clips]),
        "kaldi": ("kaldi-native-fbank OnlineFbank", [kaldi_native_fbank(c) for c in clips]),
        "amser": ("librosa composition (float64)", [librosa_amser(c) for c in clips]),
    }
    for preset, (label, expected) in refs.items():
        for name in backends.available():
            worst_abs = worst_rel = worst_res = 0.0
            over = total = 0
            for clip, ref in zip(clips, expected, strict=True):
                x = clip.astype(np.float64) if preset == "amser" else clip
                ours = features(x, 16000, preset, backend=name)
                diff = np.abs(ours - ref)
                worst_abs = max(worst_abs, float(diff.max()))
                worst_rel = max(worst_rel, float((diff / np.maximum(np.abs(ref), 1e-30)).max()))
                over += int((diff > 1e-3).sum())
                total += diff.size
                if preset == "kaldi":
                    exact = features(clip.astype(np.float64), 16000, preset, backend="numpy")
                    worst_res = max(worst_res, float(diff[resolvable(exact)].max()))
                else:
                    worst_res = worst_abs
            # Relative error only means something where values stay away from 0 (amser's ln energies).
            rel = f"{worst_rel:.2e}" if preset == "amser" else "n/a"
            print(
                f"| {preset} | {label} | {name} | {worst_abs:.2e} | {rel} | "
                f"{over} of {total} ({100 * over / total:.3f}%) | {worst_res:.2e} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
