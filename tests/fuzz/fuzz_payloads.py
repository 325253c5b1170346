"""Coverage-guided fuzzing of the codecs' chunk decoders behind the checksums (atheris), for long runs.

    pip install atheris
    mkdir -p /tmp/amser-payloads
    python tests/fuzz/fuzz_payloads.py -max_total_time=600 -rss_limit_mb=1024 /tmp/amser-payloads

The container's CRC-32s stop nearly every random mutation before a codec sees it,
so ``fuzz_container.py`` rarely reaches the payload parsers.  This harness feeds
fuzzed payloads straight to ``decode_chunk`` of every codec (as a payload that
collided with its checksum would arrive).  The first byte picks the codec, the
next two the frame count.  Any exception other than an AmserError, a wrong
shape, or a non-finite value is a finding.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    import amser_dsp
    from amser_dsp.codec import KltDctCodec, RawCodec, SvdCodec, rans

# Numba cannot compile atheris-instrumented bytecode: run the rANS loops as Python.
rans._numba_engine = lambda: None

CODECS = (
    KltDctCodec(step=0),
    SvdCodec(rank=4, factor_dtype="int8"),
    SvdCodec(rank=4, factor_dtype="float16"),
    SvdCodec(rank=4, factor_dtype="float32", entropy=None),
    RawCodec(dtype="float16"),
)
LIMIT = 64 << 20


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    codec = CODECS[data[0] % len(CODECS)]
    n_frames = 1 + int.from_bytes(data[1:3], "little") % 2000
    try:
        out = codec.decode_chunk(data[3:], 80, n_frames, LIMIT)
    except amser_dsp.AmserError:
        return
    assert out.shape == (80, n_frames), out.shape
    assert np.isfinite(out).all()


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
