"""The service's numbers for an operator, in Prometheus' text format (``GET /metrics``; docs/operations.md).

Names follow Prometheus' conventions: base units (seconds, bytes), ``_total`` for counters.  Every series
lives in the application's own registry, so two applications in one process (tests) never share counts.
Route labels are the route templates (``/v1/transcribe``), never raw paths, so a scan of random URLs
cannot grow the number of series.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import require_extra

require_extra("prometheus_client")

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

#: Latency buckets in seconds: from a decode of a short clip (ms) to a long recording's recognition (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0)
#: The stages of a request whose time is observed.
STAGES = ("decode", "asr", "emotion", "total")


class Metrics:
    """The series of one application.

    Parameters
    ----------
    queue_depth, live_streams, ready : callable
        Read at each scrape: requests admitted to the recognition queue, open live streams, and 1 when
        the service is ready (``/readyz``).
    """

    def __init__(
        self, *, queue_depth: Callable[[], float], live_streams: Callable[[], float], ready: Callable[[], float]
    ) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "amser_http_requests_total", "HTTP requests answered, by route template and status code",
            ["route", "code"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "amser_http_errors_total", "Error answers (HTTP and WebSocket), by route template and error code",
            ["route", "error"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "amser_request_stage_seconds", "Time of each stage of a recognition request (decode, asr, emotion, total)",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.recogniser_busy = Counter(
            "amser_recogniser_busy_seconds_total", "Seconds the recogniser threads spent decoding batches", registry=r
        )
        self.received = Counter(
            "amser_received_bytes_total", "Bytes of containers and audio files received, by kind", ["kind"], registry=r
        )
        self.audio = Counter(
            "amser_audio_seconds_total", "Seconds of audio whose features were recognised, by kind", ["kind"],
            registry=r,
        )  # fmt: skip
        Gauge("amser_queue_depth", "Requests admitted to the recognition queue now", registry=r).set_function(
            queue_depth
        )
        Gauge("amser_live_streams", "Live streams (WS /v1/stream) open now", registry=r).set_function(live_streams)
        Gauge("amser_ready", "1 when the service takes requests (GET /readyz), else 0", registry=r).set_function(ready)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, open fds, ...

    def observe_request(self, route: str, code: int) -> None:
        """Count one answered HTTP request."""
        self.requests.labels(route, str(code)).inc()

    def observe_error(self, route: str, error: str) -> None:
        """Count one error answer (``error`` is the envelope's code: ``bad_container``, ``busy``, ...)."""
        self.errors.labels(route, error).inc()

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        """The stage timings of one request (the ``timings`` of its answer, in milliseconds)."""
        for stage in STAGES:
            ms = timings_ms.get(f"{stage}_ms")
            if ms is not None:
                self.latency.labels(stage).observe(ms / 1000)

    def exposition(self) -> bytes:
        """Every series in Prometheus' text format."""
        return generate_latest(self.registry)
