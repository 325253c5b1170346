"""Streaming: OnlineFeatures equals offline features; stream encode equals chunked whole-file encode."""

from __future__ import annotations

import io
import socket

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import amser_dsp
from amser_dsp import AudioError, CodecError, StreamDecoder, StreamEncoder
from amser_dsp.frontend.streaming import OnlineFeatures, chunked_features

PRESETS = ["amser", "kaldi", "whisper"]


def _blocks(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    out, i, k = [], 0, 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        out.append(x[i : i + n])
        i += n
        k += 1
    return out


def _online(cfg, blocks, *, pop_every: bool = True) -> np.ndarray:
    o = OnlineFeatures(cfg)
    parts = []
    for b in blocks:
        o.accept_waveform(b)
        if pop_every:
            parts.append(o.pop())
    o.input_finished()
    parts.append(o.pop())
    return np.concatenate(parts, axis=1)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    x = amser_dsp.load_audio(amser_dsp.sample_path())
    return np.concatenate([x, x[::-1]])  # 6.5 s: more than one 512-frame Mel block


@given(st.lists(st.integers(1, 3000), min_size=1, max_size=6), st.sampled_from(PRESETS))
def test_online_equals_offline_for_any_block_sizes(clip: np.ndarray, sizes: list[int], preset: str) -> None:
    cfg = amser_dsp.get_preset(preset).replace(dynamic_range=None)
    expected = amser_dsp.features(clip, 16000, cfg, backend="numpy")
    np.testing.assert_array_equal(_online(cfg, _blocks(clip, sizes)), expected)


@pytest.mark.parametrize("n", [1, 200, 399, 400, 401, 560, 16000])
@pytest.mark.parametrize("preset", PRESETS)
def test_online_equals_offline_on_short_signals(n: int, preset: str, rng: np.random.Generator) -> None:
    cfg = amser_dsp.get_preset(preset).replace(dynamic_range=None)
    x = (rng.standard_normal(n) * 0.1).astype(np.float32)
    try:
        expected = amser_dsp.features(x, 16000, cfg, backend="numpy")
    except AudioError:
        with pytest.raises(AudioError):
            _online(cfg, _blocks(x, [7]))
        return
    np.testing.assert_array_equal(_online(cfg, _blocks(x, [7, 1, 300])), expected)


def test_dynamic_range_is_clamped_per_popped_chunk(clip: np.ndarray) -> None:
    o = OnlineFeatures("whisper")
    o.accept_waveform(clip)
    o.input_finished()
    parts = []
    while o.num_frames_ready:
        parts.append(o.pop(100))
    np.testing.assert_array_equal(np.concatenate(parts, 1), chunked_features(clip, 16000, "whisper", chunk_frames=100))
    # Without dynamic range chunking changes nothing.
    np.testing.assert_array_equal(
        chunked_features(clip, 16000, "amser", chunk_frames=100), amser_dsp.features(clip, 16000, "amser", backend="numpy")
    )


@given(
    st.lists(st.integers(1, 4000), min_size=1, max_size=5),
    st.sampled_from(PRESETS),
    st.sampled_from([0.3, 1.0, 2.5]),
    st.sampled_from(["float16", "int8"]),
)
def test_stream_encode_equals_chunked_whole_file_encode(
    clip: np.ndarray, sizes: list[int], preset: str, seconds: float, dtype: str
) -> None:
    clip = clip[:40_000]  # 2.5 s keeps the example count affordable
    enc = StreamEncoder(preset, chunk_seconds=seconds, ratio=0.125, factor_dtype=dtype)
    streamed = b"".join([enc.write(b) for b in _blocks(clip, sizes)] + [enc.close()])
    n = enc.chunk_frames
    whole = amser_dsp.encode(
        chunked_features(clip, 16000, preset, chunk_frames=n), ratio=0.125, factor_dtype=dtype, config=preset, chunk_frames=n
    )
    assert streamed == whole


def test_stream_encoder_emits_header_first_then_chunks(clip: np.ndarray) -> None:
    enc = StreamEncoder("amser", chunk_seconds=1.0)
    first = enc.write(clip[:100])
    assert first.startswith(b"\x89AMSER")
    dec = StreamDecoder()
    assert dec.feed(first) == [] and dec.config == amser_dsp.get_preset("amser")
    got = []
    for b in _blocks(clip[100:], [1600]):
        got.extend(dec.feed(enc.write(b)))
    got.extend(dec.feed(enc.close()))
    dec.close()
    assert dec.finished and len(got) == 7
    with pytest.raises(CodecError, match="write after close"):
        enc.write(clip[:10])


def test_stream_decoder_reads_files_and_sockets(clip: np.ndarray) -> None:
    f = amser_dsp.features(clip, 16000, "amser")
    blob = amser_dsp.encode(f, config="amser", chunk_frames=150)
    expected = amser_dsp.decode(blob)
    chunks = list(StreamDecoder(io.BytesIO(blob)))
    np.testing.assert_array_equal(np.concatenate(chunks, 1), expected)
    a, b = socket.socketpair()
    try:
        a.sendall(blob)
        a.shutdown(socket.SHUT_WR)
        b.settimeout(5)
        dec = StreamDecoder(b)
        chunks = list(dec)
    finally:
        a.close()
        b.close()
    np.testing.assert_array_equal(np.concatenate(chunks, 1), expected)
    with pytest.raises(amser_dsp.CorruptContainerError, match="truncated"):
        list(StreamDecoder(io.BytesIO(blob[:-3])))
