"""Coverage-guided fuzzing of the container reader and decoders (atheris), for long runs.

    pip install atheris
    mkdir -p /tmp/amser-corpus && cp tests/fixtures/*.amser /tmp/amser-corpus/
    python tests/fuzz/fuzz_container.py -max_total_time=600 -rss_limit_mb=1024 /tmp/amser-corpus

Seeds with the golden files copied into a scratch corpus folder: libFuzzer writes
every new input into the first folder it is given, so never pass tests/fixtures
itself (that is how 42 corpus files once got committed beside the golden files).  Any exception other
than an AmserError, or a decoded array over the limits, is a finding.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import amser_dsp
    from amser_dsp import container as fmt
    from amser_dsp.codec import rans

# Numba cannot compile atheris-instrumented bytecode: the rANS loops run as (instrumented) Python,
# which also gives the fuzzer coverage of the decoder's branches.
rans._numba_engine = lambda: None

LIMITS = fmt.Limits(max_chunk_bytes=1 << 20, max_total_frames=100_000, max_decoded_bytes=64 << 20)


def test_one_input(data: bytes) -> None:
    try:
        decoded = amser_dsp.decode_container(data, limits=LIMITS)
    except amser_dsp.AmserError:
        return
    assert decoded.features.nbytes <= LIMITS.max_decoded_bytes
    stream = amser_dsp.StreamDecoder(limits=LIMITS)
    try:
        for i in range(0, len(data), 97):
            stream.feed(data[i : i + 97])
        stream.close()
    except amser_dsp.AmserError:
        raise AssertionError("the streaming decoder refused what the whole-blob decoder accepted") from None


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
