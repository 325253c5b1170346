"""Every Numba kernel variant against the NumPy reference, on this machine, and the choice among them."""

from __future__ import annotations

import numpy as np
import pytest

from amser_dsp import FeatureConfig, UnknownBackendError, get_preset
from amser_dsp.backends import _codegen, variants
from amser_dsp.frontend.extract import log_mel as reference_log_mel

from .test_backends import PRESETS, assert_log_mel_close

pytest.importorskip("numba")

import llvmlite.binding as llvm  # comes with numba

from amser_dsp.backends.numba_backend import NumbaBackend

# Frame counts around every block and tail size (16, 32, 48, 64 lanes) and a few blocks long.
FRAME_COUNTS = (1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 80, 97, 127, 128, 129, 200, 301)


@pytest.fixture(params=sorted(variants.VARIANTS))
def variant(request: pytest.FixtureRequest) -> NumbaBackend:
    return NumbaBackend(variant=request.param)


def samples_for(config: FeatureConfig, n_frames: int) -> int:
    """The fewest samples that make ``n_frames`` frames with ``config``."""
    n = max(1, config.min_samples)
    while config.num_frames(n) < n_frames:
        n += max(1, (n_frames - config.num_frames(n)) * config.hop_length // 2)
    return n


@pytest.mark.parametrize("preset", PRESETS)
def test_variant_on_speech(speech: list[np.ndarray], variant: NumbaBackend, preset: str) -> None:
    config = get_preset(preset)
    for x in speech[:3]:
        assert_log_mel_close(variant.log_mel(x, config), reference_log_mel(x, config), x, config)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_variant_at_every_tail_size(sample_audio: np.ndarray, variant: NumbaBackend, preset: str, dtype) -> None:
    config = get_preset(preset)
    for frames in FRAME_COUNTS:
        x = sample_audio[: samples_for(config, frames)].astype(dtype)
        ref = reference_log_mel(x, config)
        assert ref.shape[-1] >= frames
        assert_log_mel_close(variant.log_mel(x, config), ref, x, config)


def test_variant_batches_and_threads(sample_audio: np.ndarray, variant: NumbaBackend) -> None:
    config = get_preset("whisper")
    x = np.tile(sample_audio, 8)[: 16000 * 25]  # 2,500 frames: enough for two workers
    one = variant.log_mel(x, config)
    np.testing.assert_array_equal(variant.log_mel(x, config, workers=2), one)
    batch = np.stack([x[:16000], x[16000:32000]])
    out = variant.log_mel(batch, config)
    for i in range(2):
        np.testing.assert_allclose(out[i], variant.log_mel(batch[i], config), rtol=1e-6, atol=1e-6)


def test_variants_agree_with_each_other(sample_audio: np.ndarray) -> None:
    # Same arithmetic in every variant, only the blocking differs: equal up to float rounding.
    config = get_preset("kaldi")
    outs = [NumbaBackend(variant=v).log_mel(sample_audio, config) for v in sorted(variants.VARIANTS)]
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-5, atol=1e-5)


def test_every_variant_has_its_entry_point() -> None:
    from amser_dsp.backends import _numba_kernels as K

    assert {v.shape for v in variants.VARIANTS.values()} == set(K.MEL_BLOCK)
    for v in variants.VARIANTS.values():
        assert all(t <= v.lanes for t in v.tails), v  # the workspace is sized for the main width
    assert variants.get("lanes64p").widths == 1 and variants.get("lanes64").widths == 4


def test_short_and_long_signals_take_their_class_variant(monkeypatch: pytest.MonkeyPatch, sample_audio) -> None:
    # A plan may give short and long signals different variants; each length gets its own.
    monkeypatch.delenv(variants.ENV_VAR, raising=False)
    both = variants.Choice(variants.get("lanes32"), variants.get("lanes64p"), "test")
    monkeypatch.setattr(variants, "choose", lambda: both)
    be = NumbaBackend()
    assert (be.choice, be.variant) == (both, both.long)
    config = get_preset("kaldi")
    x = np.tile(sample_audio, 8)[: (variants.SHORT_FRAMES + 40) * config.hop_length]
    for n in (16000, x.size):  # 102 frames (short), 540 frames (long)
        assert_log_mel_close(be.log_mel(x[:n], config), reference_log_mel(x[:n], config), x[:n], config)


# ------------------------------------------------------------- the choice
@pytest.mark.parametrize(
    ("l2", "expected"),
    [
        (2 << 20, "lanes64p"),  # Zen 4/5, Intel Xeon, Apple, Neoverse: 1-2 MB per core
        (1 << 20, "lanes64p"),
        (512 << 10, "lanes32"),  # Cortex-A72/A76 class
        (256 << 10, "lanes16"),  # older Intel clients, small cores
        (64 << 10, "lanes16"),
        (None, "lanes64p"),  # not reported: the width measured best
    ],
)
def test_select_by_l2(monkeypatch: pytest.MonkeyPatch, l2: int | None, expected: str) -> None:
    monkeypatch.delenv(variants.ENV_VAR, raising=False)
    chosen = variants.select(l2)
    assert chosen.name == expected
    # The planner's reference has the same main width; for 64 lanes it is lanes64t48 (two widths,
    # faster at 1 s), the no-plan default the single-width lanes64p (a cold start compiles one).
    ref = variants.reference(l2)
    assert ref.lanes == chosen.lanes and (ref.name == "lanes64t48" if chosen.lanes == 64 else ref == chosen)
    assert chosen.widths == 1 or chosen.name == "lanes32"
    if l2:
        assert variants.buffer_bytes(chosen.lanes) <= l2 // 2 or chosen.lanes == 16


def test_buffer_bytes_grow_with_lanes() -> None:
    sizes = [variants.buffer_bytes(v.lanes) for v in sorted(variants.VARIANTS.values(), key=lambda v: v.lanes)]
    assert sizes == sorted(sizes)
    assert 400_000 < variants.buffer_bytes(64) < 500_000  # the 440 KB the module doc quotes


def test_environment_overrides_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variants.ENV_VAR, "lanes16")
    assert variants.select(4 << 20).name == "lanes16"
    be = NumbaBackend()
    assert be.choice.short.name == be.choice.long.name == "lanes16"
    assert be.choice.source == variants.ENV_VAR
    monkeypatch.setenv(variants.ENV_VAR, "lanes7")
    with pytest.raises(UnknownBackendError, match=r"unknown Numba kernel variant 'lanes7'.*lanes16"):
        variants.select()


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(UnknownBackendError, match="unknown Numba kernel variant 'wide'"):
        NumbaBackend(variant="wide")
    with pytest.raises(LookupError):  # the builtin it stands in for
        variants.get("wide")


def test_describe_names_the_cpu_and_the_variant() -> None:
    text = variants.describe()
    assert variants.cpu_model() in text
    choice = variants.choose()
    assert choice.short.name in text and choice.long.name in text and choice.source in text
    if llvm.get_host_cpu_name() == "generic":  # a CPU LLVM does not know (qemu-user on arm64): features unknown
        assert "vector features: unknown" in text
    else:
        assert variants.cpu_features(), "llvmlite reports no CPU features on this host"
    l2 = variants.l2_bytes()
    assert l2 is None or l2 >= 64 << 10


# ------------------------------------------------- Intel code generation
@pytest.mark.parametrize(
    ("cpu", "features", "wide"),
    [
        ("skylake-avx512", {"avx512f", "avx2"}, True),
        ("sapphirerapids", {"avx512f", "avx2"}, True),
        ("znver4", {"avx512f", "avx2"}, False),  # AMD: LLVM already uses 512-bit vectors
        ("alderlake", {"avx2"}, False),  # no AVX-512
        ("icelake-server", {"avx2"}, False),  # AVX-512 switched off (features say so)
        ("neoverse-n1", {"neon"}, False),
    ],
)
def test_wide_vectors_only_for_intel_avx512(cpu: str, features: set[str], wide: bool) -> None:
    assert _codegen.wide_vectors_wanted(cpu, frozenset(features)) is wide


_INTEL_SCRIPT = """
import json, sys
import numpy as np
from amser_dsp import get_preset
from amser_dsp.backends import _codegen, planner, variants
from amser_dsp.backends.numba_backend import NumbaBackend
import numba.core.config as numba_config
x = np.load(sys.argv[1])
out = {p: NumbaBackend().log_mel(x, get_preset(p)).tolist() for p in ("whisper", "kaldi")}
print(json.dumps({"note": variants.describe().splitlines()[-1], "features": numba_config.CPU_FEATURES, "out": out}))
"""


@pytest.mark.skipif("avx512f" not in variants.cpu_features(), reason="needs an AVX-512 CPU to run Intel-tuned code")
def test_intel_tuned_code_matches_reference(tmp_path, sample_audio: np.ndarray) -> None:
    # The kernels compiled as for an Intel Xeon (skylake-avx512 tuning, 512-bit vectors asked for), run here.
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import amser_dsp

    x = sample_audio[:48000]
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "NUMBA_CPU_NAME": "skylake-avx512", "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}
    env.pop("NUMBA_CPU_FEATURES", None)
    env.pop(_codegen.WIDE_ENV_VAR, None)
    run = subprocess.run(
        [sys.executable, "-c", _INTEL_SCRIPT, str(tmp_path / "x.npy")], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "512-bit vectors preferred" in result["note"]
    assert result["features"].endswith("-prefer-256-bit")
    for preset, values in result["out"].items():
        config = get_preset(preset)
        ours = np.asarray(values, np.float32)
        assert_log_mel_close(ours, reference_log_mel(x, config), x, config)
