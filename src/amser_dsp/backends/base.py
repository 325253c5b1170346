"""The interface every compute back end implements."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..frontend import stages

if TYPE_CHECKING:
    from ..config import FeatureConfig

__all__ = ["Backend"]


class Backend:
    """A set of kernels that compute the front end.

    Kernels take C-contiguous float32 or float64 arrays and return the same
    dtype.  They are pure and thread-safe: calling one changes no object, so
    one back end serves many threads.  A subclass overrides the kernels it
    accelerates; :meth:`log_mel` is the fused path from samples to features and
    by default composes the stage kernels exactly as the reference does.

    Attributes
    ----------
    name : str
        Registry name.
    """

    name: str = "base"

    # Stage kernels: the reference implementations, overridable one by one.
    def preemphasis(self, x: np.ndarray, coefficient: float, *, previous: np.ndarray | float = 0.0) -> np.ndarray:
        """See :func:`amser_dsp.frontend.preemphasis`."""
        return stages.preemphasis(x, coefficient, previous=previous)

    def frame_signal(
        self, x: np.ndarray, frame_length: int, hop_length: int, *, center: bool = False, pad_mode: str = "reflect"
    ) -> np.ndarray:
        """See :func:`amser_dsp.frontend.frame_signal`."""
        return stages.frame_signal(x, frame_length, hop_length, center=center, pad_mode=pad_mode)

    def power_spectrum(self, frames: np.ndarray, n_fft: int, *, power: float = 2.0) -> np.ndarray:
        """See :func:`amser_dsp.frontend.power_spectrum`."""
        return stages.power_spectrum(frames, n_fft, power=power)

    def apply_mel(self, power: np.ndarray, filterbank: np.ndarray) -> np.ndarray:
        """See :func:`amser_dsp.frontend.apply_mel`."""
        return stages.apply_mel(power, filterbank)

    def log_compress(self, mel: np.ndarray, config: FeatureConfig) -> np.ndarray:
        """See :func:`amser_dsp.frontend.log_compress` (parameters from ``config``)."""
        from ..frontend.extract import compress

        return compress(mel, config)

    def log_mel(self, samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
        """Fused path: checked samples ``(..., n)`` to features ``(..., n_mels, n_frames)``."""
        from ..frontend.extract import log_mel

        return log_mel(samples, config)

    def __repr__(self) -> str:
        return f"<amser_dsp backend {self.name!r}>"
