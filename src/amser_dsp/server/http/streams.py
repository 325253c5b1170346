"""The ``WS /v1/stream`` protocol: live transcripts of containers sent while they are recorded.

:class:`StreamHub` owns every open stream of one service.  Each connection has
a reader (container bytes in, decoded chunks into its
:class:`~amser_dsp.server.recognition.live.LiveTranscript`) and a writer (JSON messages
out); one scheduler task gathers the pending decode of every stream into
recogniser batches (one kind of decode each, up to one batch per recogniser
thread at once), so the encoder and decoder work of many streams is shared.
The protocol (messages, close codes, limits) is docs/streaming.md.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ... import codec
from ... import container as fmt
from ...errors import AmserError, ConfigError, LimitExceededError, TooLongError
from .. import require_extra
from ..recognition.live import (
    FRAMES_PER_SECOND,
    DecodeRequest,
    Hypothesis,
    LiveTranscript,
    Recogniser,
    StreamingSettings,
    Update,
    Word,
)
from ..recognition.whisper import check_whisper_config

require_extra("starlette")

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState  # noqa: E402

__all__ = ["CLOSE_CODES", "LiveSettings", "SlowedRecogniser", "StreamHub", "debug_stream_delay", "refuse"]

log = logging.getLogger("amser_dsp.server")

#: Close code of each error code (docs/streaming.md); 1000 after ``end``.
CLOSE_CODES = {
    "bad_container": 4400,
    "unauthorized": 4401,
    "idle_timeout": 4408,
    "too_long": 4413,
    "too_large": 4413,
    "text_frame": 4415,
    "busy": 4429,
    "draining": 4503,
    "too_slow": 4408,
    "internal": 1011,
}


@dataclass(frozen=True)
class LiveSettings:
    """Limits of the streaming endpoint.

    Attributes
    ----------
    max_streams : int
        Streams open at once; one more is refused with ``busy`` (4429).
    idle_timeout : float
        Seconds a stream may go without a message before its container ends (4408).
    min_audio_rate : float
        Seconds of audio a stream must deliver per second it is open, after ``idle_timeout`` seconds of
        grace, checked on each message (``too_slow``, 4408): a client that trickles bytes just often enough
        to beat the idle timeout would otherwise hold one of ``max_streams`` for ever.  Time the server
        spends not reading (behind real time) does not count.
    max_message_bytes : int
        Largest binary message (4413).
    max_lag_seconds : float
        Received audio not yet decoded past which the reader stops reading (TCP pushes
        back on the client) and sends ``lag`` messages.
    policy : StreamingSettings
        The live transcript's policy (its ``max_stream_seconds`` is the stream length limit).
    """

    max_streams: int = 8
    idle_timeout: float = 30.0
    min_audio_rate: float = 0.5
    max_message_bytes: int = 1 << 20
    max_lag_seconds: float = 10.0
    policy: StreamingSettings = field(default_factory=StreamingSettings)

    def public(self) -> dict[str, Any]:
        return {
            "max_streams": self.max_streams,
            "idle_timeout": self.idle_timeout,
            "min_audio_rate": self.min_audio_rate,
            "max_message_bytes": self.max_message_bytes,
            "max_lag_seconds": self.max_lag_seconds,
            "max_stream_seconds": self.policy.max_stream_seconds,
        }


class SlowedRecogniser:
    """A recogniser that takes ``seconds`` longer for every batch: a slow or busy server on demand.

    For tests and load measurements only: ``AMSER_DEBUG_STREAM_DELAY=SECONDS`` in the service's
    environment wraps the live recogniser in one (docs/streaming.md).
    """

    def __init__(self, recogniser: Recogniser, seconds: float) -> None:
        self.recogniser, self.seconds = recogniser, seconds

    def hypotheses(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        time.sleep(self.seconds)
        return self.recogniser.hypotheses(requests)


def debug_stream_delay() -> float:
    """``AMSER_DEBUG_STREAM_DELAY`` (seconds added to every live batch; 0 when unset).

    Raises
    ------
    ConfigError
        If it is set to anything but a number of seconds from 0 to 60.
    """
    raw = os.environ.get("AMSER_DEBUG_STREAM_DELAY", "").strip()
    try:
        seconds = float(raw) if raw else 0.0
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 60:
        raise ConfigError(f"AMSER_DEBUG_STREAM_DELAY={raw!r} is invalid: expected seconds from 0 to 60")
    return seconds


class StreamError(Exception):
    """Ends a stream with an ``error`` message and the code's close code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def close_reason(message: str) -> str:
    """A close frame's reason: at most 123 bytes of UTF-8, so cut to 120 whole characters' worth."""
    return message.encode()[:120].decode(errors="ignore")


async def refuse(ws: WebSocket, request_id: str, code: str, message: str) -> None:
    """Send an accepted WebSocket the ``error`` message and close it with the code of ``code`` (CLOSE_CODES)."""
    with contextlib.suppress(Exception):
        error = {"code": code, "message": message, "request_id": request_id}
        await ws.send_json({"type": "error", "error": error, "request_id": request_id})
        await ws.close(code=CLOSE_CODES[code], reason=close_reason(message))


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


class Session:
    """One open stream: its decoder, its live transcript, its outgoing messages."""

    def __init__(self, ws: WebSocket, request_id: str, settings: LiveSettings, limits: fmt.Limits) -> None:
        self.ws, self.request_id, self.settings = ws, request_id, settings
        self.decoder = codec.StreamDecoder(limits=limits)
        self.live = LiveTranscript(settings.policy)
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.caught_up = asyncio.Event()
        self.caught_up.set()
        self.received_seconds: list[float] = []  # stream seconds received after each message with audio
        self.received_times: list[float] = []  # when (monotonic)
        self.latencies: list[float] = []
        self.started = time.monotonic()
        self.paused_seconds = 0.0  # not reading while behind real time
        self.asr_seconds = 0.0
        self.failed: StreamError | None = None
        self.ended = asyncio.Event()
        self.committed_text = ""

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; tentative text is dropped rather than piled up for a client that does not read."""
        if message["type"] == "partial" and self.outbox.qsize() > 8:
            return
        self.outbox.put_nowait({**message, "request_id": self.request_id})

    def received_at(self, seconds: float) -> float:
        """When the audio up to ``seconds`` (stream time) had arrived."""
        i = bisect.bisect_left(self.received_seconds, seconds - 1e-6)
        if i < len(self.received_times):
            return self.received_times[i]
        return self.received_times[-1] if self.received_times else self.started

    def publish(self, update: Update) -> None:
        now = time.monotonic()
        if update.final:
            words: list[Word] = update.final
            text = " ".join(w.text for w in words)
            text = f" {text}" if self.committed_text else text
            self.committed_text += text
            self.latencies += [now - self.received_at(w.end) for w in words]
            self.send(
                {
                    "type": "final",
                    "text": text,
                    "start": round(words[0].start, 3),
                    "end": round(words[-1].end, 3),
                    "words": [w.to_dict() for w in words],
                }
            )
        for start, end in update.gaps:
            self.send({"type": "gap", "start": round(start, 3), "end": round(end, 3)})
        if update.partial:
            self.send(
                {
                    "type": "partial",
                    "text": " ".join(w.text for w in update.partial),
                    "start": round(update.partial[0].start, 3),
                    "end": round(update.partial[-1].end, 3),
                }
            )

    def end_message(self) -> dict[str, Any]:
        return {
            "type": "end",
            "text": self.committed_text,
            "seconds": round(self.live.total_frames / FRAMES_PER_SECOND, 3),
            "words": len(self.live.committed),
            "gaps": [[round(a, 3), round(b, 3)] for a, b in self.live.gaps],
            "timings": {
                "wall_ms": round(1000 * (time.monotonic() - self.started), 1),
                "asr_ms": round(1000 * self.asr_seconds, 1),
                "decodes": self.live.decodes,
                "commit_latency_p50": _percentile(self.latencies, 50),
                "commit_latency_p90": _percentile(self.latencies, 90),
            },
        }


class StreamHub:
    """Every live stream of one service, and the scheduler that decodes them in batches.

    Parameters
    ----------
    recogniser : Recogniser
        Turns decode requests into hypotheses (runs on ``pool``).
    pool : Executor
        Where recogniser batches run (the service's recogniser threads).
    settings : LiveSettings
        Limits.
    limits : fmt.Limits
        Container limits for the stream decoder.
    authorise : callable
        ``authorise(headers)`` raises to refuse the connection (the HTTP endpoints' key check).
    decode_pool : Executor, optional
        Where container bytes are decoded (off the event loop, so that a costly chunk never
        stalls the other streams); default: ``pool``.
    lanes : int
        Recogniser batches under way at once (the pool's threads, each with its own model
        replica); the streams waiting when lanes are free are split between them.
    """

    def __init__(
        self,
        recogniser: Recogniser,
        pool: Executor,
        settings: LiveSettings,
        limits: fmt.Limits,
        authorise: Callable[[Any], None],
        decode_pool: Executor | None = None,
        lanes: int = 1,
    ) -> None:
        self.recogniser, self.pool, self.settings, self.limits = recogniser, pool, settings, limits
        self.lanes = lanes
        self._running = 0  # batches under way
        self._queue: list[tuple[Session, DecodeRequest]] = []  # requests taken from their streams, not yet decoded
        self._batches: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks
        self.authorise = authorise
        self.decode_pool = decode_pool or pool
        self.sessions: set[Session] = set()
        self.readers: dict[Session, asyncio.Task[None]] = {}
        self.draining = False
        self._wakeup: asyncio.Event | None = None
        self._scheduler: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ one connection
    async def serve(self, ws: WebSocket, request_id: str) -> None:
        """Run one ``/v1/stream`` connection to its end."""
        await ws.accept()
        try:
            self.authorise(ws.headers)
        except Exception as exc:
            await self._refuse(ws, request_id, "unauthorized", getattr(exc, "message", str(exc)))
            return
        if self.draining:
            await self._refuse(ws, request_id, "draining", "the service is shutting down; open the stream again")
            return
        if len(self.sessions) >= self.settings.max_streams:
            await self._refuse(ws, request_id, "busy", f"{self.settings.max_streams} streams are open; retry later")
            return
        session = Session(ws, request_id, self.settings, self.limits)
        self.sessions.add(session)
        self._wake()
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write(session))
        reader = self.readers[session] = loop.create_task(self._read(session))
        ended = loop.create_task(session.ended.wait())
        try:
            await asyncio.wait({reader, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():  # ended first: the recogniser failed or the client stopped reading
                reader.cancel()
            elif reader.cancelled():  # the service drains: what arrived is decoded to the end, then `end`
                await ended
            else:
                reader.result()  # raises what ended the reading
                await ended
        except StreamError as exc:
            session.failed = exc
        except WebSocketDisconnect:
            log.info("%s stream closed by the client", request_id)
        finally:
            self.sessions.discard(session)
            self.readers.pop(session, None)
            ended.cancel()
        if session.failed is not None:
            error = {"code": session.failed.code, "message": session.failed.message, "request_id": request_id}
            session.send({"type": "error", "error": error})
        session.outbox.put_nowait(None)
        await writer
        code = CLOSE_CODES[session.failed.code] if session.failed else 1000
        reason = close_reason(session.failed.message) if session.failed else "end"
        with contextlib.suppress(Exception):
            if ws.application_state != WebSocketState.DISCONNECTED:
                await ws.close(code=code, reason=reason)
        log.info(
            "%s stream %s: %.1f s audio, %d decodes",
            request_id,
            session.failed.code if session.failed else "ended",
            session.live.total_frames / FRAMES_PER_SECOND,
            session.live.decodes,
        )

    def drain(self) -> None:
        """Refuse new streams; end every open one as if its client had sent the end record: what it sent is
        decoded to the end and answered with its ``end`` message."""
        self.draining = True
        for session, reader in list(self.readers.items()):
            if not session.decoder.finished and not reader.done():
                reader.cancel()
                session.live.finish()
        self._wake()

    async def _refuse(self, ws: WebSocket, request_id: str, code: str, message: str) -> None:
        await refuse(ws, request_id, code, message)

    async def _write(self, session: Session) -> None:
        while (message := await session.outbox.get()) is not None:
            try:
                await session.ws.send_json(message)
            except Exception:  # the client went away: keep draining so nobody waits on this queue
                session.ended.set()

    async def _read(self, session: Session) -> None:
        """Container bytes in until the end record; each decoded chunk into the live transcript."""
        ws, settings = session.ws, self.settings
        while not session.decoder.finished:
            while session.live.lag_seconds > settings.max_lag_seconds:
                # Behind real time: stop reading (TCP pushes back on the client) and say so.
                session.send({"type": "lag", "behind_seconds": round(session.live.lag_seconds, 2)})
                session.caught_up.clear()
                paused = time.monotonic()
                await session.caught_up.wait()
                session.paused_seconds += time.monotonic() - paused
                if session.failed is not None:
                    raise session.failed
            try:
                message = await asyncio.wait_for(ws.receive(), settings.idle_timeout)
            except TimeoutError:
                raise StreamError(
                    "idle_timeout", f"no data for {settings.idle_timeout:g} s before the container's end record"
                ) from None
            self._check_rate(session)
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            data = message.get("bytes")
            if data is None:
                raise StreamError("text_frame", "send the container as binary messages; text messages are not accepted")
            if len(data) > settings.max_message_bytes:
                raise StreamError("too_large", f"a message of {len(data)} bytes exceeds {settings.max_message_bytes}")
            chunks = await asyncio.get_running_loop().run_in_executor(self.decode_pool, self._decode, session, data)
            try:
                for feats in chunks:
                    session.live.add(feats)
            except TooLongError as exc:
                raise StreamError("too_long", str(exc)) from None
            if chunks:
                session.received_seconds.append(session.live.total_frames / FRAMES_PER_SECOND)
                session.received_times.append(time.monotonic())
            if session.decoder.finished:
                session.live.finish()
            if chunks or session.decoder.finished:
                self._wake()
            if session.failed is not None:
                raise session.failed

    def _check_rate(self, session: Session) -> None:
        """Refuse a stream that sends bytes often enough to beat the idle timeout but too little audio."""
        rate, grace = self.settings.min_audio_rate, self.settings.idle_timeout
        elapsed = time.monotonic() - session.started - session.paused_seconds
        audio = session.live.total_frames / FRAMES_PER_SECOND
        if audio < rate * (elapsed - grace):
            raise StreamError(
                "too_slow",
                f"{audio:.1f} s of audio in {elapsed:.0f} s: a stream must send at least {rate:g} s of audio per "
                f"second it is open (after {grace:g} s)",
            )

    def _decode(self, session: Session, data: bytes) -> list[np.ndarray]:
        try:
            chunks = session.decoder.feed(data)
            if session.decoder.config is not None:
                check_whisper_config(session.decoder.config)
        except TooLongError as exc:
            limit = self.settings.policy.max_stream_seconds
            raise StreamError("too_long", f"the stream is longer than its limit of {limit:g} s ({exc})") from None
        except LimitExceededError as exc:
            raise StreamError("too_large", str(exc)) from None
        except AmserError as exc:
            raise StreamError("bad_container", str(exc)) from None
        except Exception as exc:  # a decoder bug must not drop the connection without a word (never 1006)
            log.exception("%s undecodable container", session.request_id)
            raise StreamError("bad_container", f"the container could not be decoded ({type(exc).__name__})") from None
        return chunks

    # ------------------------------------------------------------ the scheduler
    def _wake(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule())
        self._wakeup.set()

    async def _schedule(self) -> None:
        """Decode the pending request of every stream in batches, up to ``lanes`` batches at once.

        A batch holds requests of one kind, the oldest waiting kind first: a stream's last decode (a
        full 30 s window, about four interim encoder passes) is not decoded beside interim ones, so
        that with two lanes the interim decodes of the other streams go on beside it.  The requests
        waiting when several lanes are free are split between them.
        """
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            for session in list(self.sessions):
                request = session.live.request()
                if request is not None:
                    self._queue.append((session, request))
                self._settle(session)
            self._queue = [
                (s, r) for s, r in self._queue if s in self.sessions
            ]  # a stream that has gone is not decoded
            while self._queue and self._running < self.lanes:
                final = self._queue[0][1].final
                kind = [i for i, (_, r) in enumerate(self._queue) if r.final == final]
                take = set(kind[: -(-len(kind) // (self.lanes - self._running))])
                batch = [item for i, item in enumerate(self._queue) if i in take]
                self._queue = [item for i, item in enumerate(self._queue) if i not in take]
                self._running += 1
                task = loop.create_task(self._run_batch(batch))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)

    async def _run_batch(self, batch: list[tuple[Session, DecodeRequest]]) -> None:
        """One batch on the recogniser; each stream's hypothesis into its live transcript."""
        loop = asyncio.get_running_loop()
        try:
            t0 = time.perf_counter()
            hypotheses: list[Hypothesis | None]
            try:
                found = await loop.run_in_executor(self.pool, self.recogniser.hypotheses, [r for _, r in batch])
                hypotheses = list(found)
            except Exception:
                log.exception("recogniser failed on a batch of %d streams; decoding them one by one", len(batch))
                hypotheses = await self._one_by_one(batch)
            spent = time.perf_counter() - t0
            for (session, _), hypothesis in zip(batch, hypotheses, strict=True):
                if hypothesis is None:  # this stream's own decode failed: it ends, the others go on
                    session.failed = StreamError("internal", "speech recognition failed")
                    session.ended.set()
                    session.caught_up.set()
                    continue
                session.asr_seconds += spent / len(batch)
                try:
                    session.publish(session.live.apply(hypothesis))
                except Exception:  # a policy bug ends this stream with a word, never the scheduler
                    log.exception("%s live transcript failed", session.request_id)
                    session.failed = StreamError("internal", "speech recognition failed")
                    session.ended.set()
                    session.caught_up.set()
                    continue
                self._settle(session)
        finally:
            self._running -= 1
            self._wake()  # whatever arrived meanwhile is decoded next

    async def _one_by_one(self, batch: list[tuple[Session, DecodeRequest]]) -> list[Hypothesis | None]:
        """Each request of a failed batch alone: ``None`` for those that fail again."""
        loop = asyncio.get_running_loop()
        out: list[Hypothesis | None] = []
        for session, request in batch:
            try:
                (hypothesis,) = await loop.run_in_executor(self.pool, self.recogniser.hypotheses, [request])
            except Exception:
                log.exception("%s recogniser failed on this stream's decode", session.request_id)
                hypothesis = None
            out.append(hypothesis)
        return out

    def _settle(self, session: Session) -> None:
        """Release a waiting reader; end a finished stream."""
        if session.live.lag_seconds <= self.settings.max_lag_seconds:
            session.caught_up.set()
        if session.live.done and not session.ended.is_set():
            session.send(session.end_message())
            session.ended.set()
