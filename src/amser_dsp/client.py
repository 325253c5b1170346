"""Client of the amser service: encode locally with what the server asks for, send, retry when busy.

from amser_dsp.client import Client
with Client("http://127.0.0.1:8000") as client:
    print(client.transcribe_file("speech.flac")["text"])
    for answer in client.transcribe_files(paths):   # many files: one connection, no waiting per file
        print(answer["path"], answer.get("text"))

Many files go over one WebSocket (``/v1/files``), each sent as soon as it is
encoded, with up to ``window`` files awaiting answers: over a link with a
round trip of 60 ms this is what removes the per-file connection set-up and
round trip that dominated (docs/transfer.md).  Every socket has Nagle's
algorithm off (``TCP_NODELAY``), since a request's headers and body are
separate writes (measured: no difference on the links of docs/transfer.md).

Live (``WS /v1/stream``, docs/streaming.md):

async for message in stream_transcript("http://127.0.0.1:8000", audio, realtime=True):
    print(message["type"], message.get("text"))
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from . import StreamEncoder, encode_audio, load_audio
from .errors import AmserError, AudioError, ConfigError
from .extras import require_extra

require_extra("httpx", "websockets", extra="client")

import httpx  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

#: HTTP statuses worth another attempt: busy or draining (503), and a proxy's bad gateway and timeout.
RETRY_STATUS = (502, 503, 504)
#: Error codes of ``/v1/files`` answers worth sending the file again for: nothing was processed.
RETRY_CODES = ("busy", "draining")

NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

__all__ = ["Client", "ServiceRefusedError", "ServiceUnavailableError", "StreamFailedError", "stream_transcript"]


class ServiceUnavailableError(AmserError, ConnectionError):
    """The service stayed busy (503) or unreachable through every retry, or answered an error."""


class ServiceRefusedError(AmserError, PermissionError):
    """The service refused the connection itself (a missing or wrong API key, a bad request): no retry helps."""


class StreamFailedError(ServiceUnavailableError):
    """A live stream ended without its ``end`` message: ``code`` is the server's error code (or ``closed``)."""

    def __init__(self, message: str, code: str = "closed", close_code: int | None = None) -> None:
        super().__init__(message)
        self.code, self.close_code = code, close_code


def stream_url(url: str) -> str:
    """``http(s)://host[:port]`` (or ``ws(s)://...``) to the live endpoint's URL."""
    base = url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return base if base.endswith("/v1/stream") else base + "/v1/stream"


async def stream_transcript(
    url: str,
    audio: np.ndarray,
    *,
    chunk_seconds: float = 0.5,
    realtime: bool = False,
    api_key: str | None = None,
    codec: Any = None,
    open_timeout: float = 30.0,
) -> AsyncIterator[dict[str, Any]]:
    """Send ``audio`` as a device records it; yield the server's messages as they come.

    Parameters
    ----------
    url : str
        The service (``http://127.0.0.1:8000``) or the stream endpoint (``ws://.../v1/stream``).
    audio : ndarray
        Mono float samples at the ``whisper`` preset's rate (16 kHz).
    chunk_seconds : float
        Audio per container chunk (one message each).
    realtime : bool
        Send each chunk when its audio would have been recorded; else as fast as the server takes them.
    api_key : str, optional
        Sent as ``Authorization: Bearer``; default ``AMSER_API_KEY``.
    codec : optional
        The StreamEncoder's codec (default: the library's default codec).

    Yields
    ------
    dict
        ``partial``, ``final``, ``lag``, ``gap`` and lastly ``end`` messages (docs/streaming.md).  Each
        ``final`` also gets ``latencies``: per word, seconds from sending the chunk that held
        the word's end to receiving the word.

    Raises
    ------
    StreamFailedError
        The server sent an ``error`` (its ``code`` is kept) or closed before ``end``.
    AudioError
        ``audio`` is not mono float samples (NaN, Inf, empty, ...): refused before connecting.
    """
    import websockets

    from .frontend.extract import check_audio

    key = api_key if api_key is not None else os.environ.get("AMSER_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    encoder = StreamEncoder("whisper", chunk_seconds=chunk_seconds, codec=codec)
    block = encoder.chunk_frames * encoder.config.hop_length
    rate = encoder.config.sample_rate
    audio = check_audio(audio, rate, encoder.config)
    if audio.ndim != 1:
        raise AudioError(f"audio of shape {audio.shape}: a stream takes one mono signal (n_samples,)")
    # The first chunk encoded in a process loads the kernels (seconds on a busy or cold machine): not on the
    # server's idle clock, which runs from the handshake.
    StreamEncoder("whisper", chunk_seconds=chunk_seconds, codec=codec).write(np.zeros(block, np.float32))
    sent_seconds: list[float] = []  # audio seconds sent after each message
    sent_times: list[float] = []
    try:
        # No keepalive timeout: a server that is behind stops reading (docs/streaming.md), and a ping
        # waits behind the audio queued before it; the server's own pings keep the connection checked.
        ws = await websockets.connect(
            stream_url(url),
            additional_headers=headers,
            open_timeout=open_timeout,
            max_size=1 << 22,
            ping_timeout=None,
        )
    except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
        raise StreamFailedError(f"cannot open {stream_url(url)}: {exc}") from None

    async def send() -> None:
        start = time.monotonic()
        for i in range(0, audio.size, block):
            part = audio[i : i + block]
            data = encoder.write(part) + (encoder.close() if i + block >= audio.size else b"")
            if realtime:
                await asyncio.sleep(max(0.0, start + (i + part.size) / rate - time.monotonic()))
            if data:
                await ws.send(data)
                sent_seconds.append((i + part.size) / rate)
                sent_times.append(time.monotonic())

    def sender_failure() -> BaseException | None:
        return sender.exception() if sender.done() and not sender.cancelled() else None

    sender = asyncio.get_running_loop().create_task(send())
    # A sender that fails (the encoder refusing a chunk) ends the stream at once, not at the server's idle timeout.
    sender.add_done_callback(lambda task: sender_failure() and asyncio.ensure_future(ws.close()))
    try:
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "final":
                now = time.monotonic()
                message["latencies"] = []
                for word in message["words"]:
                    k = next((j for j, s in enumerate(sent_seconds) if s >= word["end"] - 1e-3), len(sent_times) - 1)
                    message["latencies"].append(round(now - sent_times[k], 3) if sent_times else None)
            if message.get("type") == "error":
                error = message["error"]
                raise StreamFailedError(f"{error['code']}: {error['message']}", error["code"])
            yield message
            if message.get("type") == "end":
                return
        if failure := sender_failure():
            raise failure
        raise StreamFailedError(
            f"the server closed the stream ({ws.close_code} {ws.close_reason or ''}) before its end",
            close_code=ws.close_code,
        )
    except websockets.exceptions.ConnectionClosed as exc:
        if failure := sender_failure():
            raise failure from None
        raise StreamFailedError(f"the stream was closed before its end: {exc}", close_code=exc.code) from None
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        await ws.close()


class Client:
    """One kept-alive HTTP/1.1 connection to the service for many requests.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8000``.
    api_key : str, optional
        Sent as ``Authorization: Bearer``; default ``AMSER_API_KEY``.
    retries : int
        Attempts after a 503 (honouring ``Retry-After``) or a connection error, with exponential back-off.
    timeout : float
        Seconds per request (for :meth:`transcribe_many`: the longest wait for the next answer).
    window : int
        Files sent by :meth:`transcribe_many` and not yet answered, at most.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 0.5,
        window: int = 16,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ConfigError(f"the service URL must be http://HOST[:PORT] or https://..., got {url!r}")
        key = api_key if api_key is not None else os.environ.get("AMSER_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url,
            headers=self.headers,
            timeout=timeout,
            transport=httpx.HTTPTransport(socket_options=NODELAY),
        )
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        if window < 1:
            raise ConfigError(f"window must be >= 1, got {window}")
        self.window = window
        self._info: dict[str, Any] | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # One idempotency key for every attempt: a service that finished the first attempt answers a retry
        # from memory instead of processing the file again (docs/operations.md).
        headers = {"Idempotency-Key": uuid.uuid4().hex, **kwargs.pop("headers", {})}
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ServiceUnavailableError(f"cannot reach {self.http.base_url}: {exc}") from None
            else:
                if response.status_code not in RETRY_STATUS:
                    if response.status_code >= 400:
                        try:
                            message = response.json()["error"]["message"]
                        except (ValueError, KeyError, TypeError):
                            message = response.text[:200]
                        raise ServiceUnavailableError(f"service answered {response.status_code}: {message}")
                    return response
                if attempt == self.retries:
                    raise ServiceUnavailableError(
                        f"service unavailable ({response.status_code}) after {self.retries + 1} attempts"
                    )
                retry_after = response.headers.get("Retry-After", "")
                delay = max(delay, float(retry_after)) if retry_after.isdigit() else delay
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def info(self) -> dict[str, Any]:
        """The service's ``/v1/info`` (cached): model, presets, default codec, limits."""
        if self._info is None:
            self._info = self._request("GET", "/v1/info").json()
        return self._info

    def encode(self, audio: np.ndarray, **codec_params: Any) -> bytes:
        """A container of ``audio`` with the preset the service reads and its default codec (or ``codec_params``).

        The service's default codec is its model's operating point (a larger recogniser may ask for
        a finer step); it applies whenever ``codec_params`` choose no codec (``chunk_seconds`` alone does not).
        """
        info = self.info()
        chosen = any(k != "chunk_seconds" for k in codec_params)
        params = codec_params if chosen else {**codec_params, "codec": info["default_codec"]}
        return encode_audio(audio, info["presets"][0], **params)

    def transcribe(self, blob: bytes, *, analyze: bool = False) -> dict[str, Any]:
        """Send a container; return the service's JSON answer."""
        path = "/v1/analyze" if analyze else "/v1/transcribe"
        return self._request("POST", path, content=blob, headers={"Content-Type": "application/octet-stream"}).json()

    def transcribe_file(self, path: str | os.PathLike[str], **codec_params: Any) -> dict[str, Any]:
        """Load, encode and send one audio file."""
        blob = self.encode(load_audio(Path(path)), **codec_params)
        return {**self.transcribe(blob), "path": str(path)}

    def transcribe_many(self, blobs: Iterable[bytes], *, audio: bool = False) -> Iterator[dict[str, Any]]:
        """Send every payload on one WebSocket without waiting; yield each answer as it arrives.

        ``blobs`` may be a generator (files are then encoded while earlier ones travel).  Answers come in
        the order the service finishes them, each with ``index`` (position in ``blobs``); a file the
        service refused has ``error`` instead of ``text``.  Files refused because the service was busy are
        sent again (``retries`` times, with back-off).  ``audio=True`` sends audio files instead of
        containers (the baseline of docs/transfer.md).
        """
        pending: Iterator[tuple[int, bytes]] = iter(enumerate(blobs))
        delay, failures = self.backoff, 0
        while True:
            again: list[tuple[int, bytes]] = []  # refused for now (busy, draining): to send again
            unanswered: dict[int, tuple[int, bytes]] = {}
            answered = 0
            try:
                for answer, blob in self._files_connection(pending, audio, unanswered):
                    if answer.get("error", {}).get("code") in RETRY_CODES and failures < self.retries:
                        again.append((answer["index"], blob))
                    else:
                        answered += 1
                        yield answer
            except ServiceUnavailableError:
                # The connection was refused or cut (a replica restarting, a proxy): the files it had not
                # answered go again on a new connection, before those not sent yet; answered ones never do.
                if failures >= self.retries:
                    raise
                again.extend(unanswered.values())
            else:
                if not again:
                    return
            failures = 0 if answered else failures + 1  # the budget is for attempts that make no progress
            delay = self.backoff if answered else delay * 2
            time.sleep(delay)
            pending = itertools.chain(sorted(again), pending)

    def _files_connection(
        self, items: Iterator[tuple[int, bytes]], audio: bool, in_flight: dict[int, tuple[int, bytes]]
    ) -> Iterator[tuple[dict[str, Any], bytes]]:
        """One ``/v1/files`` connection: a thread sends, this generator reads; yields (answer, its payload).

        ``in_flight`` (the connection's index -> (caller's index, payload)) holds what was taken from
        ``items`` and not answered yet: after a lost connection, what to send again.
        """
        parts = urlsplit(self.url)
        scheme = {"http": "ws", "https": "wss"}[parts.scheme]  # checked by __init__
        port = parts.port or (443 if scheme == "wss" else 80)
        try:
            sock = socket.create_connection((parts.hostname, port), timeout=self.timeout)
        except OSError as exc:
            raise ServiceUnavailableError(f"cannot reach {self.url}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        uri = f"{scheme}://{parts.netloc}{parts.path}/v1/files" + ("?kind=audio" if audio else "")
        slots = threading.Semaphore(self.window)
        failure: queue.SimpleQueue[BaseException] = queue.SimpleQueue()
        try:
            # Payloads are compressed already (or are the raw-audio baseline): no permessage-deflate.
            ws = connect(
                uri,
                sock=sock,
                additional_headers=self.headers,
                compression=None,
                max_size=None,
                open_timeout=self.timeout,
                close_timeout=5,
            )
        except (OSError, WebSocketException) as exc:
            sock.close()
            raise ServiceUnavailableError(f"cannot open {uri}: {exc}") from None
        stop = threading.Event()

        def send_all() -> None:
            try:
                for n in itertools.count():
                    slots.acquire()
                    if stop.is_set():  # the reader has ended: leave the rest of items to the caller
                        return
                    item = next(items, None)
                    if item is None:
                        break
                    in_flight[n] = item
                    ws.send(item[1])
                ws.send(json.dumps({"done": True}))
            except (OSError, WebSocketException) as exc:  # a broken connection: end the reader too
                failure.put(ServiceUnavailableError(f"connection to {uri} lost: {exc}"))
                ws.close()
            except BaseException as exc:  # an encoding error: end the reader too, and raise it there
                failure.put(exc)
                ws.close()

        sender = threading.Thread(target=send_all, name="amser-send", daemon=True)
        with ws:
            sender.start()
            try:
                while True:
                    try:
                        answer = json.loads(ws.recv(timeout=self.timeout))
                    except TimeoutError:
                        raise ServiceUnavailableError(f"no answer from {uri} for {self.timeout} s") from None
                    except WebSocketException as exc:
                        if not failure.empty():
                            raise failure.get() from None
                        raise ServiceUnavailableError(f"connection to {uri} lost: {exc}") from None
                    if answer.get("done"):
                        break
                    if "index" not in answer:  # the service refused the connection itself
                        error = answer.get("error") or {}
                        message = f"{uri}: {error.get('code', 'error')}: {error.get('message', answer)}"
                        if error.get("code") in RETRY_CODES:
                            raise ServiceUnavailableError(message)
                        raise ServiceRefusedError(message)
                    index, blob = in_flight.pop(answer["index"])
                    slots.release()
                    yield {**answer, "index": index}, blob
            finally:
                stop.set()
                slots.release()  # wake a sender waiting for a slot
                ws.close()
                sender.join(self.timeout)
        if not failure.empty():
            raise failure.get()

    def transcribe_files(
        self, paths: Iterable[str | os.PathLike[str]], **codec_params: Any
    ) -> Iterator[dict[str, Any]]:
        """Load, encode and send many audio files on one connection; yield each answer with its ``path``.

        A file that cannot be read or encoded is yielded at once as ``{"path", "error"}`` and the rest go on.
        """
        paths = [Path(p) for p in paths]
        failed: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

        def encoded() -> Iterator[bytes]:
            for i, path in enumerate(paths):
                try:
                    blob = self.encode(load_audio(path), **codec_params)
                except AmserError as exc:
                    failed.put({"index": i, "path": str(path), "error": {"code": "bad_input", "message": str(exc)}})
                    continue
                order.append(i)
                yield blob

        order: list[int] = []  # position among the files sent -> position in paths
        self.info()
        for answer in self.transcribe_many(encoded()):
            while not failed.empty():
                yield failed.get()
            i = order[answer["index"]]
            yield {**answer, "index": i, "path": str(paths[i])}
        while not failed.empty():
            yield failed.get()
