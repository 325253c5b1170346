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

import logging
import time
from typing import Any, Literal

from .. import require_extra

require_extra("fastapi", "uvicorn", "ctranslate2")

from fastapi import Depends, FastAPI, Query, Request, WebSocket  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402
from starlette.middleware.base import RequestResponseEndpoint  # noqa: E402

from ... import __version__, codec  # noqa: E402
from ... import container as fmt  # noqa: E402
from ...web.tables import encoded_array  # noqa: E402
from ..recognition.whisper import Transcriber  # noqa: E402
from . import memory  # noqa: E402
from .errors import ServiceError, error_body, request_id_from  # noqa: E402
from .files import serve_files  # noqa: E402
from .metrics import CONTENT_TYPE_LATEST  # noqa: E402
from .page import mount_page  # noqa: E402
from .service import Service  # noqa: E402
from .settings import ServiceSettings  # noqa: E402

__all__ = ["ServiceSettings", "app_from_env", "create_app"]

log = logging.getLogger("amser_dsp.server")


class Timings(BaseModel):
    decode_ms: float
    asr_ms: float
    emotion_ms: float | None = None
    total_ms: float


class TranscriptSegment(BaseModel):
    """A stretch of the recording and its text (Whisper's timestamps), in seconds from the start."""

    start: float
    end: float
    text: str


class TranscribeResponse(BaseModel):
    text: str
    segments: list[TranscriptSegment]
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


class AnalyzedSegment(TranscriptSegment):
    emotion: Emotion | None = None


class AnalyzeResponse(TranscribeResponse):
    segments: list[AnalyzedSegment]  # type: ignore[assignment]
    emotion: Emotion | None = None
    features: DecodedFeatures | None = None


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 422: "invalid_request"}


def error_response(request_id: str, exc: ServiceError) -> JSONResponse:
    """A :class:`ServiceError` as the JSON envelope, with its headers and the request id."""
    headers = {**exc.headers, "X-Request-ID": request_id}
    return JSONResponse(error_body(exc.code, exc.message, request_id), status_code=exc.status, headers=headers)


def create_app(settings: ServiceSettings | None = None, transcriber: Transcriber | None = None) -> FastAPI:
    """Build the FastAPI application; the model loads here, once per process."""
    service = Service(settings or ServiceSettings.from_env(), transcriber)
    app = FastAPI(
        title="amser-dsp",
        version=__version__,
        description="Speech recognition on compressed log-Mel feature containers (docs/format.md).",
        # The interactive pages load their scripts from a CDN: offline they fail, and online they pull third-party
        # code into an operator's browser.  The OpenAPI document itself stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )

    # ---------------------------------------------------------------- plumbing
    @app.middleware("http")
    async def request_context(request: Request, call_next: RequestResponseEndpoint) -> Response:
        request_id = request_id_from(request.headers)
        request.state.request_id = request_id
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # a bug: still the JSON envelope with the request id, never a bare 500
            log.exception("%s unhandled error", request_id)
            response = error_response(request_id, ServiceError(500, "internal", "internal error; see the server log"))
        response.headers["X-Request-ID"] = request_id
        route = request.scope.get("route")
        service.metrics.observe_request(getattr(route, "path", "unmatched"), response.status_code)
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
        route = request.scope.get("route")
        service.metrics.observe_error(getattr(route, "path", "unmatched"), exc.code)
        return error_response(request_id(request), exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        return error_response(request_id(request), ServiceError(exc.status_code, code, str(exc.detail), headers))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request_id(request), ServiceError(422, "invalid_request", str(exc.errors())[:500]))

    authorised = service.keys.dependency()

    # ----------------------------------------------------------------- routes
    container_body: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
    error_responses: dict[int | str, dict[str, Any]] = {
        code: {"description": text}
        for code, text in (
            (400, "malformed container or wrong preset"),
            (401, "missing or wrong API key"),
            (413, "body or audio too long"),
            (503, "queue full (Retry-After)"),
            (504, "timed out"),
        )
    }
    protected = [Depends(authorised)]

    @app.post(
        "/v1/transcribe",
        response_model=TranscribeResponse,
        openapi_extra=container_body,
        responses=error_responses,
        dependencies=protected,
    )
    async def transcribe(request: Request) -> dict[str, Any]:
        """Transcribe the features in a container (whisper preset)."""
        return await service.transcribe(request)

    @app.post(
        "/v1/transcribe/audio",
        response_model=TranscribeResponse,
        openapi_extra=container_body,
        responses={**error_responses, 400: {"description": "not an audio file libsndfile reads"}},
        dependencies=protected,
    )
    async def transcribe_audio(request: Request) -> dict[str, Any]:
        """Transcribe an uploaded audio file (WAV, FLAC, Ogg Opus): the baseline of docs/transfer.md."""
        return await service.transcribe(request, audio=True)

    @app.post(
        "/v1/analyze",
        response_model=AnalyzeResponse,
        openapi_extra=container_body,
        responses=error_responses,
        dependencies=protected,
    )
    async def analyze(
        request: Request,
        features: Literal["float16", "float32"] | None = Query(
            None, description="also return the decoded features in this dtype (base64 of little-endian values, C order)"
        ),
    ) -> dict[str, Any]:
        """Transcript, its segments, emotion (label and the probability of each class; null without an emotion
        model) of the whole recording and of each segment, timings, and the decoded features on request.

        The Whisper encoder runs once: its states feed both the transcript and the emotion network.
        """
        result = await service.transcribe(request, emotion=True, keep_features=features is not None)
        if features is not None:
            result["features"] = encoded_array(result["features"], features)
        return result

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Readiness: the model is loaded, the queue has room and the service is not draining (else 503)."""
        ready, reason = service.readiness()
        return JSONResponse({"status": "ready" if ready else "not ready", "reason": reason}, 200 if ready else 503)

    metrics_access = [] if service.settings.metrics_public else [Depends(authorised)]

    @app.get("/metrics", include_in_schema=False, dependencies=metrics_access)
    async def metrics() -> Response:
        """Every series in Prometheus' text format (docs/operations.md)."""
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        """Model, accepted presets, default codec and limits; clients encode with what this says."""
        return {
            "version": __version__,
            "model": service.asr.name,
            "language": service.asr.language,
            "presets": ["whisper"],
            "codecs": sorted(codec.registered()),
            "default_codec": service.asr.files.default_codec,
            "format": f"{fmt.MAJOR}.{fmt.MINOR}",
            "recognition": service.settings.recognise,
            "recognition_note": None
            if service.settings.recognise
            else "benchmark mode: files are received, checked and decoded, not transcribed (texts are empty)",
            "limits": service.settings.public(),
            "emotion": emotion_info(),
            "decoder": {
                "status": service.decoder_status,
                "min_step": service.decoder.min_step if service.decoder else None,
                "sha256": service.decoder.sha256[:16] if service.decoder else None,
            },
            "stream": service.streams.settings.public(),
        }

    def emotion_info() -> dict[str, Any]:
        emotion = service.analyzer.emotion
        if emotion is None:
            return {"status": service.emotion_status, "model": None, "labels": None}
        return {"status": service.emotion_status, **emotion.info(), "encoder": service.analyzer.emotion_encoder()}

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        """Binary messages carry a container's bytes in order; JSON partial, final and end messages come back."""
        await service.streams.serve(ws, request_id_from(ws.headers))

    @app.websocket("/v1/files")
    async def files(ws: WebSocket, kind: str = "container") -> None:
        """Many whole files on one connection: each binary message is one file (``?kind=audio`` for audio
        files), sent without waiting for answers; then a text message ``{"done": true}``.  Each file is
        answered as soon as it is ready (``{"index", "text", ...}`` or ``{"index", "error"}``, index in
        arrival order), then ``{"done": true, "files": n}``.  At most ``queue_size`` files of one connection
        are in work at once; past that the service stops reading, so TCP holds the sender back."""
        await serve_files(service, ws, kind)

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
    """Factory for ``uvicorn --factory amser_dsp.server.http.app:app_from_env``."""
    return create_app(ServiceSettings.from_env())
