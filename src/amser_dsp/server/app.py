"""The HTTP service's routes (``amser serve``): containers in, transcripts out.

Endpoints: ``POST /v1/transcribe`` and ``POST /v1/analyze`` (body: a
container), ``POST /v1/transcribe/audio`` (body: a WAV, FLAC or Ogg Opus file,
the baseline a device without amser would send), ``WS /v1/stream`` (the bytes
of a :class:`~amser_dsp.StreamEncoder` as they are recorded; live words back,
docs/streaming.md), ``WS /v1/files`` (many whole files on one connection, sent
without waiting; one answer per file as it is ready), ``GET /healthz``,
``GET /v1/info``, the OpenAPI document at ``/openapi.json``, and the web page
at ``/`` (docs/web.md).

With ``recognise=False`` (``amser serve --no-recognise``, a benchmark mode that
``/v1/info`` reports) every file is received, checked and decoded to features
but not transcribed: answers carry an empty text.

Every error, 404 and 405 included, is JSON ``{"error": {"code", "message",
"request_id"}}``.  Routing comes first, then authentication (a key is checked
only on a route that exists), then the container is decoded on its own threads
(garbage is answered at once), and only then is a request admitted to the
bounded recognition queue: when ``queue_size`` requests are admitted the
service answers 503 with ``Retry-After`` instead of queueing without bound.
The plumbing is :mod:`.service`; the settings :mod:`.settings`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Literal

from . import require_extra

require_extra("fastapi", "uvicorn", "ctranslate2")

from fastapi import Depends, FastAPI, Query, Request, Security, WebSocket, WebSocketDisconnect  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from .. import __version__, codec  # noqa: E402
from .. import container as fmt  # noqa: E402
from . import memory  # noqa: E402
from .asr import Transcriber  # noqa: E402
from .live import refuse  # noqa: E402
from .service import Service, ServiceError, error_body, error_response  # noqa: E402
from .settings import ServiceSettings  # noqa: E402
from .web import encoded_array, mount_page, websocket_key  # noqa: E402

__all__ = ["ServiceSettings", "app_from_env", "create_app"]

log = logging.getLogger("amser_dsp.server")


class Timings(BaseModel):
    decode_ms: float
    asr_ms: float
    emotion_ms: float | None = None
    total_ms: float


class TranscribeResponse(BaseModel):
    text: str
    seconds: float
    n_frames: int
    bytes: int
    codec: dict[str, Any]
    timings: Timings
    request_id: str


class DecodedFeatures(BaseModel):
    dtype: str
    shape: list[int]
    data: str


class Emotion(BaseModel):
    label: str
    probabilities: dict[str, float]


class AnalyzeResponse(TranscribeResponse):
    emotion: Emotion | None = None
    features: DecodedFeatures | None = None


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: KEY")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 422: "invalid_request"}


def create_app(settings: ServiceSettings | None = None, transcriber: Transcriber | None = None) -> FastAPI:
    """Build the FastAPI application; the model loads here, once per process."""
    service = Service(settings or ServiceSettings.from_env(), transcriber)
    app = FastAPI(
        title="amser-dsp",
        version=__version__,
        description="Speech recognition on compressed log-Mel feature containers (docs/format.md).",
    )

    # ---------------------------------------------------------------- plumbing
    @app.middleware("http")
    async def request_context(request: Request, call_next):  # type: ignore[no-untyped-def]
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]
        request.state.request_id = request_id
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # a bug: still the JSON envelope with the request id, never a bare 500
            log.exception("%s unhandled error", request_id)
            response = error_response(request_id, ServiceError(500, "internal", "internal error; see the server log"))
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

    def request_id(request: Request) -> str:
        return getattr(request.state, "request_id", "-")

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(request_id(request), exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        return error_response(request_id(request), ServiceError(exc.status_code, code, str(exc.detail), headers))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request_id(request), ServiceError(422, "invalid_request", str(exc.errors())[:500]))

    async def authorised(
        bearer: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008
        api_key: str | None = Security(_api_key),
    ) -> None:
        """The routes' dependency: runs after routing, so unknown paths are 404 and wrong methods 405."""
        service.check_key(api_key or (bearer.credentials if bearer else None))

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
    protected = {"openapi_extra": container_body, "responses": error_responses, "dependencies": [Depends(authorised)]}

    @app.post("/v1/transcribe", response_model=TranscribeResponse, **protected)
    async def transcribe(request: Request) -> dict[str, Any]:
        """Transcribe the features in a container (whisper preset)."""
        return await service.transcribe(request)

    @app.post(
        "/v1/transcribe/audio",
        response_model=TranscribeResponse,
        openapi_extra=container_body,
        responses={**error_responses, 400: {"description": "not an audio file libsndfile reads"}},
        dependencies=[Depends(authorised)],
    )
    async def transcribe_audio(request: Request) -> dict[str, Any]:
        """Transcribe an uploaded audio file (WAV, FLAC, Ogg Opus): the baseline of docs/transfer.md."""
        return await service.transcribe(request, audio=True)

    @app.post("/v1/analyze", response_model=AnalyzeResponse, **protected)
    async def analyze(
        request: Request,
        features: Literal["float16", "float32"] | None = Query(
            None, description="also return the decoded features in this dtype (base64 of little-endian values, C order)"
        ),
    ) -> dict[str, Any]:
        """Transcript, emotion (label and the probability of each class; null without an emotion model), timings,
        and the decoded features on request.

        The Whisper encoder runs once: its states feed both the transcript and the emotion network.
        """
        result = await service.transcribe(request, emotion=True, keep_features=features is not None)
        if features is not None:
            result["features"] = encoded_array(result["features"], features)
        return result

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        """Model, accepted presets, default codec and limits; clients encode with what this says."""
        return {
            "version": __version__,
            "model": service.asr.name,
            "presets": ["whisper"],
            "codecs": sorted(codec.registered()),
            "default_codec": codec.DEFAULT_CODEC,
            "format": f"{fmt.MAJOR}.{fmt.MINOR}",
            "recognition": service.settings.recognise,
            "recognition_note": None
            if service.settings.recognise
            else "benchmark mode: files are received, checked and decoded, not transcribed (texts are empty)",
            "limits": service.settings.public(),
            "emotion": emotion_info(),
            "stream": service.streams.settings.public(),
        }

    def emotion_info() -> dict[str, Any]:
        if service.emotion is None:
            return {"status": service.emotion_status, "model": None, "labels": None}
        return {"status": service.emotion_status, **service.emotion.info()}

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        """Binary messages carry a container's bytes in order; JSON partial, final and end messages come back."""
        await service.streams.serve(ws, ws.headers.get("x-request-id") or uuid.uuid4().hex[:16])

    @app.websocket("/v1/files")
    async def files(ws: WebSocket, kind: str = "container") -> None:
        """Many whole files on one connection: each binary message is one file (``?kind=audio`` for audio
        files), sent without waiting for answers; then a text message ``{"done": true}``.  Each file is
        answered as soon as it is ready (``{"index", "text", ...}`` or ``{"index", "error"}``, index in
        arrival order), then ``{"done": true, "files": n}``.  At most ``queue_size`` files of one connection
        are in work at once; past that the service stops reading, so TCP holds the sender back."""
        request_id = ws.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        await ws.accept()  # refusals are JSON errors with the close codes of docs/streaming.md
        try:
            service.check_key(websocket_key(ws.headers))  # headers, or the page's cookie, as on /v1/stream
        except ServiceError as exc:
            await refuse(ws, request_id, "unauthorized", exc.message)
            return
        if kind not in ("container", "audio"):
            await refuse(ws, request_id, "bad_container", f"kind={kind!r}: expected 'container' or 'audio'")
            return
        slots = asyncio.Semaphore(service.settings.queue_size)
        send_lock = asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()

        async def answer(index: int, blob: bytes) -> None:
            try:
                if len(blob) > service.settings.max_body_bytes:
                    raise ServiceError(413, "too_large", f"file exceeds {service.settings.max_body_bytes} bytes")
                message = {"index": index, **await service.transcribe_blob(blob, audio=kind == "audio")}
            except ServiceError as exc:
                message = {"index": index, **error_body(exc.code, exc.message, request_id)}
            finally:
                slots.release()
            async with send_lock:
                await ws.send_json({**message, "request_id": request_id})

        count = 0
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.receive(), service.settings.idle_timeout)
                except TimeoutError:
                    await refuse(ws, request_id, "idle_timeout", f"no message for {service.settings.idle_timeout} s")
                    return
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                if message.get("bytes") is not None:
                    await slots.acquire()
                    task = asyncio.create_task(answer(count, message["bytes"]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    count += 1
                elif message.get("text") is not None:
                    break  # the client has sent everything
            if tasks:
                await asyncio.gather(*tasks)
            async with send_lock:
                await ws.send_json({"done": True, "files": count, "request_id": request_id})
            await ws.close()
        except WebSocketDisconnect:
            for task in tasks:
                task.cancel()
            log.info("%s files connection closed by the client after %d files", request_id, count)

    if memory.probe_enabled():  # AMSER_DEBUG_MEMORY=1 only (benchmarks/soak.py --debug-memory)
        probe = memory.MemoryProbe()

        @app.get("/debug/memory", include_in_schema=False, dependencies=[Depends(authorised)])
        async def debug_memory() -> dict[str, Any]:
            """What Python allocated since the last call, glibc's arenas, RSS before and after malloc_trim."""
            trimmer = service.trimmer
            return {**probe.report(), "idle_trims": trimmer.trims, "idle_trim_ms": 1000 * trimmer.trim_seconds}

    mount_page(app)
    app.state.settings = service.settings
    app.state.transcriber = service.asr
    app.state.service = service
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory amser_dsp.server.app:app_from_env``."""
    return create_app(ServiceSettings.from_env())
