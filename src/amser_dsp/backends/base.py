"""The interface every compute back end implements."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..frontend.extract import log_mel as reference_log_mel

if TYPE_CHECKING:
    from ..config import FeatureConfig

__all__ = ["Backend"]


class Backend:
    """A back end computes log-Mel features: it implements :meth:`log_mel` whole.

    The contract (docs/frontend.md, "Back ends"): ``log_mel(samples, config)``
    takes C-contiguous float32 or float64 audio ``(..., n_samples)`` as
    :func:`amser_dsp.frontend.check_audio` returns it and returns features
    ``(..., n_mels, config.num_frames(n_samples))`` of the same dtype, equal to
    the reference composition (:func:`amser_dsp.frontend.log_mel`) within the
    tolerance of tests/test_backends.py, for every valid config.  It must be
    pure and thread-safe (one back end object serves many threads), read its
    window and Mel filter bank from the reference's cached builders, and raise
    what the reference raises (:func:`amser_dsp.frontend.extract.check_padding`).
    How it computes in between (blocks, fused stages, its own FFT) is its own
    affair: the stages are the specification, not an interface a back end
    overrides one by one.

    This base class is the reference itself: a subclass replaces :meth:`log_mel`.

    Attributes
    ----------
    name : str
        Registry name.
    """

    name: str = "reference"

    def log_mel(self, samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
        """Checked samples ``(..., n)`` to features ``(..., n_mels, n_frames)``, same dtype."""
        return reference_log_mel(samples, config)

    def __repr__(self) -> str:
        return f"<amser_dsp backend {self.name!r}>"
