"""The stream hub without a network or a model: back-pressure, batching across streams, recogniser failure."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import amser_dsp
from amser_dsp import container as fmt

pytest.importorskip("starlette")
pytest.importorskip("ctranslate2")

from starlette.websockets import WebSocketState

from amser_dsp.server.http.streams import LiveSettings, StreamHub
from amser_dsp.server.recognition.live import DecodeRequest, Hypothesis, StreamingSettings, Word


class FakeSocket:
    """Just what the hub uses of a Starlette WebSocket: messages in from a list, JSON out into a list."""

    def __init__(self, messages: list[bytes], headers: dict[str, str] | None = None) -> None:
        self.incoming = list(messages)
        self.sent: list[dict[str, Any]] = []
        self.headers = headers or {}
        self.closed: tuple[int, str] | None = None
        self.application_state = WebSocketState.CONNECTED
        self.reads = 0

    async def accept(self) -> None:
        pass

    async def receive(self) -> dict[str, Any]:
        if not self.incoming:
            await asyncio.sleep(3600)
        self.reads += 1
        return {"type": "websocket.receive", "bytes": self.incoming.pop(0)}

    async def send_json(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.application_state = WebSocketState.DISCONNECTED


class SlowRecogniser:
    """Hears a word in every half second of audio after the prefix, taking ``seconds`` per batch; records batches."""

    def __init__(self, seconds: float, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.batches: list[int] = []
        self.max_frames = 0
        self.lock = threading.Lock()

    def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        time.sleep(self.seconds)
        with self.lock:
            self.batches.append(len(requests))
            self.max_frames = max(self.max_frames, *(r.features.shape[1] for r in requests))
        if self.fail:
            raise RuntimeError("model exploded")
        return [Hypothesis(half_seconds(r)) for r in requests]


def half_seconds(request: DecodeRequest) -> tuple[Word, ...]:
    n_prefix = len(request.prefix.split())
    slots = range(n_prefix, request.features.shape[1] // 50)
    return tuple(Word(f"w{i}", 0.5 * i, 0.5 * i + 0.4) for i in slots)


def speech_container(seconds: float, chunk_seconds: float = 1.0, value: float = 1.0) -> list[bytes]:
    """Loud features (possible speech everywhere, all ``value``), one message per chunk."""
    feats = np.full((80, round(seconds * 100)), value, np.float32)
    blob = amser_dsp.encode(feats, config="whisper", codec="raw", chunk_frames=round(chunk_seconds * 100))
    header, chunks, _ = fmt.read_all(blob)
    messages = [blob[: header.size]]
    offset = header.size
    for chunk in chunks:
        size = len(fmt.chunk_bytes(chunk.n_frames, chunk.payload))
        messages.append(blob[offset : offset + size])
        offset += size
    messages.append(blob[offset:])
    return messages


def make_hub(recogniser: Any, **settings: Any) -> StreamHub:
    live = LiveSettings(**{"idle_timeout": 5.0, "max_lag_seconds": 3.0, **settings})
    return StreamHub(
        recogniser, ThreadPoolExecutor(1), live, fmt.DEFAULT_LIMITS, lambda headers: None, ThreadPoolExecutor(1)
    )


def test_a_server_behind_real_time_says_so_and_stops_reading() -> None:
    recogniser = SlowRecogniser(0.3)
    hub = make_hub(recogniser)
    messages = speech_container(40.0)
    ws = FakeSocket(messages)

    async def run() -> None:
        task = asyncio.create_task(hub.serve(ws, "r1"))
        await asyncio.sleep(0.2)
        # The whole container could have been read by now; the reader stopped once 3 s behind.
        assert ws.reads < 10
        await asyncio.wait_for(task, 60)

    asyncio.run(run())
    lags = [m for m in ws.sent if m["type"] == "lag"]
    assert lags and all(m["behind_seconds"] > 3.0 for m in lags)
    assert ws.sent[-1]["type"] == "end" and ws.closed == (1000, "end")
    assert recogniser.max_frames <= 3000 + 400  # the buffer never held more than a window and the lag allowance


def test_decodes_of_many_streams_share_batches() -> None:
    recogniser = SlowRecogniser(0.2)
    hub = make_hub(recogniser, max_streams=4)
    sockets = [FakeSocket(speech_container(3.0)) for _ in range(4)]

    async def run() -> None:
        await asyncio.wait_for(asyncio.gather(*(hub.serve(ws, f"r{i}") for i, ws in enumerate(sockets))), 60)

    asyncio.run(run())
    assert max(recogniser.batches) > 1
    for ws in sockets:
        assert ws.sent[-1]["type"] == "end" and ws.closed == (1000, "end")


class CountingRecogniser(SlowRecogniser):
    """Also records how many batches run at once, and which kinds (last decodes or not) each batch holds."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.running = self.most_at_once = 0
        self.kinds: list[set[bool]] = []

    def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.kinds.append({r.final for r in requests})
        try:
            return super().hypotheses(requests)
        finally:
            with self.lock:
                self.running -= 1


def test_two_lanes_decode_two_batches_at_once_and_never_mix_last_decodes_with_interim_ones() -> None:
    recogniser = CountingRecogniser(0.1)
    live = LiveSettings(idle_timeout=5.0, max_lag_seconds=3.0, max_streams=4)
    hub = StreamHub(
        recogniser, ThreadPoolExecutor(2), live, fmt.DEFAULT_LIMITS, lambda headers: None, ThreadPoolExecutor(1), 2
    )
    # Streams of different lengths: some end (a last decode) while the others are still being decoded.
    sockets = [FakeSocket(speech_container(seconds)) for seconds in (2.0, 3.0, 4.0, 5.0)]

    async def run() -> None:
        await asyncio.wait_for(asyncio.gather(*(hub.serve(ws, f"r{i}") for i, ws in enumerate(sockets))), 60)

    asyncio.run(run())
    assert recogniser.most_at_once == 2
    assert all(len(kinds) == 1 for kinds in recogniser.kinds), recogniser.kinds
    assert sum(True in kinds for kinds in recogniser.kinds) >= 1
    for ws in sockets:
        assert ws.sent[-1]["type"] == "end" and ws.closed == (1000, "end")
        assert ws.sent[-1]["text"]


def test_a_failing_recogniser_ends_the_stream_with_internal_error() -> None:
    hub = make_hub(SlowRecogniser(0.0, fail=True))
    ws = FakeSocket(speech_container(3.0)[:2])  # header and one chunk, then the client waits

    asyncio.run(asyncio.wait_for(hub.serve(ws, "r1"), 30))
    assert ws.sent[-1]["type"] == "error" and ws.sent[-1]["error"]["code"] == "internal"
    assert ws.closed is not None and ws.closed[0] == 1011


def test_stream_settings_reach_the_policy() -> None:
    hub = make_hub(SlowRecogniser(0.0), policy=StreamingSettings(max_stream_seconds=2.0))
    ws = FakeSocket(speech_container(5.0))
    asyncio.run(asyncio.wait_for(hub.serve(ws, "r1"), 30))
    assert ws.sent[-1]["error"]["code"] == "too_long" and ws.closed is not None and ws.closed[0] == 4413


def test_close_reasons_fit_a_close_frame() -> None:
    from amser_dsp.server.http.streams import close_reason

    assert close_reason("short") == "short"
    long = close_reason("é" * 200)
    assert len(long.encode()) <= 123 and long == "é" * 60


class PoisonedRecogniser(SlowRecogniser):
    """Fails on any batch that holds a request whose audio is marked (all 7): one stream's bad decode."""

    failed: list[int]

    def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        if any(r.features[0, 0] == 7 for r in requests):
            with self.lock:
                self.failed = [*getattr(self, "failed", []), len(requests)]
            raise ValueError("this stream's decode fails")
        return super().hypotheses(requests)


def test_a_failing_decode_ends_only_its_own_stream() -> None:
    recogniser = PoisonedRecogniser(0.05)
    hub = make_hub(recogniser, max_streams=4)
    sockets = [FakeSocket(speech_container(3.0)) for _ in range(3)] + [FakeSocket(speech_container(3.0, value=7))]

    async def run() -> None:
        await asyncio.wait_for(asyncio.gather(*(hub.serve(ws, f"r{i}") for i, ws in enumerate(sockets))), 60)

    asyncio.run(run())
    assert max(recogniser.failed) > 1  # the poisoned decode was batched with the others
    for ws in sockets[:3]:
        assert ws.sent[-1]["type"] == "end" and ws.closed == (1000, "end")
        assert ws.sent[-1]["text"]
    assert sockets[3].sent[-1]["type"] == "error" and sockets[3].sent[-1]["error"]["code"] == "internal"
    assert sockets[3].closed is not None and sockets[3].closed[0] == 1011


def test_speech_without_words_is_reported_as_a_gap() -> None:
    class Mute:
        def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
            return [Hypothesis(()) for _ in requests]  # hears speech (no-speech probability 0), says nothing

    hub = make_hub(Mute())
    ws = FakeSocket(speech_container(3.0))
    asyncio.run(asyncio.wait_for(hub.serve(ws, "r1"), 30))
    gaps = [[m["start"], m["end"]] for m in ws.sent if m["type"] == "gap"]
    # Decoded whole, then in halves: each piece that gives no words is reported; together, all 3 s.
    assert gaps[0][0] == 0.0 and gaps[-1][1] == 3.0 and all(a[1] == b[0] for a, b in itertools.pairwise(gaps))
    assert ws.sent[-1]["type"] == "end" and ws.sent[-1]["text"] == "" and ws.sent[-1]["gaps"] == gaps


def test_the_debug_delay_is_read_from_the_environment_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from amser_dsp.errors import ConfigError
    from amser_dsp.server.http.settings import ServiceSettings
    from amser_dsp.server.http.streams import debug_stream_delay

    monkeypatch.delenv("AMSER_DEBUG_STREAM_DELAY", raising=False)
    assert debug_stream_delay() == 0.0
    monkeypatch.setenv("AMSER_DEBUG_STREAM_DELAY", "0.25")
    assert debug_stream_delay() == 0.25
    for bad in ("slow", "-1", "nan", "100"):
        monkeypatch.setenv("AMSER_DEBUG_STREAM_DELAY", bad)
        with pytest.raises(ConfigError, match="AMSER_DEBUG_STREAM_DELAY"):
            debug_stream_delay()
    with pytest.raises(ConfigError, match="threads"):
        ServiceSettings(threads=0)
