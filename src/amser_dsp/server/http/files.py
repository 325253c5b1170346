"""The ``WS /v1/files`` protocol: many whole files on one connection, each answered as soon as it is ready.

Each binary message is one file (a container, or with ``?kind=audio`` an audio file), sent without waiting
for answers; then a text message ``{"done": true}``.  Each file is answered as soon as it is ready
(``{"index", "text", ...}`` or ``{"index", "error"}``, index in arrival order), then ``{"done": true,
"files": n}``.  At most ``queue_size`` files of one connection are in work at once; past that the service
stops reading, so TCP holds the sender back.  Refusals are JSON errors with the close codes of
docs/streaming.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import require_extra

require_extra("fastapi")

from fastapi import WebSocket, WebSocketDisconnect  # noqa: E402

from .errors import ServiceError, error_body, request_id_from  # noqa: E402
from .service import Service  # noqa: E402
from .streams import refuse  # noqa: E402

__all__ = ["KINDS", "serve_files"]

log = logging.getLogger("amser_dsp.server")

#: What a connection's files are: containers (the default) or audio files.
KINDS = ("container", "audio")


async def serve_files(service: Service, ws: WebSocket, kind: str) -> None:
    """Serve one ``/v1/files`` connection until the client is done or gone."""
    request_id = request_id_from(ws.headers)
    await ws.accept()
    try:
        service.keys.check_websocket(ws.headers)  # headers, or the page's cookie, as on /v1/stream
    except ServiceError as exc:
        await refuse(ws, request_id, "unauthorized", exc.message)
        return
    if kind not in KINDS:
        await refuse(ws, request_id, "bad_container", f"kind={kind!r}: expected 'container' or 'audio'")
        return
    settings = service.settings
    slots = asyncio.Semaphore(settings.queue_size)
    send_lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def answer(index: int, blob: bytes) -> None:
        message: dict[str, Any]
        try:
            if len(blob) > settings.max_body_bytes:
                raise ServiceError(413, "too_large", f"file exceeds {settings.max_body_bytes} bytes")
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
            # Idle means idle on both sides: while files are in work, a client waiting for their answers (its
            # window full) is not idle, however long recognition takes.
            try:
                message = await asyncio.wait_for(ws.receive(), None if tasks else settings.idle_timeout)
            except TimeoutError:
                await refuse(ws, request_id, "idle_timeout", f"no message for {settings.idle_timeout} s")
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
