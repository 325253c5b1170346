"""The container format: golden files, hostile input, limits, streaming."""

from __future__ import annotations

import io
import socket
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amser_dsp
from amser_dsp import AmserError, ContainerError, CorruptContainerError, LimitExceededError, UnsupportedVersionError
from amser_dsp import container as fmt
from amser_dsp.codec import decode_container, inspect

from . import containers

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = sorted(FIXTURES.glob("v*.amser"))


def test_golden_files_exist_for_every_format_version() -> None:
    for version in ("1.0", "1.1"):
        assert any(p.name.startswith(f"v{version}-") for p in GOLDEN), version
        assert all(
            inspect(p.read_bytes()).format_version == version for p in GOLDEN if p.name.startswith(f"v{version}-")
        )


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_files_decode(path: Path) -> None:
    expected = np.load(path.with_suffix(".npy"))
    decoded = decode_container(path.read_bytes())
    np.testing.assert_allclose(decoded.features, expected, rtol=1e-5, atol=1e-5)
    preset = path.stem.rsplit("-", 1)[1]
    assert decoded.config == amser_dsp.get_preset(preset)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_every_truncation_is_detected(path: Path) -> None:
    blob = path.read_bytes()
    for n in range(len(blob)):
        with pytest.raises(ContainerError):
            amser_dsp.decode(blob[:n])


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_every_single_bit_flip_is_detected(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    for i in range(len(blob)):
        for bit in range(8):
            blob[i] ^= 1 << bit
            with pytest.raises(ContainerError):
                amser_dsp.decode(bytes(blob))
            blob[i] ^= 1 << bit


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_container_errors(data: bytes) -> None:
    for blob in (data, fmt.MAGIC + data, fmt.MAGIC + b"\x01\x00\x00\x00" + data):
        with pytest.raises(ContainerError):
            amser_dsp.decode(blob)


def _header_with(fields: bytes, major: int = 1, flags: int = 0) -> bytes:
    body = struct.pack("<4sBBHI", fmt.MAGIC, major, 0, flags, len(fields)) + fields
    return body + struct.pack("<I", zlib.crc32(body))


def _field(tag: int, value: bytes) -> bytes:
    return struct.pack("<BI", tag, len(value)) + value


def _valid_fields(config: object = None, codec: object = None, n_mels: int = 80) -> bytes:
    codec = codec if codec is not None else {"codec": "raw", "dtype": "float32"}
    return (
        _field(1, fmt.compress_json(config))
        + _field(2, fmt.compress_json(codec))
        + _field(3, struct.pack("<H", n_mels))
    )


@settings(max_examples=200, deadline=None)
@given(
    config=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4)),
    codec=st.dictionaries(
        st.sampled_from(["codec", "rank", "dtype", "x"]),
        st.integers(-5, 5) | st.sampled_from(["svd", "raw", "float16", None]),
    ),
    n_mels=st.integers(0, 70000),
    frames=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=64),
)
def test_mutated_headers_raise_only_amser_errors(config, codec, n_mels, frames, payload) -> None:
    header = _header_with(_valid_fields(config, codec, min(n_mels, 65535)))
    blob = header + fmt.chunk_bytes(frames, payload) + fmt.end_bytes(1, frames)
    with pytest.raises(AmserError):
        amser_dsp.decode(blob)


def test_unknown_major_version() -> None:
    with pytest.raises(UnsupportedVersionError, match=r"format 2\.0"):
        amser_dsp.decode(_header_with(_valid_fields(), major=2))


def test_unknown_required_field_refused_optional_skipped() -> None:
    with pytest.raises(UnsupportedVersionError, match="0x10 is required but unknown"):
        fmt.read_all(_header_with(_valid_fields() + _field(0x10, b"x")) + fmt.end_bytes(0, 0))
    header, _, _ = fmt.read_all(_header_with(_valid_fields() + _field(0x90, b"future")) + fmt.end_bytes(0, 0))
    assert header.skipped == (0x90,)


def test_not_a_container() -> None:
    with pytest.raises(ContainerError, match="not an amser container"):
        amser_dsp.decode(b"RIFF....WAVEfmt ")
    with pytest.raises(ContainerError, match="cannot read container AMSR"):
        amser_dsp.decode("AMSR")  # a str is a path
    with pytest.raises(ContainerError, match="must be bytes, a path or a binary file object"):
        amser_dsp.decode(12345)  # type: ignore[arg-type]


def test_limits_refuse_before_allocating() -> None:
    header = _header_with(_valid_fields())
    huge = struct.pack("<BII", fmt.KIND_CHUNK, 100, 2**31)  # claims 2 GiB of payload
    with pytest.raises(LimitExceededError, match="over the limit"):
        amser_dsp.decode(header + huge)
    many_frames = struct.pack("<BII", fmt.KIND_CHUNK, 2**32 - 1, 4)
    with pytest.raises(LimitExceededError, match="frames"):
        amser_dsp.decode(header + many_frames)
    with pytest.raises(LimitExceededError, match="Mel bands"):
        amser_dsp.decode(_header_with(_valid_fields(n_mels=5000)))
    small = fmt.Limits(max_decoded_bytes=1000)
    blob = amser_dsp.encode(np.zeros((80, 50), np.float32), codec={"codec": "raw", "dtype": "float32"})
    with pytest.raises(LimitExceededError):
        amser_dsp.decode(blob, limits=small)


def test_trailing_bytes_and_count_mismatch() -> None:
    blob = amser_dsp.encode(np.zeros((80, 10), np.float32), rank=1)
    with pytest.raises(CorruptContainerError, match="after the end"):
        amser_dsp.decode(blob + b"\x00")
    header, records = containers.split(blob)
    wrong_end = containers.assemble(header, [*records[:-1], containers.end_body(1, 11)])
    with pytest.raises(CorruptContainerError, match="end record says"):
        amser_dsp.decode(wrong_end)


def test_inspect_reports_sizes(sample_audio: np.ndarray) -> None:
    f = amser_dsp.features(sample_audio, 16000, "whisper")
    blob = amser_dsp.encode(f, ratio=0.125, config="whisper")
    info = inspect(blob)
    assert info.n_bytes == len(blob)
    assert info.seconds == pytest.approx(f.shape[1] / 100)
    assert info.kbps == pytest.approx(len(blob) * 8 / info.seconds / 1000)
    assert info.percent_of_pcm == pytest.approx(100 * len(blob) / (32000 * info.seconds))
    assert info.to_dict()["codec"]["ratio"] == 0.125


# ---------------------------------------------------------------- streaming
@settings(max_examples=25, deadline=None)
@given(
    blocks=st.lists(st.integers(1, 2000), min_size=1, max_size=40),
    preset=st.sampled_from(["amser", "whisper", "kaldi"]),
    chunk=st.sampled_from([0.3, 1.0, 2.5]),
)
def test_stream_encode_equals_chunked_whole_file(sample_audio: np.ndarray, blocks, preset, chunk) -> None:
    x = sample_audio
    blocks = [*blocks, 3000]  # cycle tiny blocks with a large one: every border case, bounded run time
    enc = amser_dsp.StreamEncoder(preset, chunk_seconds=chunk, rank=6, factor_dtype="int8")
    out, pos, i = b"", 0, 0
    while pos < x.size:
        n = blocks[i % len(blocks)]
        out += enc.write(x[pos : pos + n])
        pos, i = pos + n, i + 1
    out += enc.close()
    assert out == amser_dsp.encode_audio(x, preset, chunk_seconds=chunk, rank=6, factor_dtype="int8")


def test_one_chunk_encode_audio_equals_features(sample_audio: np.ndarray) -> None:
    for preset in ("amser", "whisper", "kaldi"):
        blob = amser_dsp.encode_audio(sample_audio, preset, codec={"codec": "raw", "dtype": "float32"})
        ref = amser_dsp.features(sample_audio, 16000, preset, backend="numpy")
        np.testing.assert_allclose(amser_dsp.decode(blob), ref, rtol=1e-5, atol=1e-4)


def test_stream_decoder_from_file_socket_and_feed(sample_audio: np.ndarray) -> None:
    blob = amser_dsp.encode_audio(sample_audio, "whisper", chunk_seconds=1.0, rank=8)
    whole = amser_dsp.decode(blob)
    chunks = list(amser_dsp.StreamDecoder(io.BytesIO(blob)))
    assert len(chunks) == 4
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole)
    dec = amser_dsp.StreamDecoder()
    fed = [c for i in range(0, len(blob), 7) for c in dec.feed(blob[i : i + 7])]
    assert dec.finished and dec.config == amser_dsp.get_preset("whisper")
    np.testing.assert_array_equal(np.concatenate(fed, axis=1), whole)
    a, b = socket.socketpair()
    sender = threading.Thread(target=lambda: (a.sendall(blob), a.close()))
    sender.start()
    got = list(amser_dsp.StreamDecoder(b))
    sender.join()
    b.close()
    np.testing.assert_array_equal(np.concatenate(got, axis=1), whole)


def test_stream_decoder_detects_truncated_stream(sample_audio: np.ndarray) -> None:
    blob = amser_dsp.encode_audio(sample_audio, "whisper", chunk_seconds=1.0, rank=8)
    with pytest.raises(CorruptContainerError, match="truncated"):
        list(amser_dsp.StreamDecoder(io.BytesIO(blob[:-3])))


def test_stream_encoder_rejects_bad_use() -> None:
    enc = amser_dsp.StreamEncoder("amser", chunk_seconds=1.0, rank=4)
    with pytest.raises(amser_dsp.AudioError, match="1-D"):
        enc.write(np.zeros((2, 100), np.float32))
    enc.write(np.zeros(1000, np.float32))
    enc.close()
    with pytest.raises(amser_dsp.CodecError, match="after close"):
        enc.write(np.zeros(10, np.float32))
    with pytest.raises(amser_dsp.CodecError, match="chunk_seconds"):
        amser_dsp.StreamEncoder("amser", chunk_seconds=0, rank=4)


@pytest.mark.parametrize("chunk_seconds", [300.01, 301, 1e9, float("inf")])
def test_chunks_a_reader_refuses_are_refused_at_the_writer(chunk_seconds: float) -> None:
    # --chunk-seconds 400 (and StreamEncoder(chunk_seconds=1e9)) wrote containers that the package's own
    # reader refused: "chunk declares 60000 frames; allowed 1 to 30000".
    with pytest.raises(amser_dsp.CodecError, match=r"readers accept at most 30000 \(300 s of this preset's audio\)"):
        amser_dsp.StreamEncoder("whisper", chunk_seconds=chunk_seconds)
    with pytest.raises(amser_dsp.CodecError, match="readers accept at most 30000"):
        amser_dsp.encode_audio(np.zeros(16000, np.float32), chunk_seconds=chunk_seconds)


def test_the_longest_chunk_a_reader_accepts_is_written_and_read() -> None:
    feats = np.zeros((80, 30_001), np.float32)
    blob = amser_dsp.encode(feats, config="whisper", codec="raw", dtype="float16", chunk_frames=30_000)
    assert amser_dsp.inspect(blob).n_chunks == 2 and amser_dsp.decode(blob).shape == feats.shape
    with pytest.raises(amser_dsp.CodecError, match="up to 30000"):
        amser_dsp.encode(feats, config="whisper", codec="raw", chunk_frames=30_001)
    writer = fmt.Writer(None, {"codec": "raw", "dtype": "float16"}, 80)
    with pytest.raises(LimitExceededError, match="readers accept 1 to 30000 per chunk"):
        writer.write(30_001, b"")
    assert amser_dsp.StreamEncoder("whisper", chunk_seconds=300).chunk_frames == 30_000


def test_the_default_limits_admit_an_hour_of_audio_of_every_preset() -> None:
    # The limit is stated in seconds of audio: 1 h of the whisper preset makes 360,002 frames, not 360,000
    # (centre padding and 400 samples of trailing silence), and the same held for the service's 600 s.
    for name, cfg in amser_dsp.PRESETS.items():
        assert cfg.num_frames(3600 * cfg.sample_rate) <= fmt.DEFAULT_LIMITS.max_total_frames, name
    assert fmt.DEFAULT_LIMITS.max_total_frames == amser_dsp.config.frames_for_seconds(3600) == 360_002
    assert amser_dsp.config.frames_for_seconds(600) == 60_002
    feats = amser_dsp.features(np.zeros(600 * 16000, np.float32), 16000)
    assert feats.shape[1] == 60_002
    blob = amser_dsp.encode(feats, config="whisper", codec="raw", dtype="float16")
    assert amser_dsp.decode_container(blob, limits=fmt.Limits.for_seconds(600)).features.shape == feats.shape
    with pytest.raises(LimitExceededError):
        amser_dsp.decode_container(blob, limits=fmt.Limits.for_seconds(599.99))


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), "600", True])
def test_frames_for_seconds_refuses_what_is_not_a_duration(seconds: object) -> None:
    with pytest.raises(amser_dsp.ConfigError, match="seconds="):
        amser_dsp.config.frames_for_seconds(seconds)  # type: ignore[arg-type]


def test_header_dictionary_holds_the_presets() -> None:
    # The dictionary is frozen with format 1.0; if a preset changes, this test says the
    # dictionary no longer matches (headers stay decodable, just longer).
    presets = b"".join(amser_dsp.get_preset(n).to_json().encode() for n in ("amser", "whisper", "kaldi"))
    assert fmt.HEADER_DICTIONARY.startswith(presets)


def test_decode_and_inspect_take_bytes_a_path_or_a_file(sample_audio: np.ndarray, tmp_path: Path) -> None:
    blob = amser_dsp.encode_audio(sample_audio)
    path = tmp_path / "c.amser"
    path.write_bytes(blob)
    expected = amser_dsp.decode(blob)
    for source in (path, str(path), bytearray(blob), memoryview(blob)):
        np.testing.assert_array_equal(amser_dsp.decode(source), expected)
        assert amser_dsp.inspect(source).n_bytes == len(blob)
    with path.open("rb") as fh:
        np.testing.assert_array_equal(amser_dsp.decode(fh), expected)
    with path.open("rb") as fh:
        assert amser_dsp.decode_container(fh).info.n_frames == expected.shape[1]
    with path.open("r") as text, pytest.raises(ContainerError, match="binary mode"):
        amser_dsp.decode(text)
    with pytest.raises(ContainerError, match="cannot read container"):
        amser_dsp.inspect(tmp_path / "missing.amser")
    small = amser_dsp.Limits(max_decoded_bytes=100, max_chunks=1, max_header_bytes=100)
    with pytest.raises(amser_dsp.LimitExceededError, match="larger than any container"):
        amser_dsp.decode(path, limits=small)
