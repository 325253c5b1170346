"""The service's plumbing, apart from its routes: errors, authentication, bodies, decoding, admission.

:class:`Service` holds one application's state (settings, recogniser,
batcher, pools, the admission count); :mod:`.app` builds the routes on it.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import require_extra

require_extra("fastapi", "uvicorn", "ctranslate2")

import numpy as np  # noqa: E402
from fastapi import Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from .. import codec  # noqa: E402
from .. import container as fmt  # noqa: E402
from ..config import get_preset  # noqa: E402
from ..errors import AmserError, LimitExceededError  # noqa: E402
from .asr import Transcriber, check_whisper_config  # noqa: E402
from .audio_input import audio_features  # noqa: E402
from .batcher import RecogniserBatcher  # noqa: E402
from .settings import ServiceSettings  # noqa: E402

__all__ = ["Service", "ServiceError", "bearer_token", "error_body", "error_response"]

#: Frames per second of the features the service reads (the whisper preset's hop).
FRAME_RATE = get_preset("whisper").sample_rate / get_preset("whisper").hop_length


class ServiceError(Exception):
    """An error answered as ``{"error": {"code", "message", "request_id"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_response(request_id: str, exc: ServiceError) -> JSONResponse:
    headers = {**exc.headers, "X-Request-ID": request_id}
    return JSONResponse(error_body(exc.code, exc.message, request_id), status_code=exc.status, headers=headers)


def bearer_token(authorization: str | None) -> str:
    """The credentials of an ``Authorization: Bearer`` header (the scheme is case-insensitive, RFC 9110)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class Service:
    """One application's state and the steps every request goes through."""

    def __init__(self, settings: ServiceSettings, transcriber: Transcriber | None = None) -> None:
        self.settings = settings
        self.asr = transcriber or Transcriber(model_path=settings.model_path, beam_size=settings.beam_size)
        # Load the default codec's tables and entropy coder now (Numba's cache: about 0.5 s), not in a request.
        codec.decode(codec.encode(np.zeros((80, 16), np.float32), config="whisper"))
        self.pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="amser-asr")
        # Decoding has its own threads: a bad container is answered at once, never behind recognition.
        self.decode_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="amser-decode")
        self.batcher = RecogniserBatcher(self.asr, self.pool, settings.workers)
        self.admitted = 0
        frames = int(settings.max_audio_seconds * FRAME_RATE) + 1
        self.limits = fmt.Limits(
            max_total_frames=frames,
            max_chunk_frames=frames,
            max_chunk_bytes=settings.max_body_bytes,
            max_header_bytes=min(1 << 16, settings.max_body_bytes),
        )

    # ------------------------------------------------------------ access
    def check_key(self, given_key: str | None) -> None:
        """Raise 401 unless ``given_key`` is a configured key (no keys configured: open)."""
        if not self.settings.api_keys:
            return
        given = (given_key or "").encode()
        ok = False
        for key in self.settings.api_keys:  # every key compared, in constant time, whatever matches
            ok |= hmac.compare_digest(given, key.encode())
        if not ok:
            raise ServiceError(
                401,
                "unauthorized",
                "a valid API key is required (Authorization: Bearer KEY)",
                {"WWW-Authenticate": "Bearer"},
            )

    # -------------------------------------------------------------- bodies
    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ServiceError(413, "too_large", f"body of {declared} bytes exceeds {limit}")
        chunks, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise ServiceError(413, "too_large", f"body exceeds {limit} bytes")
            chunks.append(part)
        if not size:
            raise ServiceError(400, "empty_body", "the body must be an amser container")
        return b"".join(chunks)

    def _decode(self, blob: bytes) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            decoded = codec.decode_container(blob, limits=self.limits)
            check_whisper_config(decoded.config)
        except LimitExceededError as exc:
            raise ServiceError(413, "too_long", str(exc)) from None
        except AmserError as exc:  # damaged, malformed, another preset, an unknown codec
            raise ServiceError(400, "bad_container", str(exc)) from None
        return {
            "features": decoded.features,
            "seconds": decoded.info.seconds or 0.0,
            "n_frames": decoded.info.n_frames,
            "bytes": len(blob),
            "codec": decoded.info.codec,
            "timings": {"decode_ms": 1000 * (time.perf_counter() - t0)},
        }

    def _decode_audio(self, blob: bytes) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            feats, seconds = audio_features(blob, max_seconds=self.settings.max_audio_seconds)
        except LimitExceededError as exc:
            raise ServiceError(413, "too_long", str(exc)) from None
        except AmserError as exc:
            raise ServiceError(400, "bad_audio", str(exc)) from None
        return {
            "features": feats,
            "seconds": seconds,
            "n_frames": int(feats.shape[1]),
            "bytes": len(blob),
            "codec": {"id": "audio"},
            "timings": {"decode_ms": 1000 * (time.perf_counter() - t0)},
        }

    async def decode(self, blob: bytes, *, audio: bool = False) -> dict[str, Any]:
        """Check and decode a container (or, with ``audio``, an audio file into features) on the decode threads
        (400/413 on bad input)."""
        work = self._decode_audio if audio else self._decode
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, work, blob)

    async def recognise(self, features: Any) -> str:
        """The transcript of decoded features; empty in the ``recognise=False`` benchmark mode."""
        return await self.batcher.recognise(features) if self.settings.recognise else ""

    # ----------------------------------------------------------- admission
    async def admit(self, coro_fn: Any, *args: Any) -> Any:
        """Run ``coro_fn(*args)`` if the bounded queue has room; 503 otherwise; 504 past the timeout."""
        settings = self.settings
        if self.admitted >= settings.queue_size:
            raise ServiceError(
                503,
                "busy",
                f"the queue of {settings.queue_size} requests is full; retry later",
                {"Retry-After": str(settings.retry_after)},
            )
        self.admitted += 1
        try:
            return await asyncio.wait_for(coro_fn(*args), settings.request_timeout)
        except TimeoutError:
            raise ServiceError(504, "timeout", f"the request took longer than {settings.request_timeout} s") from None
        finally:
            self.admitted -= 1

    async def transcribe_blob(self, blob: bytes, *, audio: bool = False, keep_features: bool = False) -> dict[str, Any]:
        """Decode (before admission), then recognise one container (or audio file); ``keep_features``: in the result."""
        start = time.perf_counter()
        result = await self.decode(blob, audio=audio)
        features = result["features"] if keep_features else result.pop("features")
        t0 = time.perf_counter()
        result["text"] = await self.admit(self.recognise, features)
        result["timings"]["asr_ms"] = 1000 * (time.perf_counter() - t0)
        result["timings"]["total_ms"] = 1000 * (time.perf_counter() - start)
        return result

    async def transcribe(self, request: Request, *, audio: bool = False, keep_features: bool = False) -> dict[str, Any]:
        """Read one request's body and transcribe it (:meth:`transcribe_blob`)."""
        start = time.perf_counter()
        result = await self.transcribe_blob(await self.read_body(request), audio=audio, keep_features=keep_features)
        result["timings"]["total_ms"] = 1000 * (time.perf_counter() - start)
        result["request_id"] = request.state.request_id
        return result
