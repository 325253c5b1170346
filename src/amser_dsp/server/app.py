"""The HTTP service: containers in, transcripts out (``amser serve``).

Endpoints: ``POST /v1/transcribe`` and ``POST /v1/analyze`` (body: a
container), ``WS /v1/stream`` (the bytes of a :class:`~amser_dsp.StreamEncoder`
as they are recorded; one transcript per chunk), ``GET /healthz``,
``GET /v1/info``, and the OpenAPI document at ``/openapi.json``.

Every error is JSON ``{"error": {"code", "message", "request_id"}}``.  Work runs
on a bounded thread pool off the event loop; when ``queue_size`` requests are
already admitted the service answers 503 with ``Retry-After`` instead of
queueing without bound.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import require_extra

require_extra("fastapi", "uvicorn", "ctranslate2")

import numpy as np  # noqa: E402
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from .. import __version__, codec  # noqa: E402
from .. import container as fmt  # noqa: E402
from ..errors import AmserError, ConfigError, ContainerError, LimitExceededError  # noqa: E402
from .asr import Transcriber, check_whisper_config  # noqa: E402

__all__ = ["ServiceSettings", "create_app"]

log = logging.getLogger("amser_dsp.server")


@dataclass(frozen=True)
class ServiceSettings:
    """Limits and access control of the service (``amser serve`` options, or ``from_env``)."""

    max_body_bytes: int = 4 << 20
    max_audio_seconds: float = 600.0
    request_timeout: float = 60.0
    queue_size: int = 8
    workers: int = 1
    retry_after: int = 1
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    beam_size: int = 5
    model_path: str | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> ServiceSettings:
        """Settings from ``AMSER_*`` variables (``AMSER_API_KEY``, ``AMSER_API_KEY_FILE``, ...)."""
        keys = [k for k in (os.environ.get("AMSER_API_KEY"),) if k]
        key_file = overrides.pop("api_key_file", None) or os.environ.get("AMSER_API_KEY_FILE")
        if key_file:
            keys += [line.strip() for line in Path(key_file).read_text().splitlines() if line.strip()]
        env = {
            "max_body_bytes": int,
            "max_audio_seconds": float,
            "request_timeout": float,
            "queue_size": int,
            "workers": int,
            "beam_size": int,
        }
        values: dict[str, Any] = {
            k: t(os.environ[f"AMSER_{k.upper()}"]) for k, t in env.items() if f"AMSER_{k.upper()}" in os.environ
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(api_keys=tuple(keys), **values)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("api_keys")
        out["auth"] = "api-key" if self.api_keys else "none"
        return out


class Timings(BaseModel):
    decode_ms: float
    asr_ms: float
    total_ms: float


class TranscribeResponse(BaseModel):
    text: str
    seconds: float
    n_frames: int
    bytes: int
    codec: dict[str, Any]
    timings: Timings
    request_id: str


class AnalyzeResponse(TranscribeResponse):
    emotion: dict[str, Any] | None = None


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class RecogniserBatcher:
    """Requests waiting for the recogniser are decoded together.

    ``recognise(features)`` queues one item; a background task hands every
    item waiting at that moment (up to the Transcriber's batch size) to one
    Transcriber call on the pool, keeping up to ``workers`` calls in flight.
    Created per application; its asyncio objects are made on first use, inside
    the server's event loop.
    """

    def __init__(self, asr: Transcriber, pool: ThreadPoolExecutor, workers: int) -> None:
        self.asr, self.pool, self.workers = asr, pool, workers
        self.pending: list[tuple[Any, asyncio.Future[str]]] = []
        self.wakeup: asyncio.Event | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def recognise(self, features: Any) -> str:
        """Transcript of one ``(80, T)`` feature matrix, decoded in a batch with whatever else waits."""
        if not features.shape[1]:
            return ""
        if self.wakeup is None:
            self.wakeup = asyncio.Event()
            self._spawn(self._run())
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pending.append((features, future))
        self.wakeup.set()
        return await future

    async def _run(self) -> None:
        assert self.wakeup is not None  # set before this task starts
        slots = asyncio.Semaphore(self.workers)
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                await slots.acquire()
                batch = self.pending[: self.asr.batch_size]
                del self.pending[: len(batch)]
                self._spawn(self._decode(batch, slots))

    async def _decode(self, batch: list[tuple[Any, asyncio.Future[str]]], slots: asyncio.Semaphore) -> None:
        try:
            texts = await asyncio.get_running_loop().run_in_executor(
                self.pool, self.asr.transcribe, [f for f, _ in batch]
            )
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            for (_, fut), text in zip(batch, texts, strict=True):
                if not fut.done():
                    fut.set_result(text)
        finally:
            slots.release()


def create_app(settings: ServiceSettings | None = None, transcriber: Transcriber | None = None) -> FastAPI:
    """Build the FastAPI application; the model loads here, once per process."""
    settings = settings or ServiceSettings.from_env()
    asr = transcriber or Transcriber(model_path=settings.model_path, beam_size=settings.beam_size)
    # Load the default codec's tables and entropy coder (Numba's cache: about 0.5 s) now, not in the first request.
    codec.decode(codec.encode(np.zeros((80, 16), np.float32), config="whisper"))
    pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="amser-asr")
    state = {"admitted": 0}
    app = FastAPI(
        title="amser-dsp",
        version=__version__,
        description="Speech recognition on compressed log-Mel feature containers (docs/format.md).",
    )

    # ---------------------------------------------------------------- plumbing
    def error_response(request_id: str, exc: ServiceError) -> JSONResponse:
        body = {"error": {"code": exc.code, "message": exc.message, "request_id": request_id}}
        return JSONResponse(body, status_code=exc.status, headers={**exc.headers, "X-Request-ID": request_id})

    @app.middleware("http")
    async def request_context(request: Request, call_next):  # type: ignore[no-untyped-def]
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]
        request.state.request_id = request_id
        start = time.perf_counter()
        try:
            if request.url.path.startswith("/v1/") and request.method == "POST":
                check_key(request.headers.get("Authorization"), request.headers.get("X-API-Key"))
            response = await call_next(request)
        except ServiceError as exc:
            response = error_response(request_id, exc)
        response.headers["X-Request-ID"] = request_id
        log.info(
            "%s %s %s %d %.1fms",
            request_id,
            request.method,
            request.url.path,
            response.status_code,
            1000 * (time.perf_counter() - start),
        )
        return response

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(getattr(request.state, "request_id", "-"), exc)

    def check_key(authorization: str | None, x_api_key: str | None) -> None:
        if not settings.api_keys:
            return
        given = x_api_key or (authorization[7:] if authorization and authorization.startswith("Bearer ") else "")
        # Compare against every key in constant time, whatever matches.
        ok = False
        for key in settings.api_keys:
            ok |= hmac.compare_digest(given.encode(), key.encode())
        if not ok:
            raise ServiceError(
                401,
                "unauthorized",
                "a valid API key is required (Authorization: Bearer KEY)",
                {"WWW-Authenticate": "Bearer"},
            )

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise ServiceError(413, "too_large", f"body of {declared} bytes exceeds {settings.max_body_bytes}")
        chunks, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > settings.max_body_bytes:
                raise ServiceError(413, "too_large", f"body exceeds {settings.max_body_bytes} bytes")
            chunks.append(part)
        if not size:
            raise ServiceError(400, "empty_body", "the body must be an amser container")
        return b"".join(chunks)

    def limits() -> fmt.Limits:
        frames = int(settings.max_audio_seconds * 100) + 1
        return fmt.Limits(
            max_total_frames=frames,
            max_chunk_frames=frames,
            max_chunk_bytes=settings.max_body_bytes,
            max_header_bytes=min(1 << 16, settings.max_body_bytes),
        )

    def decode(blob: bytes) -> dict[str, Any]:
        """Check and decode a container (runs on the pool)."""
        t0 = time.perf_counter()
        try:
            decoded = codec.decode_container(blob, limits=limits())
            check_whisper_config(decoded.config)
        except LimitExceededError as exc:
            raise ServiceError(413, "too_long", str(exc)) from None
        except (ContainerError, ConfigError) as exc:
            raise ServiceError(400, "bad_container", str(exc)) from None
        return {
            "features": decoded.features,
            "seconds": decoded.info.seconds or 0.0,
            "n_frames": decoded.info.n_frames,
            "bytes": len(blob),
            "codec": decoded.info.codec,
            "timings": {"decode_ms": 1000 * (time.perf_counter() - t0)},
        }

    batcher = RecogniserBatcher(asr, pool, settings.workers)

    async def admitted(coro_fn: Any, *args: Any) -> Any:
        """Run ``coro_fn(*args)`` if the bounded queue has room; 503 otherwise; 504 past the timeout."""
        if state["admitted"] >= settings.queue_size:
            raise ServiceError(
                503,
                "busy",
                f"the queue of {settings.queue_size} requests is full; retry later",
                {"Retry-After": str(settings.retry_after)},
            )
        state["admitted"] += 1
        try:
            return await asyncio.wait_for(coro_fn(*args), settings.request_timeout)
        except TimeoutError:
            raise ServiceError(504, "timeout", f"the request took longer than {settings.request_timeout} s") from None
        finally:
            state["admitted"] -= 1

    async def decode_and_recognise(blob: bytes) -> dict[str, Any]:
        result = await asyncio.get_running_loop().run_in_executor(pool, decode, blob)
        t0 = time.perf_counter()
        result["text"] = await batcher.recognise(result.pop("features"))
        result["timings"]["asr_ms"] = 1000 * (time.perf_counter() - t0)
        return result

    async def transcribe_request(request: Request) -> dict[str, Any]:
        start = time.perf_counter()
        result = await admitted(decode_and_recognise, await read_body(request))
        result["timings"]["total_ms"] = 1000 * (time.perf_counter() - start)
        result["request_id"] = request.state.request_id
        return result

    # ----------------------------------------------------------------- routes
    container_body = {
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
    error_responses = {
        code: {"description": text}
        for code, text in (
            (400, "malformed container or wrong preset"),
            (401, "missing or wrong API key"),
            (413, "body or audio too long"),
            (503, "queue full (Retry-After)"),
            (504, "timed out"),
        )
    }

    @app.post(
        "/v1/transcribe", response_model=TranscribeResponse, openapi_extra=container_body, responses=error_responses
    )
    async def transcribe(request: Request) -> dict[str, Any]:
        """Transcribe the features in a container (whisper preset)."""
        return await transcribe_request(request)

    @app.post("/v1/analyze", response_model=AnalyzeResponse, openapi_extra=container_body, responses=error_responses)
    async def analyze(request: Request) -> dict[str, Any]:
        """Transcript, emotion (null until a classifier is installed) and per-stage timings."""
        result = await transcribe_request(request)
        result["emotion"] = None
        return result

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        """Model, accepted presets, default codec and limits; clients encode with what this says."""
        return {
            "version": __version__,
            "model": asr.name,
            "presets": ["whisper"],
            "codecs": sorted(codec.registered()),
            "default_codec": codec.DEFAULT_CODEC,
            "format": f"{fmt.MAJOR}.{fmt.MINOR}",
            "limits": settings.public(),
        }

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        """Binary messages carry a container's bytes in order; each decoded chunk is answered with its text."""
        request_id = uuid.uuid4().hex[:16]
        try:
            check_key(ws.headers.get("authorization"), ws.headers.get("x-api-key"))
        except ServiceError:
            await ws.close(code=1008, reason="a valid API key is required")
            return
        await ws.accept()
        decoder = codec.StreamDecoder(limits=limits())
        index = 0
        try:
            while not decoder.finished:
                data = await ws.receive_bytes()
                if len(data) > settings.max_body_bytes:
                    raise ServiceError(413, "too_large", "message too large")
                try:
                    chunks = decoder.feed(data)
                    if decoder.config is not None:
                        check_whisper_config(decoder.config)
                except (AmserError, ValueError) as exc:
                    raise ServiceError(400, "bad_container", str(exc)) from None
                for feats in chunks:
                    result = await admitted(batcher.recognise, feats)
                    await ws.send_json(
                        {"chunk": index, "text": result, "n_frames": int(feats.shape[1]), "request_id": request_id}
                    )
                    index += 1
            await ws.send_json({"done": True, "chunks": index, "request_id": request_id})
            await ws.close()
        except ServiceError as exc:
            await ws.send_json({"error": {"code": exc.code, "message": exc.message, "request_id": request_id}})
            await ws.close(code=1003 if exc.status == 400 else 1011)
        except WebSocketDisconnect:
            log.info("%s stream closed by the client after %d chunks", request_id, index)

    app.state.settings = settings
    app.state.transcriber = asr
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory amser_dsp.server.app:app_from_env``."""
    return create_app(ServiceSettings.from_env())
