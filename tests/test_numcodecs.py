"""The numcodecs codec: numcodecs' own shared checks, the registry entry point, and bad arrays."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

numcodecs = pytest.importorskip("numcodecs", reason="the numcodecs codec needs the zarr extra (numcodecs)")
common = pytest.importorskip("numcodecs.tests.common", reason="numcodecs' test helpers are not installed")

import amser_dsp  # noqa: E402
from amser_dsp.errors import CodecError  # noqa: E402
from amser_dsp.numcodecs import AmserCodec  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "numcodecs"

#: Every codec family, with the tolerance numcodecs' helpers check it to
#: (``decimal=d``: every value within 1.5 * 10**-d; None: bit-exact).
CODECS: list[tuple[dict | None, int | None]] = [
    (None, 0),  # kltdct step -4, the default: max error 0.51 on the sample (RMS 0.07)
    ({"codec": "kltdct", "kbps": 2.0}, 0),
    ({"codec": "kltdct", "quality": 0.02}, 1),  # RMS <= 0.02 by construction; max error 0.09
    ({"codec": "svd", "rank": 20, "factor_dtype": "int8"}, 0),
    ({"codec": "svd", "energy": 1.0, "factor_dtype": "float32", "entropy": None}, 5),  # full rank: float32 rounding
    ({"codec": "raw", "dtype": "float32"}, None),  # lossless
    ({"codec": "raw", "dtype": "float16"}, 3),  # relative error <= 2**-11 on values in [-1, 1.2]
]


@pytest.fixture(scope="module")
def arrays() -> list[np.ndarray]:
    """Real whisper features of the bundled clip: whole (330 frames), 16 frames, and 1,024 frames."""
    feats = amser_dsp.features(amser_dsp.load_audio(amser_dsp.sample_path()), 16000, preset="whisper")
    feats = feats.astype("<f4")
    return [feats, np.ascontiguousarray(feats[:, :16]), np.ascontiguousarray(np.tile(feats, (1, 4))[:, :1024])]


# kbps=2 cannot be met on the 16-frame array (the header alone is 7 kbps there): the library says so, rightly.
@pytest.mark.filterwarnings("ignore::amser_dsp.errors.TargetNotMetWarning")
@pytest.mark.parametrize(("settings", "precision"), CODECS, ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_check_encode_decode(settings: dict | None, precision: int | None, arrays: list[np.ndarray]) -> None:
    codec = AmserCodec(codec=settings)
    for arr in arrays:
        common.check_encode_decode(arr, codec, precision=precision)


@pytest.mark.parametrize(("settings", "precision"), CODECS[:1] + CODECS[3:4] + CODECS[5:])
def test_check_config(settings: dict | None, precision: int | None) -> None:
    common.check_config(AmserCodec(codec=settings))
    common.check_config(AmserCodec(codec=settings, dtype="<f8"))


def test_check_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    # check_repr evaluates the statement in numcodecs.tests.common's namespace, which
    # holds numcodecs' own codecs only: put ours there the way `from numcodecs import *` would.
    monkeypatch.setattr(common, "AmserCodec", AmserCodec, raising=False)
    common.check_repr("AmserCodec(codec={'codec': 'raw', 'dtype': 'float16'}, config='whisper', dtype='<f4')")
    common.check_repr(
        "AmserCodec(codec={'codec': 'kltdct', 'tables': 'whisper-kltdct16-v1', 'step': -4, "
        "'tables_sha256': '41fb1f8ec7fb6001'}, config='whisper', dtype='<f4')"
    )
    common.check_repr(
        "AmserCodec(codec={'codec': 'svd', 'rank': 20, 'ratio': None, 'energy': None, 'factor_dtype': 'int8', "
        "'entropy': 'zlib'}, config='kaldi', dtype='<f8')"
    )


def test_check_backwards_compatibility(arrays: list[np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks encoded when the codec was written (tests/fixtures/numcodecs) still decode within tolerance."""
    if not (FIXTURES / "fixture" / "amser").is_dir() and os.environ.get("AMSER_WRITE_FIXTURES") != "1":
        pytest.fail(f"{FIXTURES}/fixture/amser is missing: the golden chunks must be committed, never regenerated")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(FIXTURES)  # the helper reads ./fixture/<codec id>
    codecs = [AmserCodec(codec=settings) for settings, _ in CODECS]
    common.check_backwards_compatibility("amser", arrays[:2], codecs, precision=[p for _, p in CODECS])
    assert len(list((FIXTURES / "fixture" / "amser").glob("codec.*/encoded.*.dat"))) == len(CODECS) * 2


def test_entry_point_and_defaults() -> None:
    codec = numcodecs.get_codec({"id": "amser"})
    assert isinstance(codec, AmserCodec)
    assert codec.codec["codec"] == amser_dsp.DEFAULT_CODEC["codec"]
    assert codec.codec["step"] == amser_dsp.DEFAULT_CODEC["step"]
    svd = numcodecs.get_codec({"id": "amser", "codec": {"codec": "svd", "rank": 20, "factor_dtype": "int8"}})
    assert svd.codec["codec"] == "svd"


def test_chunks_are_containers(arrays: list[np.ndarray]) -> None:
    codec = AmserCodec()
    info = amser_dsp.inspect(codec.encode(arrays[0]))
    assert info.config == amser_dsp.get_preset("whisper")
    assert (info.n_mels, info.n_frames) == arrays[0].shape


def test_quality_target_holds(arrays: list[np.ndarray]) -> None:
    """The documented bound of ``quality=d``: the RMS error of every chunk is at most d."""
    for quality in (0.02, 0.05, 0.1):
        codec = AmserCodec(codec={"codec": "kltdct", "quality": quality})
        for arr in arrays:
            err = codec.decode(codec.encode(arr)) - arr
            assert np.sqrt(np.mean(err.astype(np.float64) ** 2)) <= quality


def test_float64_and_float16_arrays(arrays: list[np.ndarray]) -> None:
    for dtype in ("<f8", "<f2"):
        codec = AmserCodec(codec={"codec": "raw", "dtype": "float32"}, dtype=dtype)
        arr = arrays[1].astype(dtype)
        out = codec.decode(codec.encode(arr))
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, arr.astype(np.float32).astype(dtype))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda a: a.astype(np.int16), "takes <f4 arrays"),
        (lambda a: a.astype(np.float64), "takes <f4 arrays"),
        (lambda a: a[0], "2-D"),
        (lambda a: a[None], "2-D"),
        (lambda a: np.ascontiguousarray(a[:40]), "40 bands"),
        (lambda a: a[:, :0].copy(), "at least one frame"),
        (lambda a: a.tobytes()[:-4], "not a multiple of 80"),
        (lambda a: np.where(a > 0, np.nan, a).astype("<f4"), "NaN"),
    ],
)
def test_bad_arrays(make, match: str, arrays: list[np.ndarray]) -> None:
    with pytest.raises(CodecError, match=match):
        AmserCodec().encode(make(arrays[0]))


def test_bad_parameters() -> None:
    with pytest.raises(CodecError, match="dtype='<i2' is invalid"):
        AmserCodec(dtype="<i2")
    with pytest.raises(CodecError, match="no parameter"):
        AmserCodec.from_config({"id": "amser", "level": 3})
    with pytest.raises(CodecError, match="trained on"):
        AmserCodec(config="kaldi")  # kltdct tables belong to the whisper preset
    with pytest.raises(CodecError, match="config dict"):
        AmserCodec(codec="kltdct")  # type: ignore[arg-type]


def test_corrupt_chunk_is_refused(arrays: list[np.ndarray]) -> None:
    blob = bytearray(AmserCodec().encode(arrays[0]))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(amser_dsp.CorruptContainerError):
        AmserCodec().decode(bytes(blob))
