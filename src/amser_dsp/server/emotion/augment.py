"""Training-time audio augmentation: additive noise, pitch shift, time stretch.

Applied to audio before the front end, for training examples only, and seeded:
the same ``rng`` state gives the same output.  Pitch shift and time stretch use
a phase vocoder on SciPy's STFT (librosa's method, without its dependencies);
babble is a sum of other training clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import istft, resample_poly, stft

from ...errors import AudioError

__all__ = ["Augmenter", "add_noise", "babble", "pitch_shift", "time_stretch"]

N_FFT = 512
HOP = 128


def _check(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise AudioError(f"expected finite 1-D audio samples, got {x.dtype} {x.shape}")
    return x


def time_stretch(audio: np.ndarray, rate: float) -> np.ndarray:
    """Play ``audio`` ``rate`` times faster at the same pitch (phase vocoder); length ``round(n / rate)``.

    Raises
    ------
    AudioError
        If ``rate`` is not in (0.25, 4) or the audio is not finite 1-D samples.
    """
    x = _check(audio)
    if not 0.25 < rate < 4:
        raise AudioError(f"rate={rate!r} is out of range: expected 0.25 < rate < 4")
    if x.size < N_FFT or rate == 1:
        return x.copy()
    _, _, spec = stft(x, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary="zeros", padded=True)
    steps = np.arange(0, spec.shape[1] - 1, rate)
    left = steps.astype(int)
    frac = (steps - left)[None, :]
    mag = (1 - frac) * np.abs(spec[:, left]) + frac * np.abs(spec[:, left + 1])
    # Phase advance per output frame: the expected advance of each bin plus its measured deviation.
    expected = np.linspace(0, np.pi * HOP, spec.shape[0])[:, None]
    dphase = np.angle(spec[:, left + 1]) - np.angle(spec[:, left]) - expected
    dphase -= 2 * np.pi * np.round(dphase / (2 * np.pi))
    phase = np.angle(spec[:, :1]) + np.cumsum(
        np.concatenate([np.zeros_like(expected), (expected + dphase)[:, :-1]], 1), 1
    )
    _, y = istft(mag * np.exp(1j * phase), nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=True)
    n = round(x.size / rate)
    return np.pad(y[:n], (0, max(0, n - y.size))).astype(np.float32)


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Shift the pitch by ``semitones`` at the same duration: stretch, then resample back to the length.

    Raises
    ------
    AudioError
        If ``|semitones| > 12`` or the audio is not finite 1-D samples.
    """
    x = _check(audio)
    if abs(semitones) > 12:
        raise AudioError(f"semitones={semitones!r} is out of range: expected -12 to 12")
    ratio = Fraction(2 ** (-semitones / 12)).limit_denominator(64)  # stretch by 1 / pitch factor
    if ratio == 1:
        return x.copy()
    stretched = time_stretch(x, float(ratio))
    y = resample_poly(stretched, ratio.numerator, ratio.denominator)
    return np.pad(y[: x.size], (0, max(0, x.size - y.size))).astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``audio`` plus ``noise`` (tiled or cut to its length) scaled to ``snr_db`` dB below the audio's power."""
    x, n = _check(audio), _check(noise)
    if not n.size or not np.any(n):
        raise AudioError("the noise is empty or silent")
    n = np.resize(n, x.size)
    power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-10
    scale = np.sqrt(power / (10 ** (snr_db / 10)) / float(np.mean(n.astype(np.float64) ** 2)))
    return (x + scale * n).astype(np.float32)


def babble(pool: Sequence[np.ndarray], length: int, rng: np.random.Generator, talkers: int = 4) -> np.ndarray:
    """Several clips of ``pool`` (random offsets, equal power) summed into ``length`` samples of babble."""
    if not pool:
        raise AudioError("babble needs at least one other clip")
    out = np.zeros(length, np.float64)
    for i in rng.choice(len(pool), size=min(talkers, len(pool)), replace=False):
        clip = np.asarray(pool[i], np.float64)
        clip = np.roll(np.resize(clip, max(length, clip.size)), -int(rng.integers(clip.size)))[:length]
        out += clip / (np.sqrt(np.mean(clip**2)) + 1e-9)
    return out.astype(np.float32)


@dataclass(frozen=True)
class Augmenter:
    """A random mix of the three augmentations, each applied with its probability.

    ``augmenter(audio, rng, pool)`` returns the augmented audio; ``pool`` holds
    other training clips for babble (none: white noise only).
    """

    p_stretch: float = 0.5
    stretch: tuple[float, float] = (0.85, 1.15)
    p_pitch: float = 0.5
    semitones: tuple[float, float] = (-3.0, 3.0)
    p_noise: float = 0.8
    snr_db: tuple[float, float] = (5.0, 30.0)
    p_babble: float = 0.5

    def __call__(self, audio: np.ndarray, rng: np.random.Generator, pool: Sequence[np.ndarray] = ()) -> np.ndarray:
        x = _check(audio)
        # Draw every number whether or not it is used, so one choice never shifts the others.
        u = rng.random(4)
        rate, semis, snr = rng.uniform(*self.stretch), rng.uniform(*self.semitones), rng.uniform(*self.snr_db)
        noise_seed = int(rng.integers(2**32))
        if u[0] < self.p_pitch:
            x = pitch_shift(x, semis)
        if u[1] < self.p_stretch:
            x = time_stretch(x, rate)
        if u[2] < self.p_noise:
            noise_rng = np.random.default_rng(noise_seed)
            use_babble = bool(pool) and u[3] < self.p_babble
            noise = babble(pool, x.size, noise_rng) if use_babble else noise_rng.standard_normal(x.size)
            x = add_noise(x, noise.astype(np.float32), snr)
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        return x / peak * 0.99 if peak > 1 else x
