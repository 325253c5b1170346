"""``amser serve``: the application under uvicorn, with a graceful drain on SIGTERM (docs/operations.md).

On the first SIGTERM or SIGINT the service drains: ``/readyz`` answers 503 at once (a load balancer stops
sending), new recognition requests are answered 503 ``draining`` with ``Retry-After`` (a client retries them
elsewhere), and the requests and live streams already under way go on to their answers.  When none is left,
or ``drain_seconds`` have passed, uvicorn shuts down: it stops listening and closes what is still open (a
live stream still open then is closed with code 1012, "service restart").  The process exits 0.  A second
signal stops at once.
"""

from __future__ import annotations

import logging
import time
from types import FrameType

from .. import require_extra

require_extra("fastapi", "uvicorn")

import asyncio  # noqa: E402

import h11  # noqa: E402
import uvicorn  # noqa: E402
from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402

from .app import create_app  # noqa: E402
from .service import Service  # noqa: E402
from .settings import ServiceSettings  # noqa: E402

__all__ = ["DrainingServer", "HeadDeadlineProtocol", "serve"]

log = logging.getLogger("amser_dsp.server")

#: Bytes past ``max_body_bytes`` that a WebSocket message may have and still be read (and refused in JSON).
WS_SLACK_BYTES = 1 << 20


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first signal drains the :class:`Service` before it shuts down."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_deadline is not None:  # a second signal: stop now
            self.should_exit = self.force_exit = True
            return
        self.service.draining = True
        self.service.streams.drain()
        self.drain_deadline = time.monotonic() + self.service.settings.drain_seconds
        log.info("draining: %s", self.service.in_progress())

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and not self.should_exit:
            left = self.service.in_progress()
            if not any(left.values()):
                log.info("drained: shutting down")
                self.should_exit = True
            elif time.monotonic() > self.drain_deadline:
                log.warning("drain deadline passed with %s still open: shutting down", left)
                self.should_exit = True
        return await super().on_tick(counter)


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's head (request line and headers).

    A client that opens a connection and trickles its head a byte at a time would otherwise hold the
    connection for ever (uvicorn's keep-alive timer restarts on every byte).  The deadline runs from the
    connection, and again from each answer on a kept-alive connection; once the head is in, the service's
    body deadline (:meth:`Service.read_body`) and the WebSocket limits take over.
    """

    head_seconds = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_seconds, self._head_expired)

    def _head_expired(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("%s: no request head within %g s: closed", self.client, self.head_seconds)
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the head is in (its body, if any, is the service's)
            self._head_deadline.cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_deadline.cancel()
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.cancel()
        super().connection_lost(exc)


def serve(settings: ServiceSettings, host: str, port: int) -> int:
    """Run the service until a signal drains and stops it; 0 when it stopped cleanly."""
    app = create_app(settings)
    protocol = type("HeadDeadline", (HeadDeadlineProtocol,), {"head_seconds": settings.head_timeout})
    # WebSocket pings, but no ping timeout: a live stream's reader stops reading while the server is behind
    # (docs/streaming.md), so the client's pong waits behind its audio; the streams' idle timeout ends a client
    # that has gone.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=5,
        http=protocol,
        ws_ping_timeout=None,
        # A WebSocket message is read whole before the application sees it: a little over the service's own
        # limit (answered with the JSON ``too_large``), the protocol closes with 1009 without buffering more.
        ws_max_size=settings.max_body_bytes + WS_SLACK_BYTES,
    )
    DrainingServer(config, app.state.service).run()
    return 0
