"""KLT-DCT codec numerics and table training (issue 7 groundwork)."""

from __future__ import annotations

import numpy as np
import pytest

import amser_dsp
from amser_dsp import CodecError
from amser_dsp.codec import kltdct
from amser_dsp.codec.train import fit_basis, fit_tables


@pytest.fixture(scope="module")
def tables(speech: list[np.ndarray]) -> kltdct.KltDctTables:
    feats = [amser_dsp.features(x, 16000, "whisper") for x in speech]
    return fit_tables(feats, name="test-tables", config_digest=amser_dsp.get_preset("whisper").digest(), block=16)


def test_basis_is_orthonormal_and_deterministic(speech: list[np.ndarray]) -> None:
    feats = [amser_dsp.features(x, 16000, "whisper") for x in speech[:2]]
    _mean, basis = fit_basis(feats)
    np.testing.assert_allclose(basis.T @ basis, np.eye(80), atol=1e-10)
    assert np.all(basis[np.argmax(np.abs(basis), axis=0), np.arange(80)] > 0)
    _mean2, basis2 = fit_basis(feats)
    np.testing.assert_array_equal(basis, basis2)


def test_analysis_synthesis_is_exact(tables: kltdct.KltDctTables, sample_audio: np.ndarray) -> None:
    x = amser_dsp.features(sample_audio, 16000, "whisper")
    coeffs = kltdct.analyse(x, tables)
    assert coeffs.shape == (80, -(-x.shape[1] // 16), 16)
    np.testing.assert_allclose(kltdct.synthesise(coeffs, tables, x.shape[1]), x, atol=2e-5)


def test_quantisation_error_is_bounded_by_half_a_step(tables: kltdct.KltDctTables, sample_audio: np.ndarray) -> None:
    x = amser_dsp.features(sample_audio, 16000, "whisper")
    coeffs = kltdct.analyse(x, tables)
    for step_index in (-8, 0, 8):
        s = kltdct.steps(tables, step_index)
        q = kltdct.quantise(coeffs, s)
        err = np.abs(kltdct.dequantise(q, s) - coeffs)
        assert np.all(err <= s[:, None, :] / 2 * (1 + 1e-5))
        # Orthonormal transforms: the feature-domain error energy equals the coefficient-domain one.
        rec = kltdct.synthesise(kltdct.dequantise(q, s), tables, x.shape[1])
        padded = np.pad(x, ((0, 0), (0, coeffs.shape[1] * 16 - x.shape[1])), mode="edge")
        full = kltdct.synthesise(kltdct.dequantise(q, s), tables, padded.shape[1])
        np.testing.assert_allclose(((full - padded) ** 2).sum(), (err**2).sum(), rtol=1e-3)
        assert rec.shape == x.shape


def test_step_grid_and_contexts_are_integers(tables: kltdct.KltDctTables) -> None:
    assert kltdct.step_size(8) == 2.0 and kltdct.step_size(-8) == 0.5
    ctx = kltdct.table_contexts(tables, 5)
    assert ctx.dtype == np.int32
    np.testing.assert_array_equal(ctx, tables.scale_index.astype(np.int32) - 5)


def test_tables_round_trip_with_digest(tables: kltdct.KltDctTables) -> None:
    again = kltdct.tables_from_bytes(tables.to_bytes())
    assert again.sha256 == tables.sha256 and again.name == "test-tables"
    np.testing.assert_array_equal(again.basis, tables.basis)
    with pytest.raises(ValueError, match="read-only"):
        again.basis[0, 0] = 1


def test_unknown_tables_are_a_codec_error() -> None:
    with pytest.raises(CodecError, match="no codec tables named 'nope'"):
        kltdct.load_tables("nope")


def test_features_that_do_not_fit_are_refused(tables: kltdct.KltDctTables) -> None:
    with pytest.raises(CodecError, match="do not fit"):
        kltdct.analyse(np.zeros((40, 10), np.float32), tables)


def test_shipped_tables_load_and_describe_the_whisper_preset() -> None:
    t = kltdct.load_tables("whisper-kltdct16-v1")
    assert t.config_digest == amser_dsp.get_preset("whisper").digest()
    assert t.block == 16 and t.n_mels == 80 and len(t.meta["clips"]) == 87
    np.testing.assert_allclose(t.basis.T @ t.basis, np.eye(80), atol=1e-5)
    # Whisper's measured sensitivity falls with the KLT component and with temporal frequency.
    assert t.weight[0, 0] > t.weight[40, 0] > t.weight[79, 0]
    assert t.weight[0, 3] > t.weight[0, 15]
