"""Hypothesis strategies: signals and valid feature configs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from amser_dsp import ConfigError, FeatureConfig


def signals(min_size: int = 1, max_size: int = 4000, dtype=np.float32) -> st.SearchStrategy[np.ndarray]:
    """Finite signals in [-1, 1]: noise, digital silence, full-scale squares, clicks."""
    lengths = st.integers(min_size, max_size)
    noise = lengths.flatmap(
        lambda n: hnp.arrays(dtype, n, elements=st.floats(-1, 1, width=np.dtype(dtype).itemsize * 8))
    )
    silence = lengths.map(lambda n: np.zeros(n, dtype))
    square = st.tuples(lengths, st.integers(2, 200)).map(
        lambda t: np.where((np.arange(t[0]) // t[1]) % 2 == 0, 1.0, -1.0).astype(dtype)
    )
    click = lengths.map(lambda n: np.eye(1, n, n // 2, dtype=dtype)[0])
    return st.one_of(noise, silence, square, click)


@st.composite
def configs(draw: st.DrawFn) -> FeatureConfig:
    """Valid FeatureConfigs (invalid draws are rejected, not returned)."""
    from hypothesis import assume

    sample_rate = draw(st.sampled_from([8000, 16000, 22050]))
    frame_length = draw(st.integers(16, 600))
    n_fft = draw(st.integers(frame_length, 1024))
    kwargs = dict(
        sample_rate=sample_rate,
        frame_length=frame_length,
        hop_length=draw(st.integers(1, 400)),
        n_fft=n_fft,
        window=draw(st.sampled_from(["hamming", "hann", "povey", "rectangular"])),
        periodic_window=draw(st.booleans()),
        preemphasis=draw(st.sampled_from([0.0, 0.95, 0.97])),
        preemphasis_scope=draw(st.sampled_from(["signal", "frame"])),
        remove_dc=draw(st.booleans()),
        input_scale=draw(st.sampled_from([1.0, 32768.0])),
        padding=draw(st.sampled_from(["snip", "center"])),
        pad_mode=draw(st.sampled_from(["reflect", "constant", "edge"])),
        drop_last_frame=draw(st.booleans()),
        n_mels=draw(st.integers(1, 40)),
        f_min=draw(st.sampled_from([0.0, 20.0, 60.0])),
        f_max=draw(st.sampled_from([None, sample_rate / 2 - 100])),
        mel_scale=draw(st.sampled_from(["htk", "slaney"])),
        mel_triangles=draw(st.sampled_from(["hz", "mel"])),
        mel_norm=draw(st.sampled_from([None, "slaney"])),
        power=draw(st.sampled_from([1.0, 2.0])),
        log=draw(st.sampled_from(["ln", "log10"])),
        log_floor=draw(st.sampled_from([1e-10, 1e-6, float.fromhex("0x1p-23")])),
        dynamic_range=draw(st.sampled_from([None, 8.0])),
        log_offset=draw(st.sampled_from([0.0, 4.0])),
        log_scale=draw(st.sampled_from([1.0, 0.25])),
    )
    try:
        return FeatureConfig(**kwargs)
    except ConfigError:
        assume(False)
        raise
