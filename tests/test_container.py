"""The .amser container: golden files, damage, hostile input, limits, versions."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import amser_dsp
from amser_dsp import (
    AmserError,
    ContainerError,
    CorruptContainerError,
    LimitExceededError,
    Limits,
    UnsupportedVersionError,
)
from amser_dsp.container import MAGIC, canonical_json

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = sorted(FIXTURES.glob("v1_*.amser"))
SMALL_LIMITS = Limits(max_header_bytes=4096, max_chunk_bytes=1 << 20, max_frames=100_000, max_decoded_bytes=64 << 20)


def _needs_zstd(path: Path) -> None:
    if "zstd" in path.name:
        pytest.importorskip("zstandard")


def test_golden_files_exist() -> None:
    assert len(GOLDEN) >= 4


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_files_decode_to_their_stored_features(path: Path) -> None:
    _needs_zstd(path)
    expected = np.load(path.with_suffix(".npy"))
    enc = amser_dsp.decode_container(path.read_bytes())
    np.testing.assert_array_equal(enc.features, expected)
    assert enc.info.format_version == "1.0"


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_every_truncation_of_golden_files_is_a_container_error(path: Path) -> None:
    _needs_zstd(path)
    blob = path.read_bytes()
    for n in range(len(blob)):
        with pytest.raises(ContainerError):
            amser_dsp.decode(blob[:n])


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_every_bit_flip_of_golden_files_is_a_container_error(path: Path) -> None:
    _needs_zstd(path)
    blob = bytearray(path.read_bytes())
    for i in range(len(blob)):
        for bit in range(8):
            blob[i] ^= 1 << bit
            try:
                amser_dsp.decode(bytes(blob))
            except ContainerError:
                pass
            else:  # pragma: no cover - the failure message
                pytest.fail(f"flip of bit {bit} in byte {i} of {path.name} was not detected")
            finally:
                blob[i] ^= 1 << bit


def test_trailing_bytes_are_corruption() -> None:
    blob = GOLDEN[0].read_bytes()
    with pytest.raises(CorruptContainerError, match="follow the end record"):
        amser_dsp.decode(blob + b"\x00")


def _with_header(header: dict, *, major: int = 1, text: bytes | None = None) -> bytes:
    body = zlib.compress(canonical_json(header) if text is None else text)
    head = MAGIC + struct.pack("<BBH", major, 0, 0) + struct.pack("<I", len(body)) + body
    end = struct.pack("<BIQ", 0x45, 0, 0)
    return head + struct.pack("<I", zlib.crc32(head)) + end + struct.pack("<I", zlib.crc32(end))


GOOD_HEADER = {"codec": {"id": "svd", "rank": 2}, "n_mels": 4, "feature_config": None, "extra_field": [1, 2]}


def test_unknown_optional_fields_are_skipped() -> None:
    assert amser_dsp.decode(_with_header(GOOD_HEADER)).shape == (4, 0)


def test_unknown_major_version_is_refused() -> None:
    with pytest.raises(UnsupportedVersionError, match=r"format version 2.0 is not supported"):
        amser_dsp.decode(_with_header(GOOD_HEADER, major=2))


def test_bad_magic() -> None:
    with pytest.raises(CorruptContainerError, match=r"not an \.amser container"):
        amser_dsp.decode(b"RIFF\x00\x00\x00\x00WAVEfmt ")


@pytest.mark.parametrize(
    ("header", "error", "match"),
    [
        ({**GOOD_HEADER, "n_mels": 5000}, LimitExceededError, "max_n_mels"),
        ({**GOOD_HEADER, "n_mels": "80"}, CorruptContainerError, "n_mels='80'"),
        ({**GOOD_HEADER, "codec": {"id": "future"}}, ContainerError, "unknown codec id 'future'"),
        ({**GOOD_HEADER, "feature_config": {"version": 1, "n_fft": -3}}, CorruptContainerError, "feature_config"),
        ([1, 2], CorruptContainerError, "JSON object"),
    ],
)
def test_bad_headers(header: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        amser_dsp.decode(_with_header(header))  # type: ignore[arg-type]


def test_limits_are_checked_before_allocation() -> None:
    x = np.random.default_rng(0).standard_normal((80, 2000)).astype(np.float32)
    blob = amser_dsp.encode(x, rank=2)
    with pytest.raises(LimitExceededError, match="max_frames=1000"):
        amser_dsp.decode(blob, limits=Limits(max_frames=1000))
    with pytest.raises(LimitExceededError, match="max_decoded_bytes"):
        amser_dsp.decode(blob, limits=Limits(max_decoded_bytes=1000))
    with pytest.raises(LimitExceededError, match="max_chunk_bytes"):
        amser_dsp.decode(blob, limits=Limits(max_chunk_bytes=100))
    with pytest.raises(LimitExceededError, match="max_header_bytes"):
        amser_dsp.decode(blob, limits=Limits(max_header_bytes=10))
    with pytest.raises(ContainerError, match=r"Limits.max_frames=0 is invalid"):
        Limits(max_frames=0)


def test_a_huge_declared_chunk_is_refused_without_reading_it() -> None:
    blob = GOLDEN[0].read_bytes()
    reader = amser_dsp.StreamDecoder()
    hlen = struct.unpack_from("<I", blob, 12)[0]
    reader.feed(blob[: 16 + hlen + 4])  # the header only
    assert reader.config is not None
    with pytest.raises(LimitExceededError, match="max_chunk_bytes"):
        reader.feed(struct.pack("<BII", 0x43, 10, 0xFFFFFFF0))


def test_inflation_is_bounded_by_the_declared_shape() -> None:
    # A valid chunk whose zlib payload inflates far beyond what 4 x 3 features can need.
    header_blob = _with_header(GOOD_HEADER)[:-17]
    payload = zlib.compress(b"\x00" * 10_000_000)
    head = struct.pack("<BII", 0x43, 3, len(payload))
    chunk = head + payload + struct.pack("<I", zlib.crc32(head + payload))
    end = struct.pack("<BIQ", 0x45, 1, 3)
    blob = header_blob + chunk + end + struct.pack("<I", zlib.crc32(end))
    tracemalloc.start()
    with pytest.raises(CorruptContainerError, match="bound"):
        amser_dsp.decode(blob)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000


def _check_hostile(blob: bytes) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        amser_dsp.decode(blob, limits=SMALL_LIMITS)
        amser_dsp.inspect(blob, limits=SMALL_LIMITS)
    except AmserError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 2.0
    assert peak < 4 * len(blob) + SMALL_LIMITS.max_decoded_bytes


@given(st.binary(max_size=400))
def test_random_bytes_raise_only_amser_errors(blob: bytes) -> None:
    _check_hostile(blob)
    _check_hostile(MAGIC + blob)
    _check_hostile(MAGIC + b"\x01\x00\x00\x00" + blob)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(
    st.sampled_from(sorted(set(GOOD_HEADER) | {"n_mels", "codec", "sample_rate", "chunk_frames", "hop_length"})),
    json_values,
    st.sampled_from(GOLDEN),
)
def test_mutated_headers_raise_only_amser_errors(key: str, value: object, path: Path) -> None:
    import json

    blob = path.read_bytes()
    hlen = struct.unpack_from("<I", blob, 12)[0]
    header = json.loads(zlib.decompress(blob[16 : 16 + hlen]))
    header[key] = value
    if key == "codec" and isinstance(value, dict):
        header["codec"] = {**header["codec"], **value}
    body = zlib.compress(canonical_json(header))
    head = blob[:12] + struct.pack("<I", len(body)) + body
    mutated = head + struct.pack("<I", zlib.crc32(head)) + blob[16 + hlen + 4 :]
    _check_hostile(mutated)


@given(st.data())
def test_mutated_golden_bytes_raise_only_amser_errors(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(GOLDEN))
    _needs_zstd(path)
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    _check_hostile(bytes(blob))
