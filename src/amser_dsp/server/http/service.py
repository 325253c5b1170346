"""The service's plumbing, apart from its routes: errors, authentication, bodies, decoding, admission.

:class:`Service` holds one application's state (settings, recogniser,
batcher, pools, the admission count); :mod:`.app` builds the routes on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .. import require_extra

require_extra("fastapi", "uvicorn", "ctranslate2")

import numpy as np  # noqa: E402
from fastapi import Request  # noqa: E402

from ... import codec  # noqa: E402
from ... import container as fmt  # noqa: E402
from ...errors import AmserError, LimitExceededError, TooLongError  # noqa: E402
from ..analysis import Analyzer  # noqa: E402
from ..recognition.batcher import RecogniserBatcher  # noqa: E402
from ..recognition.live import Recogniser, StreamingSettings  # noqa: E402
from ..recognition.longform import Decoding  # noqa: E402
from ..recognition.whisper import (  # noqa: E402
    Transcriber,
    WhisperRecogniser,
    decode_for_whisper,
    load_learned_decoder,
)
from .auth import Keys  # noqa: E402
from .errors import ServiceError  # noqa: E402
from .memory import IdleTrimmer  # noqa: E402
from .metrics import Metrics  # noqa: E402
from .settings import ServiceSettings  # noqa: E402
from .streams import LiveSettings, SlowedRecogniser, StreamHub, debug_stream_delay  # noqa: E402
from .uploads import audio_features  # noqa: E402

__all__ = ["Service"]

log = logging.getLogger("amser_dsp.server")

#: How long, and how many, answers are kept by idempotency key (a retry comes within seconds).
IDEMPOTENCY_SECONDS = 300.0
IDEMPOTENCY_ANSWERS = 1024


class TimedExecutor(ThreadPoolExecutor):
    """A thread pool that reports the seconds each task ran (to ``busy``), whatever submitted it."""

    def __init__(self, busy: Callable[[float], None], workers: int, name: str) -> None:
        super().__init__(max_workers=workers, thread_name_prefix=name)
        self.busy = busy

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def timed() -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.busy(time.perf_counter() - t0)

        return super().submit(timed)


def over_limit(exc: LimitExceededError) -> ServiceError:
    """413 ``too_long`` when shorter input would pass; ``too_large`` for sizes no honest encoder writes (header,
    chunk, expansion, channels)."""
    return ServiceError(413, "too_long" if isinstance(exc, TooLongError) else "too_large", str(exc))


class Service:
    """One application's state and the steps every request goes through."""

    def __init__(self, settings: ServiceSettings, transcriber: Transcriber | None = None) -> None:
        self.settings = settings
        self.asr = transcriber or Transcriber(
            model=settings.model,
            language=settings.language,
            beam_size=settings.beam_size,
            threads=settings.threads,
            replicas=settings.workers,  # one model replica per recogniser thread: their calls run at once
        )
        # Load the default codec's tables and entropy coder now (Numba's cache: about 0.5 s), not in a request.
        codec.decode(codec.encode(np.zeros((80, 16), np.float32), config="whisper"))
        self.metrics = Metrics(
            queue_depth=lambda: self.admitted,
            live_streams=lambda: len(self.streams.sessions),
            ready=lambda: float(self.readiness()[0]),
        )
        self.draining = False
        self.answers = Answers(IDEMPOTENCY_ANSWERS, IDEMPOTENCY_SECONDS)
        self.requests_in_progress = 0
        # Every batch on the recogniser threads, of requests and of live streams, counts as busy time.
        self.pool = TimedExecutor(self.metrics.recogniser_busy.inc, settings.workers, "amser-asr")
        # Decoding has its own threads: a bad container is answered at once, never behind recognition.
        self.decode_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="amser-decode")
        self.batcher = RecogniserBatcher(self.asr, self.pool, settings.workers)
        emotion, self.emotion_status = self._load_emotion(settings.emotion_model)
        # kltdct containers of /v1/transcribe and /v1/analyze go through it (live streams: the plain decoder).
        self.decoder, self.decoder_status = load_learned_decoder(self.asr.name, settings.decoder)
        self.analyzer = Analyzer(self.asr, emotion)
        self.keys = Keys(settings.api_keys)
        self.admitted = 0
        self.trimmer = IdleTrimmer(settings.trim_idle)
        self.limits = self._limits(settings.max_audio_seconds)
        # Live streams (WS /v1/stream): their decodes share the recogniser threads, batched across streams.
        recogniser: Recogniser = WhisperRecogniser(self.asr, final_beam_size=settings.beam_size)
        if delay := debug_stream_delay():
            log.warning("AMSER_DEBUG_STREAM_DELAY: every live batch takes %g s longer", delay)
            recogniser = SlowedRecogniser(recogniser, delay)
        self.streams = StreamHub(
            recogniser,
            self.pool,
            LiveSettings(
                max_streams=settings.max_streams,
                idle_timeout=settings.idle_timeout,
                min_audio_rate=settings.min_stream_rate,
                max_message_bytes=settings.max_body_bytes,
                policy=StreamingSettings(max_stream_seconds=settings.max_stream_seconds),
            ),
            self._limits(settings.max_stream_seconds),
            self.keys.check_websocket,  # headers, or the page's cookie
            decode_pool=self.decode_pool,
            lanes=settings.workers,
        )

    def in_progress(self) -> dict[str, int]:
        """What a drain waits for: requests under way (decoding, queued or recognising) and open live streams."""
        return {"requests": self.requests_in_progress, "streams": len(self.streams.sessions)}

    def readiness(self) -> tuple[bool, str]:
        """Whether the service takes requests now (``/readyz``), and why not."""
        if self.draining:
            return False, "draining: the service is shutting down"
        if self.admitted >= self.settings.queue_size:
            return False, f"the queue of {self.settings.queue_size} requests is full"
        return True, "ready"

    def _limits(self, seconds: float) -> fmt.Limits:
        # In seconds of audio, as documented: a 600-s limit admits exactly 600 s (60,002 whisper frames).
        return fmt.Limits.for_seconds(
            seconds,
            max_chunk_bytes=self.settings.max_body_bytes,
            max_header_bytes=min(1 << 16, self.settings.max_body_bytes),
        )

    def _load_emotion(self, choice: str | None) -> tuple[Any, str]:
        """The emotion recogniser and a status line; a checkpoint named by the operator must load."""
        if choice == "none":
            return None, "disabled (--emotion-model none)"
        try:
            from ..emotion.network import EmotionRecogniser, default_checkpoint
        except ImportError as exc:
            if choice:
                raise
            log.warning("no emotion model: %s", exc)
            return None, f"unavailable: {exc}"
        if choice is None and not default_checkpoint().exists():
            return None, f"unavailable: no packaged checkpoint at {default_checkpoint()}"
        return EmotionRecogniser(choice), "ready"

    # -------------------------------------------------------------- bodies
    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ServiceError(413, "too_large", f"body of {declared} bytes exceeds {limit}")
        chunks, size = [], 0
        # A body must keep up min_upload_rate on average after a grace of head_timeout: a client trickling
        # a byte now and then cannot hold a connection and a decode slot for ever.
        start, rate, grace = time.monotonic(), self.settings.min_upload_rate, self.settings.head_timeout
        parts = request.stream().__aiter__()
        while True:
            allowed = start + grace + (size + 1) / rate - time.monotonic()
            try:
                part = await asyncio.wait_for(parts.__anext__(), max(allowed, 0.001))
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ServiceError(
                    408, "too_slow", f"the body arrived slower than {rate:g} bytes/s ({size} bytes received)"
                ) from None
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
            decoded = decode_for_whisper(blob, limits=self.limits, decoder=self.decoder)
        except LimitExceededError as exc:
            raise over_limit(exc) from None
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
            raise over_limit(exc) from None
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

    async def recognise(self, features: Any, *, states: bool = False) -> Decoding:
        """The finished decoding of decoded features (text, segments, with ``states`` the encoder states);
        no text in the ``recognise=False`` benchmark mode."""
        if not self.settings.recognise:
            return self.batcher.decoder.start(features[:, :0])
        return await self.batcher.recognise(features, states=states)

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

    async def transcribe_blob(
        self, blob: bytes, *, audio: bool = False, emotion: bool = False, keep_features: bool = False
    ) -> dict[str, Any]:
        """Decode one container (or, with ``audio``, an audio file) before admission, then recognise it.

        With ``emotion`` (``/v1/analyze``) the encoder states of the same recogniser pass go to the emotion
        model, whose answer is added as ``emotion`` (None when the service has no emotion model or does not
        recognise).  ``keep_features``: the decoded features stay in the result.
        """
        self.metrics.received.labels("audio" if audio else "container").inc(len(blob))
        if self.draining:
            raise ServiceError(
                503,
                "draining",
                "the service is shutting down; retry (another replica takes it)",
                {"Retry-After": str(self.settings.retry_after)},
            )
        self.requests_in_progress += 1
        try:
            with self.trimmer.busy():  # idle again afterwards: glibc's free arena pages go back to the system
                return await self._transcribe_blob(blob, audio=audio, emotion=emotion, keep_features=keep_features)
        finally:
            self.requests_in_progress -= 1

    async def _transcribe_blob(self, blob: bytes, *, audio: bool, emotion: bool, keep_features: bool) -> dict[str, Any]:
        start = time.perf_counter()
        result = await self.decode(blob, audio=audio)
        feats = result["features"] if keep_features else result.pop("features")
        timings = result["timings"]
        classify = emotion and self.analyzer.emotion is not None and self.settings.recognise and feats.shape[1] > 0

        async def work() -> str:
            t0 = time.perf_counter()
            # The transcript's own encoder states, unless the emotion model reads another recogniser's
            # (then the analyzer runs that encoder, on the recogniser threads).
            own = classify and self.analyzer.needs_states
            decoding = await self.recognise(feats, states=own)
            result["segments"] = [s.to_dict() for s in decoding.segments]
            t1 = time.perf_counter()
            timings["asr_ms"] = 1000 * (t1 - t0)
            if classify:
                loop = asyncio.get_running_loop()
                [(whole, parts)] = await loop.run_in_executor(
                    self.decode_pool if own else self.pool, self.analyzer.emotions, [decoding], [feats]
                )
                result["emotion"] = whole
                for segment, found in zip(result["segments"], parts, strict=True):
                    segment["emotion"] = found
                timings["emotion_ms"] = 1000 * (time.perf_counter() - t1)
            return decoding.text

        if emotion:
            result["emotion"] = None
        result["text"] = await self.admit(work)
        timings["total_ms"] = 1000 * (time.perf_counter() - start)
        self.metrics.audio.labels("audio" if audio else "container").inc(result["seconds"])
        self.metrics.observe_stages(timings)
        return result

    async def transcribe(self, request: Request, **options: bool) -> dict[str, Any]:
        """Read one request's body and transcribe it (:meth:`transcribe_blob` with ``options``).

        A request with an ``Idempotency-Key`` that this service has answered in the last
        :data:`IDEMPOTENCY_SECONDS` (or is answering now) gets that answer again instead of a second pass:
        a client that lost the first answer retries without the file being processed twice.
        """
        key = request.headers.get("idempotency-key")
        if key is None:
            return await self._transcribe_request(request, options)
        if not 1 <= len(key) <= 128:
            raise ServiceError(400, "invalid_request", "Idempotency-Key must be 1 to 128 characters")
        remembered = self.answers.get((request.url.path, key))
        if remembered is None:
            future = asyncio.get_running_loop().create_future()
            self.answers.put((request.url.path, key), future)
            try:
                future.set_result(await self._transcribe_request(request, options))
            except BaseException:
                self.answers.forget((request.url.path, key))  # a failed attempt may be tried again
                future.cancel()
                raise
            remembered = future
        result = dict(await asyncio.shield(remembered))
        result["request_id"] = request.state.request_id
        return result

    async def _transcribe_request(self, request: Request, options: dict[str, bool]) -> dict[str, Any]:
        start = time.perf_counter()
        self.requests_in_progress += 1  # a drain waits for a body being read too
        try:
            blob = await self.read_body(request)
        finally:
            self.requests_in_progress -= 1
        result = await self.transcribe_blob(blob, **options)
        result["timings"]["total_ms"] = 1000 * (time.perf_counter() - start)
        result["request_id"] = request.state.request_id
        return result


class Answers:
    """Answers by idempotency key for a while: at most ``size`` of them, each for ``seconds``."""

    def __init__(self, size: int, seconds: float) -> None:
        self.size, self.seconds = size, seconds
        self.items: OrderedDict[tuple[str, str], tuple[float, asyncio.Future[dict[str, Any]]]] = OrderedDict()

    def get(self, key: tuple[str, str]) -> asyncio.Future[dict[str, Any]] | None:
        now = time.monotonic()
        while self.items and next(iter(self.items.values()))[0] < now:  # oldest first: drop the expired
            self.items.popitem(last=False)
        found = self.items.get(key)
        return found[1] if found is not None else None

    def put(self, key: tuple[str, str], future: asyncio.Future[dict[str, Any]]) -> None:
        self.items[key] = (time.monotonic() + self.seconds, future)
        while len(self.items) > self.size:
            self.items.popitem(last=False)

    def forget(self, key: tuple[str, str]) -> None:
        self.items.pop(key, None)
