"""Atheris harness for the container reader (not collected by pytest).

    mkdir -p /tmp/amser-corpus && cp tests/fixtures/*.amser /tmp/amser-corpus/
    PYTHONPATH=src python tests/fuzz/fuzz_container.py -max_total_time=600 -rss_limit_mb=512 /tmp/amser-corpus

Any exception other than an AmserError, a hang, or an allocation beyond the
limits (run with ``-rss_limit_mb=512``) is a bug.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import amser_dsp
    from amser_dsp import AmserError, Limits

LIMITS = Limits(max_header_bytes=8192, max_chunk_bytes=1 << 20, max_frames=200_000, max_decoded_bytes=64 << 20)


def test_one_input(data: bytes) -> None:
    try:
        amser_dsp.decode(data, limits=LIMITS)
    except AmserError:
        pass
    decoder = amser_dsp.StreamDecoder(limits=LIMITS)
    try:
        for i in range(0, len(data), 7):
            decoder.feed(data[i : i + 7])
        decoder.close()
    except AmserError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
