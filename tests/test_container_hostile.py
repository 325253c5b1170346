"""Hostile containers stay cheap: bounded memory and time, whatever the bytes say.

Complements tests/test_container.py (which checks the error types) with the
other two promises of the format: decoding never allocates beyond the configured
limits and never hangs.
"""

from __future__ import annotations

import contextlib
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import amser_dsp
from amser_dsp import AmserError
from amser_dsp import container as fmt

GOLDEN = sorted((Path(__file__).parent / "fixtures").glob("v*.amser"))
LIMITS = fmt.Limits(max_header_bytes=8192, max_chunk_bytes=1 << 20, max_total_frames=100_000, max_decoded_bytes=8 << 20)
# Peak traced memory allowed for one hostile decode: the decoded-size limit plus
# working copies of the input and one chunk's worth of buffers.
BUDGET = 2 * LIMITS.max_decoded_bytes + 4 * LIMITS.max_chunk_bytes
SECONDS = 2.0


def _decode_bounded(blob: bytes) -> None:
    """Decode and inspect ``blob``: only AmserError, within BUDGET bytes and SECONDS."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        for fn in (amser_dsp.decode, amser_dsp.inspect):
            with contextlib.suppress(AmserError):
                fn(blob, limits=LIMITS)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    assert peak <= BUDGET + 4 * len(blob), f"peak {peak} bytes over the budget {BUDGET}"
    assert elapsed < SECONDS, f"took {elapsed:.2f} s"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_are_bounded(data: bytes) -> None:
    _decode_bounded(data)
    _decode_bounded(fmt.MAGIC + data)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mutated_golden_files_are_bounded(data: st.DataObject) -> None:
    blob = bytearray(data.draw(st.sampled_from(GOLDEN)).read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    _decode_bounded(bytes(blob))


def test_a_deflate_bomb_in_a_valid_chunk_is_bounded() -> None:
    """A checksummed chunk whose payload inflates to 64 MB must stop at the limits."""
    golden = next(p for p in GOLDEN if "zlib" in p.name).read_bytes()
    header, _, _ = fmt.read_all(golden)
    # The svd payload: a u16 rank, then a raw deflate stream (wbits -15).
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = struct.pack("<H", 4) + deflate.compress(b"\x00" * (64 << 20)) + deflate.flush()
    frames = 50
    blob = golden[: header.size] + fmt.chunk_bytes(frames, bomb) + fmt.end_bytes(1, frames)
    _decode_bounded(blob)


def test_huge_declared_sizes_are_refused_cheaply() -> None:
    golden = GOLDEN[0].read_bytes()
    header, _, _ = fmt.read_all(golden)
    for frames in (2**32 - 1, LIMITS.max_total_frames + 1):
        blob = golden[: header.size] + fmt.chunk_bytes(frames, b"\x00" * 16) + fmt.end_bytes(1, frames)
        _decode_bounded(blob)


def test_golden_files_still_decode_under_these_limits() -> None:
    for path in GOLDEN:
        # Same tolerance as test_container's golden test: BLAS rounding may differ across machines.
        np.testing.assert_allclose(
            amser_dsp.decode(path.read_bytes(), limits=LIMITS), np.load(path.with_suffix(".npy")), rtol=1e-5, atol=1e-5
        )
