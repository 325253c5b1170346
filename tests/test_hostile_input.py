"""What an outside fuzzer and a soak found: each case fails on amser-dsp 0.1 and passes now.

Every hostile container must raise an :class:`AmserError` (never a builtin) from ``decode``, ``inspect`` and
``StreamDecoder`` in any feed sizes; chunks moved, dropped, duplicated or spliced are refused.
"""

from __future__ import annotations

import contextlib
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import amser_dsp
from amser_dsp import AmserError, CorruptContainerError, LimitExceededError
from amser_dsp import container as fmt

from . import containers

GOLDEN = sorted((Path(__file__).parent / "fixtures").glob("v1.1-*.amser"))


def _deflate(text: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=fmt.HEADER_DICTIONARY)
    return comp.compress(text) + comp.flush()


def _header(config_json: bytes, codec_json: bytes, n_mels: int = 80, minor: int = 1) -> bytes:
    """A header body (no CRC) carrying these JSON texts verbatim."""
    fields = b"".join(
        struct.pack("<BI", tag, len(value)) + value
        for tag, value in ((1, _deflate(config_json)), (2, _deflate(codec_json)), (3, struct.pack("<H", n_mels)))
    )
    return struct.pack("<4sBBHI", fmt.MAGIC, 1, minor, 0, len(fields)) + fields


WHISPER = amser_dsp.get_preset("whisper").to_json().encode()
RAW = b'{"codec":"raw","dtype":"float32"}'
ONE_CHUNK = [containers.chunk_body(2, np.zeros((80, 2), "<f4").tobytes())]


def _all_entry_points(blob: bytes, *, payloads: bool = False) -> list[Callable[[], object]]:
    """Every public reader of ``blob``; with ``payloads``, only those that decode chunk payloads (not inspect)."""

    def stream(step: int) -> Callable[[], object]:
        def run() -> None:
            dec = amser_dsp.StreamDecoder()
            for i in range(0, len(blob), step):
                dec.feed(blob[i : i + step])
            dec.close()

        return run

    runs = [lambda: amser_dsp.decode(blob), lambda: amser_dsp.decode_container(blob)]
    runs += [stream(1), stream(7), stream(len(blob) or 1)]
    return runs if payloads else [*runs, lambda: amser_dsp.inspect(blob)]


def _refused_everywhere(
    blob: bytes, error: type = AmserError, match: str | None = None, *, payloads: bool = False
) -> None:
    for run in _all_entry_points(blob, payloads=payloads):
        with pytest.raises(error, match=match):
            run()


# ------------------------------------------------------- builtins that leaked
def test_deeply_nested_json_in_the_header() -> None:
    nested = b'{"version":1,"x":' + b"[" * 20_000 + b"]" * 20_000 + b"}"  # 40 KB, inside the header limit
    _refused_everywhere(containers.with_end(_header(nested, RAW), ONE_CHUNK), CorruptContainerError)


def test_an_integer_longer_than_pythons_limit() -> None:
    config = WHISPER.replace(b'"n_fft":400', b'"n_fft":' + b"9" * 5000)
    _refused_everywhere(containers.with_end(_header(config, RAW), ONE_CHUNK), CorruptContainerError)


def test_a_huge_integer_in_a_real_valued_field() -> None:
    config = WHISPER.replace(b'"log_floor":1e-10', b'"log_floor":' + b"1" + b"0" * 400)
    _refused_everywhere(containers.with_end(_header(config, RAW), ONE_CHUNK), CorruptContainerError, "log_floor")
    with pytest.raises(amser_dsp.ConfigError, match="log_scale"):
        amser_dsp.get_preset("whisper").replace(log_scale=10**400)


def test_a_very_long_table_name_never_reaches_the_file_system() -> None:
    codec = json.dumps({"codec": "kltdct", "tables": "x" * 60_000, "step": 0}).encode()  # inside the header limit
    _refused_everywhere(containers.with_end(_header(WHISPER, codec), ONE_CHUNK), AmserError, "no codec tables")
    for name in ("../../etc/passwd", "whisper-kltdct16-v1/../whisper-kltdct16-v1", "", "\x00"):
        with pytest.raises(amser_dsp.UnknownTablesError):
            amser_dsp.codec.kltdct.load_tables(name)


def test_a_zstd_frame_declaring_an_enormous_size() -> None:
    zstandard = pytest.importorskip("zstandard")
    frame = bytearray(zstandard.ZstdCompressor().compress(b"\x00" * 10_000))
    # Rewrite the frame header's content size (8-byte field) to 2**60 bytes.
    bogus = zstandard.ZstdCompressor(write_content_size=True).compress(b"")
    assert zstandard.frame_content_size(bytes(frame)) == 10_000
    params = zstandard.get_frame_parameters(bytes(frame))
    assert params.content_size == 10_000 and bogus
    header_size = zstandard.frame_header_size(bytes(frame))
    fcs_flag = frame[4] >> 6
    size_bytes = {0: 1 if frame[4] & 0x20 else 0, 1: 2, 2: 4, 3: 8}[fcs_flag]
    frame[4] = (frame[4] & 0x3F) | (3 << 6)  # an 8-byte content size
    frame = frame[: header_size - size_bytes] + struct.pack("<Q", 1 << 60) + frame[header_size:]
    assert zstandard.frame_content_size(bytes(frame)) == 1 << 60
    codec = b'{"codec":"svd","energy":null,"entropy":"zstd","factor_dtype":"float32","rank":1,"ratio":null}'
    payload = struct.pack("<H", 1) + bytes(frame)
    blob = containers.with_end(_header(WHISPER, codec), [containers.chunk_body(2, payload)])
    _refused_everywhere(blob, CorruptContainerError, "declares", payloads=True)


# -------------------------------------------------------------- chunk order
def _golden_records() -> list[tuple[bytes, list[bytes]]]:
    out = []
    for path in GOLDEN:
        header, records = containers.split(path.read_bytes())
        assert len(records) >= 3, path  # at least two chunks and the end
        out.append((header, records))
    return out


@pytest.mark.parametrize(
    "rearrange",
    [
        lambda c: [c[1], c[0], *c[2:]],  # swap
        lambda c: c[::-1],  # reverse
        lambda c: [c[0], c[0], *c[2:]],  # duplicate one, drop another (same frame counts)
        lambda c: c[1:],  # drop the first
        lambda c: c[:-1],  # drop the last
    ],
    ids=["swap", "reverse", "duplicate-and-drop", "drop-first", "drop-last"],
)
def test_reordered_dropped_or_duplicated_chunks_are_refused(rearrange: Callable[[list], list]) -> None:
    for header, records in _golden_records():
        chunks, end = records[:-1], records[-1]
        # Every record keeps the checksum it was written with, as when records are shuffled on the way.
        stored = _stored_crcs(header, records)
        crc_of = dict(stored)
        blob = header + struct.pack("<I", zlib.crc32(header))
        for c in [*rearrange(chunks), end]:
            blob += c + struct.pack("<I", crc_of[c])
        _refused_everywhere(blob, CorruptContainerError, "checksum mismatch|end record says")


def _stored_crcs(header: bytes, chunks: list[bytes]) -> list[tuple[bytes, int]]:
    crc, out = zlib.crc32(header), []
    for c in chunks:
        crc = zlib.crc32(c, crc)
        out.append((c, crc))
    return out


def test_chunks_spliced_from_another_container_are_refused(sample_audio: np.ndarray) -> None:
    a = amser_dsp.encode_audio(sample_audio, chunk_seconds=1.0)
    b = amser_dsp.encode_audio(sample_audio[::-1].copy(), chunk_seconds=1.0)
    header_a, records_a = containers.split(a)
    _, records_b = containers.split(b)
    # Chunk 1 of b, with its own (valid in b) checksum, in place of chunk 1 of a.
    stored_b = dict(_stored_crcs(containers.split(b)[0], records_b[:-1]))
    blob = a[: len(header_a) + 4]
    crc = zlib.crc32(header_a)
    for i, c in enumerate(records_a[:-1]):
        body, crc = (records_b[1], stored_b[records_b[1]]) if i == 1 else (c, zlib.crc32(c, crc))
        blob += body + struct.pack("<I", crc)
    blob += records_a[-1] + struct.pack("<I", zlib.crc32(records_a[-1], crc))
    _refused_everywhere(blob, CorruptContainerError, "chunk 1 checksum mismatch")


def test_format_1_0_containers_still_read_unchained() -> None:
    for path in sorted((Path(__file__).parent / "fixtures").glob("v1.0-*.amser")):
        blob = path.read_bytes()
        assert amser_dsp.inspect(blob).format_version == "1.0"
        header, records = containers.split(blob)
        assert containers.assemble(header, records, chained=False) == blob  # the 1.0 rule: every CRC from 0


def test_writers_write_1_1_chained() -> None:
    blob = amser_dsp.encode(np.zeros((80, 30), np.float32), chunk_frames=10, codec="raw")
    header, records = containers.split(blob)
    assert containers.minor(header) == 1 and containers.assemble(header, records) == blob
    assert containers.assemble(header, records, chained=False) != blob


# ------------------------------------------------------------------- limits
def test_default_limits_bound_what_a_small_container_can_ask_for() -> None:
    lim = fmt.DEFAULT_LIMITS
    assert lim.max_chunk_frames * 80 * 4 * 5 < 64 << 20  # one chunk's kltdct working set
    assert lim.max_total_frames * 80 * 4 <= lim.max_decoded_bytes <= 128 << 20
    # A chunk of a few bytes cannot claim more than the expansion limit allows.
    tiny = fmt.Limits(max_chunk_frames=10**6, max_total_frames=10**6, max_decoded_bytes=1 << 30, max_expansion=1000)
    blob = containers.with_end(_header(WHISPER, RAW), [containers.chunk_body(5000, b"\x00" * 100)])
    with pytest.raises(LimitExceededError, match="expansion limit of 1000"):
        amser_dsp.decode(blob, limits=tiny)


def test_long_audio_is_split_into_chunks_the_default_limits_accept() -> None:
    feats = np.zeros((80, fmt.DEFAULT_LIMITS.max_chunk_frames + 5), np.float32)
    blob = amser_dsp.encode(feats, config="whisper", codec="raw", dtype="float16")
    info = amser_dsp.inspect(blob)
    assert info.n_chunks == 2 and amser_dsp.decode(blob).shape == feats.shape


def test_decoding_fills_one_array_chunk_by_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = amser_dsp.encode(np.ones((80, 300), np.float32), chunk_frames=100, codec="raw", dtype="float32")
    seen = []
    original = np.concatenate

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(np, "concatenate", spy)
    out = amser_dsp.decode(blob)
    assert out.shape == (80, 300) and (out == 1).all() and not seen


# ------------------------------------------------------ last line of defence
def test_a_bug_in_a_codec_never_leaks_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = amser_dsp.encode(np.zeros((80, 20), np.float32), chunk_frames=10, codec="raw", dtype="float32")

    def broken(self: object, payload: bytes, n_mels: int, n_frames: int, limit: int) -> np.ndarray:
        raise KeyError("a bug")

    monkeypatch.setattr(amser_dsp.codec.RawCodec, "decode_chunk", broken)
    for run in _all_entry_points(blob, payloads=True):
        with pytest.raises(CorruptContainerError, match=r"chunk 0 \(raw\) could not be read \(KeyError"):
            run()
    monkeypatch.setattr(amser_dsp.codec.RawCodec, "decode_chunk", lambda *a: np.zeros((3, 3), np.float32))
    with pytest.raises(CorruptContainerError, match="decoded to shape"):
        amser_dsp.decode(blob)


def test_a_bug_in_the_reader_names_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = amser_dsp.encode(np.zeros((80, 20), np.float32), chunk_frames=10, codec="raw", dtype="float32")
    monkeypatch.setattr(fmt.Reader, "_read_end", lambda self: {}["boom"])
    with pytest.raises(CorruptContainerError, match=r"record 3 at byte \d+ could not be read \(KeyError"):
        amser_dsp.decode(blob)
    with contextlib.suppress(CorruptContainerError), pytest.raises(CorruptContainerError):
        amser_dsp.inspect(blob)


def test_a_short_run_of_the_structured_fuzzer_finds_nothing() -> None:
    # The long run (1,000,000 mutants) is a command: see docs/fuzzing.md.
    from .fuzz import fuzz_structured

    summary = fuzz_structured.run(1500, seed=20261126, max_seconds=1.0, findings=None, progress=False)
    assert summary["findings"] == 0, summary["first_findings"]
    assert summary["checksums_recomputed"] > 0.5 and len(summary["mutations"]) >= 15
